//! TLS policy: what relayd's `tls` options mean, and what relayd-run makes of them.
//!
//! relayd hands its TLS options to libtls, which passes them on to LibreSSL. relayd-run
//! speaks TLS with rustls and its *ring* provider, which offers fewer protocol versions,
//! cipher suites and key exchange groups. This module is the one place that maps the
//! first onto the second: the compiler calls it to explain what will change, and the
//! runtime calls the same functions to configure rustls. It holds data and pure
//! functions only (no rustls types; suites and groups carry their IANA code points).
//!
//! * [`Flags`]: the version and behaviour flags (`tlsv1.2`, `no tlsv1.3`,
//!   `cipher-server-preference`, …) with each release's defaults;
//! * [`select_ciphers`]: a libtls/LibreSSL cipher string (`secure`, `HIGH:!aNULL`,
//!   `ECDHE+AESGCM`, `ECDHE-RSA-AES128-GCM-SHA256`, …) evaluated the way LibreSSL's
//!   `ssl_create_cipher_list` does, restricted to the [`Suite`]s rustls offers;
//! * [`select_curves`]: an `ecdhe` curve list (`default`, `X25519,P-256`, …) mapped onto
//!   the [`Group`]s rustls offers.

use crate::era::Release;

// ---------------------------------------------------------------------------------------
// Protocol versions and flags
// ---------------------------------------------------------------------------------------

/// A TLS protocol version relayd knows a flag for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl Version {
    pub const ALL: [Version; 5] = [
        Version::Ssl3,
        Version::Tls10,
        Version::Tls11,
        Version::Tls12,
        Version::Tls13,
    ];

    /// The name as people write it: `TLS 1.2`.
    pub fn name(self) -> &'static str {
        match self {
            Version::Ssl3 => "SSLv3",
            Version::Tls10 => "TLS 1.0",
            Version::Tls11 => "TLS 1.1",
            Version::Tls12 => "TLS 1.2",
            Version::Tls13 => "TLS 1.3",
        }
    }

    /// The relayd flag word for this version: `tlsv1.2`.
    pub fn flag(self) -> &'static str {
        match self {
            Version::Ssl3 => "sslv3",
            Version::Tls10 => "tlsv1.0",
            Version::Tls11 => "tlsv1.1",
            Version::Tls12 => "tlsv1.2",
            Version::Tls13 => "tlsv1.3",
        }
    }

    /// Whether rustls can speak it (only TLS 1.2 and TLS 1.3).
    pub fn in_rustls(self) -> bool {
        matches!(self, Version::Tls12 | Version::Tls13)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of protocol versions: relayd's `TLSFLAG_*` version bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Versions(u8);

impl Versions {
    pub const fn empty() -> Self {
        Versions(0)
    }

    pub fn of(versions: &[Version]) -> Self {
        Versions(versions.iter().fold(0, |b, v| b | v.bit()))
    }

    pub fn contains(self, v: Version) -> bool {
        self.0 & v.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Versions) -> Versions {
        Versions(self.0 | other.0)
    }

    pub fn minus(self, other: Versions) -> Versions {
        Versions(self.0 & !other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Version> {
        Version::ALL.into_iter().filter(move |v| self.contains(*v))
    }

    /// The versions relayd of `release` enables when a protocol sets no version flag.
    ///
    /// relayd ≤ 5.5 enabled SSLv3 and TLSv1 (OpenSSL then also allowed TLS 1.1 and 1.2,
    /// which relayd had no flag for); 5.6 to 6.4 `TLSFLAG_TLSV1` (TLS 1.0 to 1.2); the
    /// 2019 releases (6.5, 6.6) TLS 1.2 only; 7.6 and later TLS 1.2 and TLS 1.3.
    pub fn default_for(release: Release) -> Versions {
        if release < Release::F_FIRST {
            Versions::of(&[Version::Ssl3, Version::Tls10])
        } else if release < Release::LOG_STATE {
            Versions::of(&[Version::Tls10, Version::Tls11, Version::Tls12])
        } else if release < Release::C_FIRST {
            Versions::of(&[Version::Tls12])
        } else {
            Versions::of(&[Version::Tls12, Version::Tls13])
        }
    }

    /// The versions a flag word stands for in `release`; `None` for words that are not
    /// version flags. `tlsv1` is relayd's alias: TLS 1.0 before 5.6 (SSL_OP_NO_TLSv1),
    /// TLS 1.0 to 1.2 until the 2019 releases, TLS 1.0 to 1.3 since 7.6.
    pub fn flag(word: &str, release: Release) -> Option<Versions> {
        Some(match word {
            "sslv3" => Versions::of(&[Version::Ssl3]),
            "tlsv1" if release < Release::F_FIRST => Versions::of(&[Version::Tls10]),
            "tlsv1" if release < Release::C_FIRST => {
                Versions::of(&[Version::Tls10, Version::Tls11, Version::Tls12])
            }
            "tlsv1" => Versions::of(&[
                Version::Tls10,
                Version::Tls11,
                Version::Tls12,
                Version::Tls13,
            ]),
            "tlsv1.0" => Versions::of(&[Version::Tls10]),
            "tlsv1.1" => Versions::of(&[Version::Tls11]),
            "tlsv1.2" => Versions::of(&[Version::Tls12]),
            "tlsv1.3" => Versions::of(&[Version::Tls13]),
            _ => return None,
        })
    }

    /// The versions relayd-run speaks for this relayd set.
    pub fn rustls(self) -> RustlsVersions {
        let tls12 = self.contains(Version::Tls12);
        let tls13 = self.contains(Version::Tls13);
        let raised = !tls12 && !tls13 && !self.is_empty();
        RustlsVersions {
            tls12: tls12 || raised,
            tls13,
            raised,
        }
    }

    /// `TLS 1.0, TLS 1.1 and TLS 1.2`.
    pub fn describe(self) -> String {
        join_and(&self.iter().map(Version::name).collect::<Vec<_>>())
    }
}

/// Whether relayd of `release` ignores `sslv3`, `tlsv1.0` and `tlsv1.1` (the newest
/// relayd accepts them but LibreSSL no longer speaks those versions).
pub fn legacy_flags_ignored(release: Release) -> bool {
    release >= Release::CURRENT
}

/// The protocol versions relayd-run (rustls) speaks for a relayd version set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RustlsVersions {
    pub tls12: bool,
    pub tls13: bool,
    /// relayd enabled only versions older than TLS 1.2; relayd-run speaks TLS 1.2
    /// instead, the oldest version it has.
    pub raised: bool,
}

impl RustlsVersions {
    /// `TLS 1.2 and TLS 1.3`, `TLS 1.2 only`, or `no version`.
    pub fn describe(self) -> &'static str {
        match (self.tls12, self.tls13) {
            (true, true) => "TLS 1.2 and TLS 1.3",
            (true, false) => "TLS 1.2 only",
            (false, true) => "TLS 1.3 only",
            (false, false) => "no protocol version",
        }
    }
}

/// The flags of one protocol's `tls` options, after relayd's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    pub versions: Versions,
    pub cipher_server_preference: bool,
    pub client_renegotiation: bool,
}

impl Flags {
    /// relayd's `TLSFLAG_DEFAULT` for `release`: 5.6 to 6.4 allowed client-initiated
    /// renegotiation and used the client's cipher order; since 2019 the server's order
    /// is used and renegotiation is refused.
    pub fn default_for(release: Release) -> Flags {
        let modern = release >= Release::LOG_STATE;
        Flags {
            versions: Versions::default_for(release),
            cipher_server_preference: modern,
            client_renegotiation: !modern && release >= Release::F_FIRST,
        }
    }

    /// Applies `[no] WORD`; false for words that are not flags (relayd: `invalid TLS flag`).
    pub fn apply(&mut self, word: &str, on: bool, release: Release) -> bool {
        if let Some(v) = Versions::flag(word, release) {
            self.versions = if on {
                self.versions.union(v)
            } else {
                self.versions.minus(v)
            };
            return true;
        }
        match word {
            "cipher-server-preference" => self.cipher_server_preference = on,
            "client-renegotiation" => self.client_renegotiation = on,
            _ => return false,
        }
        true
    }
}

// ---------------------------------------------------------------------------------------
// Cipher suites
// ---------------------------------------------------------------------------------------

/// A cipher suite rustls offers with its *ring* provider (with the `tls12` feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Suite {
    Tls13Aes256GcmSha384,
    Tls13Aes128GcmSha256,
    Tls13Chacha20Poly1305Sha256,
    EcdheEcdsaAes256GcmSha384,
    EcdheEcdsaAes128GcmSha256,
    EcdheEcdsaChacha20Poly1305Sha256,
    EcdheRsaAes256GcmSha384,
    EcdheRsaAes128GcmSha256,
    EcdheRsaChacha20Poly1305Sha256,
}

impl Suite {
    /// Every suite, in rustls' own order of preference.
    pub const ALL: [Suite; 9] = [
        Suite::Tls13Aes256GcmSha384,
        Suite::Tls13Aes128GcmSha256,
        Suite::Tls13Chacha20Poly1305Sha256,
        Suite::EcdheEcdsaAes256GcmSha384,
        Suite::EcdheEcdsaAes128GcmSha256,
        Suite::EcdheEcdsaChacha20Poly1305Sha256,
        Suite::EcdheRsaAes256GcmSha384,
        Suite::EcdheRsaAes128GcmSha256,
        Suite::EcdheRsaChacha20Poly1305Sha256,
    ];

    /// The IANA code point (what `rustls::CipherSuite::from(u16)` takes).
    pub fn value(self) -> u16 {
        match self {
            Suite::Tls13Aes128GcmSha256 => 0x1301,
            Suite::Tls13Aes256GcmSha384 => 0x1302,
            Suite::Tls13Chacha20Poly1305Sha256 => 0x1303,
            Suite::EcdheEcdsaAes128GcmSha256 => 0xc02b,
            Suite::EcdheEcdsaAes256GcmSha384 => 0xc02c,
            Suite::EcdheRsaAes128GcmSha256 => 0xc02f,
            Suite::EcdheRsaAes256GcmSha384 => 0xc030,
            Suite::EcdheRsaChacha20Poly1305Sha256 => 0xcca8,
            Suite::EcdheEcdsaChacha20Poly1305Sha256 => 0xcca9,
        }
    }

    /// The IANA name: `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`.
    pub fn iana(self) -> &'static str {
        match self {
            Suite::Tls13Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            Suite::Tls13Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
            Suite::Tls13Chacha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
            Suite::EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Suite::EcdheEcdsaAes256GcmSha384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            Suite::EcdheRsaAes128GcmSha256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            Suite::EcdheRsaAes256GcmSha384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Suite::EcdheRsaChacha20Poly1305Sha256 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            Suite::EcdheEcdsaChacha20Poly1305Sha256 => {
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            }
        }
    }

    /// The OpenSSL/LibreSSL name: `ECDHE-RSA-AES128-GCM-SHA256` (TLS 1.3 suites have
    /// their IANA name in LibreSSL too).
    pub fn openssl(self) -> &'static str {
        match self {
            Suite::Tls13Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            Suite::Tls13Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
            Suite::Tls13Chacha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
            Suite::EcdheEcdsaAes128GcmSha256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
            Suite::EcdheEcdsaAes256GcmSha384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
            Suite::EcdheRsaAes128GcmSha256 => "ECDHE-RSA-AES128-GCM-SHA256",
            Suite::EcdheRsaAes256GcmSha384 => "ECDHE-RSA-AES256-GCM-SHA384",
            Suite::EcdheRsaChacha20Poly1305Sha256 => "ECDHE-RSA-CHACHA20-POLY1305",
            Suite::EcdheEcdsaChacha20Poly1305Sha256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        }
    }

    /// The protocol version the suite belongs to (TLS 1.2 suites are TLS 1.2 only).
    pub fn version(self) -> Version {
        match self {
            Suite::Tls13Aes128GcmSha256
            | Suite::Tls13Aes256GcmSha384
            | Suite::Tls13Chacha20Poly1305Sha256 => Version::Tls13,
            _ => Version::Tls12,
        }
    }

    pub fn from_value(value: u16) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.value() == value)
    }
}

/// What relayd uses when a protocol sets no `ciphers` (reference §3.3): `HIGH:!ADH` up to
/// relayd 5.4, `HIGH:!aNULL` until 7.6, libtls' `secure` since.
pub fn default_ciphers(release: Release) -> &'static str {
    if release < Release::L_LAST {
        "HIGH:!ADH"
    } else if release < Release::C_FIRST {
        "HIGH:!aNULL"
    } else {
        "secure"
    }
}

/// libtls' keywords (`tls_config_set_ciphers`, compared case-insensitively with the whole
/// string) and the cipher strings they stand for.
pub const LIBTLS_CIPHER_KEYWORDS: &[(&str, &str)] = &[
    ("secure", "TLSv1.3:TLSv1.2+AEAD+ECDHE:TLSv1.2+AEAD+DHE"),
    ("default", "TLSv1.3:TLSv1.2+AEAD+ECDHE:TLSv1.2+AEAD+DHE"),
    ("compat", "HIGH:!aNULL"),
    ("legacy", "HIGH:MEDIUM:!aNULL"),
    ("all", "ALL:!aNULL:!eNULL"),
    ("insecure", "ALL:!aNULL:!eNULL"),
];

/// LibreSSL's `SSL_DEFAULT_CIPHER_LIST`, used for a string that starts with `DEFAULT`.
const SSL_DEFAULT_CIPHER_LIST: &str = "ALL:!aNULL:!eNULL";

/// One term of a cipher string that relayd-run cannot follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// The term as written, with its `+`/`-`/`!` prefix: `AES256-SHA`, `kEDH`.
    pub text: String,
    /// Byte offset of the term in the string given to [`select_ciphers`].
    pub offset: usize,
}

/// What a cipher string selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CipherSelection {
    /// The string LibreSSL parses: the input, or what a libtls keyword stands for.
    pub expanded: String,
    /// The libtls keyword the input was, if it was one (`secure`).
    pub keyword: Option<&'static str>,
    /// rustls TLS 1.3 suites the string leaves, in relayd's order of preference.
    /// LibreSSL adds every TLS 1.3 suite when the string never mentions TLS 1.3.
    pub tls13: Vec<Suite>,
    /// rustls TLS 1.2 suites the string leaves, in relayd's order of preference.
    pub tls12: Vec<Suite>,
    /// Suites relayd would offer that relayd-run cannot (OpenSSL names, in order).
    pub dropped: Vec<&'static str>,
    /// Terms that add suites, none of which relayd-run offers (`AES256-SHA`, `kRSA`).
    pub unavailable: Vec<Term>,
    /// Terms LibreSSL ignores: unknown names, or combinations that select nothing.
    pub ignored: Vec<Term>,
    /// LibreSSL refuses the string: a character it cannot parse, or nothing selected
    /// (libtls: `no ciphers for '…'`, so relayd cannot start the relay).
    pub rejected: bool,
    /// The string has a character or command LibreSSL cannot parse (`(`, `@FOO`).
    pub invalid: bool,
}

impl CipherSelection {
    /// Every rustls suite left, TLS 1.3 first.
    pub fn suites(&self) -> Vec<Suite> {
        self.tls13
            .iter()
            .chain(self.tls12.iter())
            .copied()
            .collect()
    }

    /// Whether relayd would offer any TLS 1.2 suite (rustls' or not).
    pub fn relayd_has_tls12(&self) -> bool {
        !self.tls12.is_empty() || !self.dropped.is_empty()
    }
}

/// Evaluates a cipher string as relayd's libtls and LibreSSL do, and says which of
/// rustls' suites it allows.
///
/// The evaluation follows LibreSSL's `ssl_create_cipher_list`: its cipher table, its
/// aliases (`HIGH`, `aRSA`, `ECDHE`, `AESGCM`, `TLSv1.2`, …), `+` combinations, the
/// `-`, `+`, `!` and `@STRENGTH` commands and its starting order (which prefers AES
/// where the CPU has AES instructions; this assumes it has). Names are case-sensitive,
/// as in LibreSSL; unknown names are ignored. Unlike OpenSSL, LibreSSL lets the string
/// restrict TLS 1.3 suites, but only when it mentions TLS 1.3 (`TLSv1.3` or a TLS 1.3
/// suite name); otherwise every TLS 1.3 suite stays.
pub fn select_ciphers(input: &str) -> CipherSelection {
    let keyword = LIBTLS_CIPHER_KEYWORDS
        .iter()
        .find(|(k, _)| input.eq_ignore_ascii_case(k));
    let expanded = keyword.map_or(input, |(_, e)| e);
    let mut list = CipherList::new();
    let mut report = Report::default();
    let mut ok = true;
    let mut tls13_seen = false;
    let mut rest = expanded;
    if let Some(after) = expanded.strip_prefix("DEFAULT") {
        ok = list.process(
            SSL_DEFAULT_CIPHER_LIST,
            &mut tls13_seen,
            &mut Report::default(),
        );
        rest = after.strip_prefix(':').unwrap_or(after);
    }
    let base = expanded.len() - rest.len();
    if ok && !rest.is_empty() {
        let mut r = Report::default();
        ok = list.process(rest, &mut tls13_seen, &mut r);
        // Offsets only mean something for the input as written.
        if keyword.is_none() {
            for t in r.unavailable.iter_mut().chain(r.ignored.iter_mut()) {
                t.offset += base;
            }
            report = r;
        }
    }
    let chosen = list.result(tls13_seen);
    let rejected = !ok || chosen.is_empty();
    let mut sel = CipherSelection {
        expanded: expanded.to_string(),
        keyword: keyword.map(|(k, _)| *k),
        tls13: Vec::new(),
        tls12: Vec::new(),
        dropped: Vec::new(),
        unavailable: report.unavailable,
        ignored: report.ignored,
        rejected,
        invalid: !ok,
    };
    if rejected {
        return sel;
    }
    for c in chosen {
        match Suite::from_value(c.value) {
            Some(s) if s.version() == Version::Tls13 => sel.tls13.push(s),
            Some(s) => sel.tls12.push(s),
            None => sel.dropped.push(c.name),
        }
    }
    sel
}

// LibreSSL's algorithm bits (our own numbering; only set relations matter).
const K_RSA: u32 = 1;
const K_DHE: u32 = 2;
const K_ECDHE: u32 = 4;
const K_TLS13: u32 = 8;
const A_RSA: u32 = 1;
const A_NULL: u32 = 2;
const A_ECDSA: u32 = 4;
const A_TLS13: u32 = 8;
const E_NULL: u32 = 1;
const E_RC4: u32 = 2;
const E_3DES: u32 = 4;
const E_AES128: u32 = 8;
const E_AES256: u32 = 16;
const E_AES128GCM: u32 = 32;
const E_AES256GCM: u32 = 64;
const E_CAMELLIA128: u32 = 128;
const E_CAMELLIA256: u32 = 256;
const E_CHACHA20: u32 = 512;
const E_AES: u32 = E_AES128 | E_AES256 | E_AES128GCM | E_AES256GCM;
const M_MD5: u32 = 1;
const M_SHA1: u32 = 2;
const M_SHA256: u32 = 4;
const M_SHA384: u32 = 8;
const M_AEAD: u32 = 16;
const S_SSLV3: u32 = 1;
const S_TLSV1: u32 = 2;
const S_TLSV1_2: u32 = 4;
const S_TLSV1_3: u32 = 8;
const LOW: u32 = 1;
const MEDIUM: u32 = 2;
const HIGH: u32 = 4;
const NONE: u32 = 0; // SSL_STRONG_NONE is outside SSL_STRONG_MASK: no alias selects it.
const ANY: u32 = u32::MAX;

/// A row of LibreSSL's `ssl3_ciphers` table.
#[derive(Clone, Copy, Debug)]
struct Cipher {
    value: u16,
    name: &'static str,
    mkey: u32,
    auth: u32,
    enc: u32,
    mac: u32,
    ssl: u32,
    strength: u32,
    bits: u16,
}

macro_rules! ciphers {
    ($( $value:literal $name:literal $mkey:ident $auth:ident $enc:ident $mac:ident $ssl:ident $strength:ident $bits:literal; )*) => {
        &[ $( Cipher { value: $value, name: $name, mkey: $mkey, auth: $auth, enc: $enc, mac: $mac, ssl: $ssl, strength: $strength, bits: $bits }, )* ]
    };
}

/// LibreSSL's cipher table (`s3_lib.c`, 2024: no export, DES, DSS, GOST or PSK suites),
/// by code point.
const LIBRESSL_CIPHERS: &[Cipher] = ciphers! {
    0x0001 "NULL-MD5" K_RSA A_RSA E_NULL M_MD5 S_SSLV3 NONE 0;
    0x0002 "NULL-SHA" K_RSA A_RSA E_NULL M_SHA1 S_SSLV3 NONE 0;
    0x0004 "RC4-MD5" K_RSA A_RSA E_RC4 M_MD5 S_SSLV3 LOW 128;
    0x0005 "RC4-SHA" K_RSA A_RSA E_RC4 M_SHA1 S_SSLV3 LOW 128;
    0x000a "DES-CBC3-SHA" K_RSA A_RSA E_3DES M_SHA1 S_SSLV3 MEDIUM 112;
    0x0016 "EDH-RSA-DES-CBC3-SHA" K_DHE A_RSA E_3DES M_SHA1 S_SSLV3 MEDIUM 112;
    0x0018 "ADH-RC4-MD5" K_DHE A_NULL E_RC4 M_MD5 S_SSLV3 LOW 128;
    0x001b "ADH-DES-CBC3-SHA" K_DHE A_NULL E_3DES M_SHA1 S_SSLV3 MEDIUM 112;
    0x002f "AES128-SHA" K_RSA A_RSA E_AES128 M_SHA1 S_TLSV1 HIGH 128;
    0x0033 "DHE-RSA-AES128-SHA" K_DHE A_RSA E_AES128 M_SHA1 S_TLSV1 HIGH 128;
    0x0034 "ADH-AES128-SHA" K_DHE A_NULL E_AES128 M_SHA1 S_TLSV1 HIGH 128;
    0x0035 "AES256-SHA" K_RSA A_RSA E_AES256 M_SHA1 S_TLSV1 HIGH 256;
    0x0039 "DHE-RSA-AES256-SHA" K_DHE A_RSA E_AES256 M_SHA1 S_TLSV1 HIGH 256;
    0x003a "ADH-AES256-SHA" K_DHE A_NULL E_AES256 M_SHA1 S_TLSV1 HIGH 256;
    0x003b "NULL-SHA256" K_RSA A_RSA E_NULL M_SHA256 S_TLSV1_2 NONE 0;
    0x003c "AES128-SHA256" K_RSA A_RSA E_AES128 M_SHA256 S_TLSV1_2 HIGH 128;
    0x003d "AES256-SHA256" K_RSA A_RSA E_AES256 M_SHA256 S_TLSV1_2 HIGH 256;
    0x0041 "CAMELLIA128-SHA" K_RSA A_RSA E_CAMELLIA128 M_SHA1 S_TLSV1 HIGH 128;
    0x0045 "DHE-RSA-CAMELLIA128-SHA" K_DHE A_RSA E_CAMELLIA128 M_SHA1 S_TLSV1 HIGH 128;
    0x0046 "ADH-CAMELLIA128-SHA" K_DHE A_NULL E_CAMELLIA128 M_SHA1 S_TLSV1 HIGH 128;
    0x0067 "DHE-RSA-AES128-SHA256" K_DHE A_RSA E_AES128 M_SHA256 S_TLSV1_2 HIGH 128;
    0x006b "DHE-RSA-AES256-SHA256" K_DHE A_RSA E_AES256 M_SHA256 S_TLSV1_2 HIGH 256;
    0x006c "ADH-AES128-SHA256" K_DHE A_NULL E_AES128 M_SHA256 S_TLSV1_2 HIGH 128;
    0x006d "ADH-AES256-SHA256" K_DHE A_NULL E_AES256 M_SHA256 S_TLSV1_2 HIGH 256;
    0x0084 "CAMELLIA256-SHA" K_RSA A_RSA E_CAMELLIA256 M_SHA1 S_TLSV1 HIGH 256;
    0x0088 "DHE-RSA-CAMELLIA256-SHA" K_DHE A_RSA E_CAMELLIA256 M_SHA1 S_TLSV1 HIGH 256;
    0x0089 "ADH-CAMELLIA256-SHA" K_DHE A_NULL E_CAMELLIA256 M_SHA1 S_TLSV1 HIGH 256;
    0x009c "AES128-GCM-SHA256" K_RSA A_RSA E_AES128GCM M_AEAD S_TLSV1_2 HIGH 128;
    0x009d "AES256-GCM-SHA384" K_RSA A_RSA E_AES256GCM M_AEAD S_TLSV1_2 HIGH 256;
    0x009e "DHE-RSA-AES128-GCM-SHA256" K_DHE A_RSA E_AES128GCM M_AEAD S_TLSV1_2 HIGH 128;
    0x009f "DHE-RSA-AES256-GCM-SHA384" K_DHE A_RSA E_AES256GCM M_AEAD S_TLSV1_2 HIGH 256;
    0x00a6 "ADH-AES128-GCM-SHA256" K_DHE A_NULL E_AES128GCM M_AEAD S_TLSV1_2 HIGH 128;
    0x00a7 "ADH-AES256-GCM-SHA384" K_DHE A_NULL E_AES256GCM M_AEAD S_TLSV1_2 HIGH 256;
    0x00ba "CAMELLIA128-SHA256" K_RSA A_RSA E_CAMELLIA128 M_SHA256 S_TLSV1_2 HIGH 128;
    0x00be "DHE-RSA-CAMELLIA128-SHA256" K_DHE A_RSA E_CAMELLIA128 M_SHA256 S_TLSV1_2 HIGH 128;
    0x00bf "ADH-CAMELLIA128-SHA256" K_DHE A_NULL E_CAMELLIA128 M_SHA256 S_TLSV1_2 HIGH 128;
    0x00c0 "CAMELLIA256-SHA256" K_RSA A_RSA E_CAMELLIA256 M_SHA256 S_TLSV1_2 HIGH 256;
    0x00c4 "DHE-RSA-CAMELLIA256-SHA256" K_DHE A_RSA E_CAMELLIA256 M_SHA256 S_TLSV1_2 HIGH 256;
    0x00c5 "ADH-CAMELLIA256-SHA256" K_DHE A_NULL E_CAMELLIA256 M_SHA256 S_TLSV1_2 HIGH 256;
    0x1301 "TLS_AES_128_GCM_SHA256" K_TLS13 A_TLS13 E_AES128GCM M_AEAD S_TLSV1_3 HIGH 128;
    0x1302 "TLS_AES_256_GCM_SHA384" K_TLS13 A_TLS13 E_AES256GCM M_AEAD S_TLSV1_3 HIGH 256;
    0x1303 "TLS_CHACHA20_POLY1305_SHA256" K_TLS13 A_TLS13 E_CHACHA20 M_AEAD S_TLSV1_3 HIGH 256;
    0xc006 "ECDHE-ECDSA-NULL-SHA" K_ECDHE A_ECDSA E_NULL M_SHA1 S_TLSV1 NONE 0;
    0xc007 "ECDHE-ECDSA-RC4-SHA" K_ECDHE A_ECDSA E_RC4 M_SHA1 S_TLSV1 LOW 128;
    0xc008 "ECDHE-ECDSA-DES-CBC3-SHA" K_ECDHE A_ECDSA E_3DES M_SHA1 S_TLSV1 MEDIUM 112;
    0xc009 "ECDHE-ECDSA-AES128-SHA" K_ECDHE A_ECDSA E_AES128 M_SHA1 S_TLSV1 HIGH 128;
    0xc00a "ECDHE-ECDSA-AES256-SHA" K_ECDHE A_ECDSA E_AES256 M_SHA1 S_TLSV1 HIGH 256;
    0xc010 "ECDHE-RSA-NULL-SHA" K_ECDHE A_RSA E_NULL M_SHA1 S_TLSV1 NONE 0;
    0xc011 "ECDHE-RSA-RC4-SHA" K_ECDHE A_RSA E_RC4 M_SHA1 S_TLSV1 LOW 128;
    0xc012 "ECDHE-RSA-DES-CBC3-SHA" K_ECDHE A_RSA E_3DES M_SHA1 S_TLSV1 MEDIUM 112;
    0xc013 "ECDHE-RSA-AES128-SHA" K_ECDHE A_RSA E_AES128 M_SHA1 S_TLSV1 HIGH 128;
    0xc014 "ECDHE-RSA-AES256-SHA" K_ECDHE A_RSA E_AES256 M_SHA1 S_TLSV1 HIGH 256;
    0xc015 "AECDH-NULL-SHA" K_ECDHE A_NULL E_NULL M_SHA1 S_TLSV1 NONE 0;
    0xc016 "AECDH-RC4-SHA" K_ECDHE A_NULL E_RC4 M_SHA1 S_TLSV1 LOW 128;
    0xc017 "AECDH-DES-CBC3-SHA" K_ECDHE A_NULL E_3DES M_SHA1 S_TLSV1 MEDIUM 112;
    0xc018 "AECDH-AES128-SHA" K_ECDHE A_NULL E_AES128 M_SHA1 S_TLSV1 HIGH 128;
    0xc019 "AECDH-AES256-SHA" K_ECDHE A_NULL E_AES256 M_SHA1 S_TLSV1 HIGH 256;
    0xc023 "ECDHE-ECDSA-AES128-SHA256" K_ECDHE A_ECDSA E_AES128 M_SHA256 S_TLSV1_2 HIGH 128;
    0xc024 "ECDHE-ECDSA-AES256-SHA384" K_ECDHE A_ECDSA E_AES256 M_SHA384 S_TLSV1_2 HIGH 256;
    0xc027 "ECDHE-RSA-AES128-SHA256" K_ECDHE A_RSA E_AES128 M_SHA256 S_TLSV1_2 HIGH 128;
    0xc028 "ECDHE-RSA-AES256-SHA384" K_ECDHE A_RSA E_AES256 M_SHA384 S_TLSV1_2 HIGH 256;
    0xc02b "ECDHE-ECDSA-AES128-GCM-SHA256" K_ECDHE A_ECDSA E_AES128GCM M_AEAD S_TLSV1_2 HIGH 128;
    0xc02c "ECDHE-ECDSA-AES256-GCM-SHA384" K_ECDHE A_ECDSA E_AES256GCM M_AEAD S_TLSV1_2 HIGH 256;
    0xc02f "ECDHE-RSA-AES128-GCM-SHA256" K_ECDHE A_RSA E_AES128GCM M_AEAD S_TLSV1_2 HIGH 128;
    0xc030 "ECDHE-RSA-AES256-GCM-SHA384" K_ECDHE A_RSA E_AES256GCM M_AEAD S_TLSV1_2 HIGH 256;
    0xcca8 "ECDHE-RSA-CHACHA20-POLY1305" K_ECDHE A_RSA E_CHACHA20 M_AEAD S_TLSV1_2 HIGH 256;
    0xcca9 "ECDHE-ECDSA-CHACHA20-POLY1305" K_ECDHE A_ECDSA E_CHACHA20 M_AEAD S_TLSV1_2 HIGH 256;
    0xccaa "DHE-RSA-CHACHA20-POLY1305" K_DHE A_RSA E_CHACHA20 M_AEAD S_TLSV1_2 HIGH 256;
};

/// Older names LibreSSL printed for its TLS 1.3 suites, accepted as aliases here.
const TLS13_OLD_NAMES: &[(&str, u16)] = &[
    ("AEAD-AES128-GCM-SHA256", 0x1301),
    ("AEAD-AES256-GCM-SHA384", 0x1302),
    ("AEAD-CHACHA20-POLY1305-SHA256", 0x1303),
];

/// A group alias: a pattern over the algorithm bits (0 = any).
struct Alias {
    name: &'static str,
    mkey: u32,
    auth: u32,
    enc: u32,
    mac: u32,
    ssl: u32,
    strength: u32,
}

const fn alias(
    name: &'static str,
    mkey: u32,
    auth: u32,
    enc: u32,
    mac: u32,
    ssl: u32,
    strength: u32,
) -> Alias {
    Alias {
        name,
        mkey,
        auth,
        enc,
        mac,
        ssl,
        strength,
    }
}

/// LibreSSL's `cipher_aliases` (`ssl_ciph.c`), GOST aliases left out.
const ALIASES: &[Alias] = &[
    alias("ALL", 0, 0, ANY & !E_NULL, 0, 0, 0),
    alias("COMPLEMENTOFALL", 0, 0, E_NULL, 0, 0, 0),
    alias(
        "COMPLEMENTOFDEFAULT",
        K_DHE | K_ECDHE,
        A_NULL,
        ANY & !E_NULL,
        0,
        0,
        0,
    ),
    alias("kRSA", K_RSA, 0, 0, 0, 0, 0),
    alias("kEDH", K_DHE, 0, 0, 0, 0, 0),
    alias("DH", K_DHE, 0, 0, 0, 0, 0),
    alias("kEECDH", K_ECDHE, 0, 0, 0, 0, 0),
    alias("ECDH", K_ECDHE, 0, 0, 0, 0, 0),
    alias("aRSA", 0, A_RSA, 0, 0, 0, 0),
    alias("aNULL", 0, A_NULL, 0, 0, 0, 0),
    alias("aECDSA", 0, A_ECDSA, 0, 0, 0, 0),
    alias("ECDSA", 0, A_ECDSA, 0, 0, 0, 0),
    alias("DHE", K_DHE, ANY & !A_NULL, 0, 0, 0, 0),
    alias("EDH", K_DHE, ANY & !A_NULL, 0, 0, 0, 0),
    alias("ECDHE", K_ECDHE, ANY & !A_NULL, 0, 0, 0, 0),
    alias("EECDH", K_ECDHE, ANY & !A_NULL, 0, 0, 0, 0),
    alias("NULL", 0, 0, E_NULL, 0, 0, 0),
    alias("RSA", K_RSA, A_RSA, 0, 0, 0, 0),
    alias("ADH", K_DHE, A_NULL, 0, 0, 0, 0),
    alias("AECDH", K_ECDHE, A_NULL, 0, 0, 0, 0),
    alias("3DES", 0, 0, E_3DES, 0, 0, 0),
    alias("RC4", 0, 0, E_RC4, 0, 0, 0),
    alias("eNULL", 0, 0, E_NULL, 0, 0, 0),
    alias("AES128", 0, 0, E_AES128 | E_AES128GCM, 0, 0, 0),
    alias("AES256", 0, 0, E_AES256 | E_AES256GCM, 0, 0, 0),
    alias("AES", 0, 0, E_AES, 0, 0, 0),
    alias("AESGCM", 0, 0, E_AES128GCM | E_AES256GCM, 0, 0, 0),
    alias("CAMELLIA128", 0, 0, E_CAMELLIA128, 0, 0, 0),
    alias("CAMELLIA256", 0, 0, E_CAMELLIA256, 0, 0, 0),
    alias("CAMELLIA", 0, 0, E_CAMELLIA128 | E_CAMELLIA256, 0, 0, 0),
    alias("CHACHA20", 0, 0, E_CHACHA20, 0, 0, 0),
    alias("AEAD", 0, 0, 0, M_AEAD, 0, 0),
    alias("MD5", 0, 0, 0, M_MD5, 0, 0),
    alias("SHA1", 0, 0, 0, M_SHA1, 0, 0),
    alias("SHA", 0, 0, 0, M_SHA1, 0, 0),
    alias("SHA256", 0, 0, 0, M_SHA256, 0, 0),
    alias("SHA384", 0, 0, 0, M_SHA384, 0, 0),
    alias("SSLv3", 0, 0, 0, 0, S_SSLV3, 0),
    alias("TLSv1", 0, 0, 0, 0, S_TLSV1, 0),
    alias("TLSv1.2", 0, 0, 0, 0, S_TLSV1_2, 0),
    alias("TLSv1.3", 0, 0, 0, 0, S_TLSV1_3, 0),
    alias("LOW", 0, 0, 0, 0, 0, LOW),
    alias("MEDIUM", 0, 0, 0, 0, 0, MEDIUM),
    alias("HIGH", 0, 0, 0, 0, 0, HIGH),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    Add,
    Kill,
    Del,
    Ord,
    Special,
}

/// A selection pattern built from one term.
#[derive(Clone, Copy, Default)]
struct Pattern {
    id: Option<u16>,
    mkey: u32,
    auth: u32,
    enc: u32,
    mac: u32,
    ssl: u32,
    strength: u32,
}

impl Pattern {
    fn matches(&self, c: &Cipher) -> bool {
        if self.id.is_some_and(|id| id != c.value) {
            return false;
        }
        (self.mkey == 0 || self.mkey & c.mkey != 0)
            && (self.auth == 0 || self.auth & c.auth != 0)
            && (self.enc == 0 || self.enc & c.enc != 0)
            && (self.mac == 0 || self.mac & c.mac != 0)
            && (self.ssl == 0 || self.ssl & c.ssl != 0)
            && (self.strength == 0 || self.strength & c.strength != 0)
    }
}

/// Narrows `acc` by `new` the way LibreSSL combines `A+B`; false when nothing is left.
fn narrow(acc: &mut u32, new: u32) -> bool {
    if new == 0 {
        return true;
    }
    *acc = if *acc == 0 { new } else { *acc & new };
    *acc != 0
}

#[derive(Default)]
struct Report {
    unavailable: Vec<Term>,
    ignored: Vec<Term>,
}

/// LibreSSL's ordered cipher list with active flags (its `CIPHER_ORDER` list).
struct CipherList {
    /// Indices into [`LIBRESSL_CIPHERS`], in list order; killed ciphers are removed.
    order: Vec<usize>,
    active: Vec<bool>,
}

impl CipherList {
    /// The list as `ssl_create_cipher_list` prepares it before reading the rule string.
    fn new() -> Self {
        // LibreSSL collects its table from the end (highest code point first).
        let n = LIBRESSL_CIPHERS.len();
        let mut l = CipherList {
            order: (0..n).rev().collect(),
            active: vec![false; n],
        };
        let all = Pattern::default();
        let pat = |f: fn(&mut Pattern)| {
            let mut p = Pattern::default();
            f(&mut p);
            p
        };
        let ecdhe = pat(|p| p.mkey = K_ECDHE);
        l.apply(ecdhe, Rule::Add);
        l.apply(ecdhe, Rule::Del);
        // AES first (assuming AES instructions), then ChaCha20.
        l.apply(pat(|p| p.enc = E_AES), Rule::Add);
        l.apply(pat(|p| p.enc = E_CHACHA20), Rule::Add);
        l.apply(all, Rule::Add);
        l.apply(pat(|p| p.mac = M_MD5), Rule::Ord);
        l.apply(pat(|p| p.auth = A_NULL), Rule::Ord);
        l.apply(pat(|p| p.mkey = K_RSA), Rule::Ord);
        l.apply(pat(|p| p.enc = E_RC4), Rule::Ord);
        l.strength_sort();
        l.apply(all, Rule::Del);
        let tls13 = pat(|p| p.ssl = S_TLSV1_3);
        l.apply(tls13, Rule::Add);
        l.apply(tls13, Rule::Del);
        l
    }

    fn apply(&mut self, p: Pattern, rule: Rule) {
        let hit = |i: usize| p.matches(&LIBRESSL_CIPHERS[i]);
        match rule {
            Rule::Add | Rule::Ord => {
                let want = rule == Rule::Ord;
                let (moved, kept): (Vec<usize>, Vec<usize>) = self
                    .order
                    .iter()
                    .partition(|&&i| hit(i) && self.active[i] == want);
                for &i in &moved {
                    self.active[i] = true;
                }
                self.order = kept.into_iter().chain(moved).collect();
            }
            Rule::Del => {
                let (moved, kept): (Vec<usize>, Vec<usize>) =
                    self.order.iter().partition(|&&i| hit(i) && self.active[i]);
                for &i in &moved {
                    self.active[i] = false;
                }
                self.order = moved.into_iter().chain(kept).collect();
            }
            Rule::Kill => {
                for &i in self.order.iter().filter(|&&i| hit(i)) {
                    self.active[i] = false;
                }
                self.order.retain(|&i| !hit(i));
            }
            Rule::Special => {}
        }
    }

    /// `@STRENGTH`: active ciphers sorted by strength, strongest first, stable.
    fn strength_sort(&mut self) {
        let mut bits: Vec<u16> = self
            .order
            .iter()
            .filter(|&&i| self.active[i])
            .map(|&i| LIBRESSL_CIPHERS[i].bits)
            .collect();
        bits.sort_unstable_by(|a, b| b.cmp(a));
        bits.dedup();
        for b in bits {
            let (moved, kept): (Vec<usize>, Vec<usize>) = self
                .order
                .iter()
                .partition(|&&i| self.active[i] && LIBRESSL_CIPHERS[i].bits == b);
            self.order = kept.into_iter().chain(moved).collect();
        }
    }

    /// Looks a name up the way LibreSSL does: cipher names first, then group aliases.
    /// For an explicit suite the flag is set and `ssl` is the suite's version, which
    /// does not become part of the pattern.
    fn lookup(name: &str) -> Option<(Pattern, bool)> {
        let by_name = LIBRESSL_CIPHERS
            .iter()
            .find(|c| c.name == name)
            .or_else(|| {
                TLS13_OLD_NAMES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, v)| LIBRESSL_CIPHERS.iter().find(|c| c.value == *v))
            });
        if let Some(c) = by_name {
            let p = Pattern {
                id: Some(c.value),
                mkey: c.mkey,
                auth: c.auth,
                enc: c.enc,
                mac: c.mac,
                ssl: c.ssl,
                strength: c.strength,
            };
            return Some((p, true));
        }
        ALIASES.iter().find(|a| a.name == name).map(|a| {
            let p = Pattern {
                id: None,
                mkey: a.mkey,
                auth: a.auth,
                enc: a.enc,
                mac: a.mac,
                ssl: a.ssl,
                strength: a.strength,
            };
            (p, false)
        })
    }

    /// `ssl_cipher_process_rulestr`; false when LibreSSL would refuse the string.
    fn process(&mut self, s: &str, tls13_seen: &mut bool, report: &mut Report) -> bool {
        let bytes = s.as_bytes();
        let is_sep = |b: u8| matches!(b, b':' | b' ' | b';' | b',');
        let is_word = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        *tls13_seen = false;
        let mut ok = true;
        let mut i = 0;
        while i < bytes.len() {
            let ch = bytes[i];
            let start = i;
            let rule = match ch {
                b'-' => Rule::Del,
                b'+' => Rule::Ord,
                b'!' => Rule::Kill,
                b'@' => Rule::Special,
                _ => Rule::Add,
            };
            if rule != Rule::Add {
                i += 1;
            }
            if is_sep(ch) {
                i += 1;
                continue;
            }
            let mut p = Pattern::default();
            let mut found;
            let mut special_word = "";
            loop {
                let w0 = i;
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
                if i == w0 {
                    // Neither a command, a separator nor a name: LibreSSL fails.
                    ok = false;
                    found = false;
                    i += 1;
                    break;
                }
                let word = &s[w0..i];
                if rule == Rule::Special {
                    special_word = word;
                    found = false;
                    break;
                }
                let multi = bytes.get(i) == Some(&b'+');
                if multi {
                    i += 1;
                }
                let Some((a, explicit)) = Self::lookup(word) else {
                    found = false;
                    break;
                };
                found = true;
                if !(narrow(&mut p.mkey, a.mkey)
                    && narrow(&mut p.auth, a.auth)
                    && narrow(&mut p.enc, a.enc)
                    && narrow(&mut p.mac, a.mac)
                    && narrow(&mut p.strength, a.strength))
                {
                    found = false;
                    break;
                }
                if explicit {
                    p.id = a.id;
                    if a.ssl & S_TLSV1_3 != 0 {
                        *tls13_seen = true;
                    }
                } else if !narrow(&mut p.ssl, a.ssl) {
                    found = false;
                    break;
                }
                if !multi {
                    break;
                }
            }
            if rule == Rule::Special {
                if special_word == "STRENGTH" {
                    self.strength_sort();
                } else {
                    ok = false;
                }
                while i < bytes.len() && !is_sep(bytes[i]) {
                    i += 1;
                }
            } else if found {
                if p.ssl == S_TLSV1_3 {
                    *tls13_seen = true;
                }
                if rule == Rule::Add {
                    let any = LIBRESSL_CIPHERS.iter().any(|c| p.matches(c));
                    let offered = LIBRESSL_CIPHERS
                        .iter()
                        .any(|c| p.matches(c) && Suite::from_value(c.value).is_some());
                    if any && !offered {
                        report.unavailable.push(Term {
                            text: s[start..i].to_string(),
                            offset: start,
                        });
                    }
                }
                self.apply(p, rule);
            } else {
                while i < bytes.len() && !is_sep(bytes[i]) {
                    i += 1;
                }
                if ok && i > start {
                    report.ignored.push(Term {
                        text: s[start..i].to_string(),
                        offset: start,
                    });
                }
            }
        }
        ok
    }

    /// The final list: active ciphers, plus every TLS 1.3 suite when the string never
    /// mentioned TLS 1.3; nothing at all when no cipher is active.
    fn result(&self, tls13_seen: bool) -> Vec<&'static Cipher> {
        if !self.order.iter().any(|&i| self.active[i]) {
            return Vec::new();
        }
        self.order
            .iter()
            .filter(|&&i| self.active[i] || (!tls13_seen && LIBRESSL_CIPHERS[i].ssl == S_TLSV1_3))
            .map(|&i| &LIBRESSL_CIPHERS[i])
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Key exchange groups
// ---------------------------------------------------------------------------------------

/// A key exchange group rustls' *ring* provider offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    X25519,
    Secp256r1,
    Secp384r1,
}

impl Group {
    /// rustls' order (and default).
    pub const ALL: [Group; 3] = [Group::X25519, Group::Secp256r1, Group::Secp384r1];

    /// The IANA `NamedGroup` code point (what `rustls::NamedGroup::from(u16)` takes).
    pub fn value(self) -> u16 {
        match self {
            Group::X25519 => 0x001d,
            Group::Secp256r1 => 0x0017,
            Group::Secp384r1 => 0x0018,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Group::X25519 => "X25519",
            Group::Secp256r1 => "P-256",
            Group::Secp384r1 => "P-384",
        }
    }
}

/// libtls' default curve list (`TLS_ECDHE_CURVES`), what `ecdhe default` means.
pub const LIBTLS_DEFAULT_CURVES: &str = "X25519,P-256,P-384";

/// Curve names libtls accepts (OpenSSL short and long names, NIST names) and the rustls
/// group each is, if rustls has it.
const CURVE_NAMES: &[(&str, Option<Group>)] = &[
    ("X25519", Some(Group::X25519)),
    ("x25519", Some(Group::X25519)),
    ("prime256v1", Some(Group::Secp256r1)),
    ("secp256r1", Some(Group::Secp256r1)),
    ("P-256", Some(Group::Secp256r1)),
    ("secp384r1", Some(Group::Secp384r1)),
    ("P-384", Some(Group::Secp384r1)),
    ("secp521r1", None),
    ("P-521", None),
    ("secp224r1", None),
    ("P-224", None),
    ("secp256k1", None),
    ("X448", None),
    ("X25519MLKEM768", None),
    ("brainpoolP256r1", None),
    ("brainpoolP384r1", None),
    ("brainpoolP512r1", None),
];

/// What an `ecdhe` curve list gives relayd-run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Curves {
    /// rustls groups, in the list's order of preference, without repeats.
    pub groups: Vec<Group>,
    /// Curves libtls knows that rustls' *ring* provider lacks, as written.
    pub unsupported: Vec<String>,
    /// Names libtls does not know (relayd refuses them: `invalid ecdhe curve`).
    pub unknown: Vec<String>,
    /// No listed curve is one rustls has: relayd-run uses its default groups
    /// ([`Group::ALL`]) instead, so clients can still connect.
    pub fallback: bool,
}

/// Maps an `ecdhe` value (libtls `tls_config_set_ecdhecurves`: `default`, or names split
/// at `,` and `:`) onto rustls groups.
pub fn select_curves(input: &str) -> Curves {
    let list = if input.eq_ignore_ascii_case("default") {
        LIBTLS_DEFAULT_CURVES
    } else {
        input
    };
    let mut c = Curves {
        groups: Vec::new(),
        unsupported: Vec::new(),
        unknown: Vec::new(),
        fallback: false,
    };
    for name in list.split([',', ':']) {
        let name = name.trim_start_matches([' ', '\t']);
        match CURVE_NAMES.iter().find(|(n, _)| *n == name) {
            Some((_, Some(g))) => {
                if !c.groups.contains(g) {
                    c.groups.push(*g);
                }
            }
            Some((_, None)) => c.unsupported.push(name.to_string()),
            None => c.unknown.push(name.to_string()),
        }
    }
    if c.groups.is_empty() {
        c.fallback = true;
        c.groups = Group::ALL.to_vec();
    }
    c
}

/// Whether an `edh params` value asks for DHE suites (`auto`, `legacy`), which rustls
/// does not implement; `none` (the default) matches relayd-run.
pub fn edh_requested(params: &str) -> bool {
    params.eq_ignore_ascii_case("auto") || params.eq_ignore_ascii_case("legacy")
}

/// `a`, `a and b`, `a, b and c`.
pub fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The files relayd tries for keypair `name` of a relay listening on `port`
/// (relay.c `relay_load_certfiles`): `/etc/ssl/NAME:PORT.crt` with
/// `/etc/ssl/private/NAME:PORT.key`, then the same without `:PORT`, certificate and key
/// as a pair; OCSP staples beside the certificates. The compiler embeds what it finds,
/// a late-bound plan keeps these lists for the runtime to try in the same order.
pub struct KeypairPaths {
    pub certs: [String; 2],
    pub keys: [String; 2],
    pub ocsp: [String; 2],
}

pub fn keypair_paths(name: &str, port: impl std::fmt::Display) -> KeypairPaths {
    KeypairPaths {
        certs: [
            format!("/etc/ssl/{name}:{port}.crt"),
            format!("/etc/ssl/{name}.crt"),
        ],
        keys: [
            format!("/etc/ssl/private/{name}:{port}.key"),
            format!("/etc/ssl/private/{name}.key"),
        ],
        ocsp: [
            format!("/etc/ssl/{name}:{port}.ocsp"),
            format!("/etc/ssl/{name}.ocsp"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &[Suite]) -> Vec<&'static str> {
        s.iter().map(|s| s.openssl()).collect()
    }

    #[test]
    fn secure_is_the_aead_ecdhe_suites_and_tls13() {
        let s = select_ciphers("secure");
        assert_eq!(s.keyword, Some("secure"));
        assert!(!s.rejected);
        assert_eq!(
            names(&s.tls13),
            [
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
                "TLS_AES_128_GCM_SHA256"
            ]
        );
        assert_eq!(s.tls12.len(), 6);
        // DHE AEAD suites are what relayd would add and relayd-run lacks.
        assert!(s.dropped.iter().all(|d| d.starts_with("DHE-RSA-")));
        assert_eq!(s.dropped.len(), 3);
        // Keywords are not reported term by term.
        assert!(s.unavailable.is_empty());
        assert_eq!(select_ciphers("SECURE").tls12, s.tls12);
        assert_eq!(select_ciphers("default").tls12, s.tls12);
    }

    #[test]
    fn high_without_anull() {
        let s = select_ciphers("HIGH:!aNULL");
        assert_eq!(
            names(&s.tls12),
            [
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-RSA-CHACHA20-POLY1305",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ]
        );
        assert_eq!(s.tls13.len(), 3);
        assert!(s.dropped.contains(&"AES256-SHA"));
        assert!(s.dropped.contains(&"DHE-RSA-AES256-GCM-SHA384"));
        assert!(!s
            .dropped
            .iter()
            .any(|d| d.starts_with("ADH") || d.starts_with("AECDH")));
        assert!(!s.dropped.contains(&"DES-CBC3-SHA"), "3DES is MEDIUM");
        assert!(s.unavailable.is_empty() && s.ignored.is_empty());
        assert_eq!(select_ciphers("compat").tls12, s.tls12);
        // The oldest default only kills ADH, not AECDH; for rustls it is the same.
        assert_eq!(select_ciphers("HIGH:!ADH").tls12, s.tls12);
    }

    #[test]
    fn combinations_and_single_suites() {
        let s = select_ciphers("ECDHE+AESGCM");
        assert_eq!(s.tls12.len(), 4);
        assert!(s.dropped.is_empty());
        assert_eq!(s.tls13.len(), 3, "TLS 1.3 not mentioned: all stay");
        let s = select_ciphers("ECDHE-RSA-AES128-GCM-SHA256");
        assert_eq!(s.tls12, [Suite::EcdheRsaAes128GcmSha256]);
        assert_eq!(s.tls13.len(), 3);
        let s = select_ciphers("ECDHE-RSA-AES128-GCM-SHA256:AES256-SHA");
        assert_eq!(s.tls12, [Suite::EcdheRsaAes128GcmSha256]);
        assert_eq!(s.dropped, ["AES256-SHA"]);
        assert_eq!(
            s.unavailable,
            [Term {
                text: "AES256-SHA".into(),
                offset: 28
            }]
        );
    }

    #[test]
    fn nothing_for_rustls() {
        let s = select_ciphers("DHE-RSA-AES256-GCM-SHA384:AES256-SHA");
        assert!(!s.rejected);
        assert!(s.tls12.is_empty());
        assert_eq!(s.tls13.len(), 3);
        assert_eq!(s.unavailable.len(), 2);
        assert!(s.relayd_has_tls12());
        let s = select_ciphers("kRSA:!AESGCM");
        assert!(s.tls12.is_empty());
        assert_eq!(s.unavailable[0].text, "kRSA");
    }

    #[test]
    fn tls13_mentioned_restricts_tls13() {
        let s = select_ciphers("TLS_AES_256_GCM_SHA384:ECDHE+AESGCM");
        assert_eq!(s.tls13, [Suite::Tls13Aes256GcmSha384]);
        let s = select_ciphers("HIGH:!TLSv1.3");
        assert!(s.tls13.is_empty());
        assert_eq!(s.tls12.len(), 6);
        let s = select_ciphers("TLSv1.3");
        assert_eq!(s.tls13.len(), 3);
        assert!(s.tls12.is_empty() && !s.relayd_has_tls12());
    }

    #[test]
    fn unknown_and_invalid() {
        let s = select_ciphers("FOO");
        assert!(
            s.rejected,
            "nothing selected: libtls says `no ciphers for 'FOO'`"
        );
        assert_eq!(s.ignored[0].text, "FOO");
        let s = select_ciphers("HIGH:high:ECDHE+aNULL");
        assert!(!s.rejected);
        let ignored: Vec<&str> = s.ignored.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(ignored, ["high", "ECDHE+aNULL"]);
        assert!(!s.invalid);
        assert!(select_ciphers("HIGH:(x)").rejected);
        assert!(select_ciphers("HIGH:(x)").invalid);
        assert!(select_ciphers("HIGH:@FOO").invalid);
        assert!(!select_ciphers("HIGH:@STRENGTH").rejected);
    }

    #[test]
    fn removal_ordering_and_separators() {
        let s = select_ciphers("ECDHE+AESGCM ECDHE+CHACHA20,-ECDHE-ECDSA-CHACHA20-POLY1305");
        assert_eq!(s.tls12.len(), 5);
        let s = select_ciphers("ECDHE+AESGCM:+AES128");
        assert_eq!(
            names(&s.tls12[2..]),
            [
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES128-GCM-SHA256"
            ]
        );
        let s = select_ciphers("DEFAULT:!ECDSA");
        assert_eq!(s.tls12.len(), 3);
        let s = select_ciphers("legacy");
        assert!(s.dropped.contains(&"DES-CBC3-SHA"));
        assert!(s.unavailable.is_empty());
        let s = select_ciphers("ALL:!aNULL:!eNULL:!MEDIUM:!LOW:@STRENGTH");
        assert_eq!(s.tls12.len(), 6);
    }

    #[test]
    fn defaults_per_release() {
        assert_eq!(default_ciphers(Release::CURRENT), "secure");
        assert_eq!(default_ciphers(Release::new(6, 6)), "HIGH:!aNULL");
        assert_eq!(default_ciphers(Release::L_FIRST), "HIGH:!ADH");
        for r in Release::ALL {
            assert!(!select_ciphers(default_ciphers(r)).tls12.is_empty());
        }
    }

    #[test]
    fn version_flags() {
        let cur = Release::CURRENT;
        let mut f = Flags::default_for(cur);
        assert_eq!(f.versions.rustls().describe(), "TLS 1.2 and TLS 1.3");
        assert!(f.cipher_server_preference && !f.client_renegotiation);
        assert!(!f.apply("no-such", true, cur));
        f.apply("tlsv1.3", false, cur);
        assert_eq!(f.versions.rustls().describe(), "TLS 1.2 only");
        f.apply("tlsv1", true, cur);
        assert_eq!(
            f.versions.describe(),
            "TLS 1.0, TLS 1.1, TLS 1.2 and TLS 1.3"
        );
        f.apply("tlsv1", false, cur);
        assert!(f.versions.is_empty());
        assert_eq!(f.versions.rustls().describe(), "no protocol version");

        // relayd 5.5: SSLv3 and TLS 1.0; relayd-run raises that to TLS 1.2.
        let old = Versions::default_for(Release::L_LAST).rustls();
        assert!(old.raised && old.tls12 && !old.tls13);
        assert_eq!(
            Versions::flag("tlsv1", Release::L_LAST),
            Some(Versions::of(&[Version::Tls10]))
        );
        assert_eq!(
            Versions::flag("tlsv1", Release::new(6, 6)),
            Some(Versions::of(&[
                Version::Tls10,
                Version::Tls11,
                Version::Tls12
            ]))
        );
        let f = Flags::default_for(Release::F_FIRST);
        assert!(f.client_renegotiation && !f.cipher_server_preference);
        assert_eq!(
            Versions::default_for(Release::new(6, 6)).describe(),
            "TLS 1.2"
        );
        assert!(legacy_flags_ignored(Release::CURRENT));
        assert!(!legacy_flags_ignored(Release::C_FIRST));
    }

    #[test]
    fn curves() {
        let c = select_curves("default");
        assert_eq!(c.groups, Group::ALL);
        assert!(!c.fallback);
        let c = select_curves("P-384:X25519,prime256v1");
        assert_eq!(
            c.groups,
            [Group::Secp384r1, Group::X25519, Group::Secp256r1]
        );
        let c = select_curves("X25519, P-521");
        assert_eq!(c.groups, [Group::X25519]);
        assert_eq!(c.unsupported, ["P-521"]);
        let c = select_curves("secp521r1");
        assert!(c.fallback);
        assert_eq!(c.groups, Group::ALL);
        let c = select_curves("X25519,bogus");
        assert_eq!(c.unknown, ["bogus"]);
        assert!(edh_requested("auto") && edh_requested("LEGACY") && !edh_requested("none"));
    }

    #[test]
    fn suite_tables_agree() {
        for s in Suite::ALL {
            let row = LIBRESSL_CIPHERS.iter().find(|c| c.value == s.value());
            assert_eq!(row.map(|c| c.name), Some(s.openssl()));
            assert_eq!(Suite::from_value(s.value()), Some(s));
            assert!(s.iana().starts_with("TLS_"));
        }
        assert_eq!(join_and(&["a", "b", "c"]), "a, b and c");
    }
}
