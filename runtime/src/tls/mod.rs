//! TLS for relays, as relayd's relay.c sets it up through libtls (`relay_tls_ctx_create`):
//!
//! * `listen … tls`: a server configuration per relay ([`server`]) with every keypair of
//!   the relay, the first the default and SNI choosing another whose certificate names
//!   the client's server name, each with its OCSP staple; `client ca` makes client
//!   certificates mandatory and checks them against that CA.
//! * `forward with tls`: a client configuration per relay ([`client`]) that checks the
//!   backend's chain against `ca file` when there is one and accepts any certificate
//!   otherwise, never checks names, and sends no SNI, all as relayd does.
//! * TLS inspection (`ca cert`/`ca key` with both of the above): the backend's
//!   certificate is copied, given the relay's key and signed by the inspection CA
//!   ([`mint`]), and the client is served that copy.
//!
//! Versions, cipher suites, groups, cipher-server-preference and session tickets come
//! from the plan, where the compiler mapped relayd's options onto rustls (`spec::tls`).
//! Everything here is built once per plan, before anything is served; a keypair that
//! does not load refuses the plan. Private keys are reached only through [`keys`].

mod client;
mod der;
pub mod keys;
mod mint;
mod server;
mod stream;

pub use keys::KeySource;
pub use mint::Inspect;
pub use stream::Stream;

use relaydc_spec::era::Release;
use relaydc_spec::plan::{Material, Plan, TlsSettings};
use rustls::crypto::CryptoProvider;
use rustls::SupportedProtocolVersion;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::io;
use std::sync::Arc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The TLS of every relay of one plan, by relay index.
#[derive(Default)]
pub struct PlanTls {
    relays: Vec<Option<RelayTls>>,
}

impl PlanTls {
    /// The relay's TLS, if it speaks TLS on either side.
    pub fn relay(&self, relay: usize) -> Option<&RelayTls> {
        self.relays.get(relay).and_then(Option::as_ref)
    }
}

/// One relay's TLS.
pub struct RelayTls {
    /// For its `listen … tls` listeners.
    pub acceptor: Option<TlsAcceptor>,
    /// For its backends, with `forward with tls`.
    pub connector: Option<TlsConnector>,
    /// TLS inspection: the client is served a copy of the backend's certificate.
    pub inspect: Option<Inspect>,
}

/// Builds the TLS of every enabled relay of `plan`, whose private keys `keys` holds.
/// The error names the relay and what failed.
pub fn build(plan: &Plan, keys: KeySource<'_>) -> Result<PlanTls, String> {
    let mut relays = Vec::with_capacity(plan.relays.len());
    for r in &plan.relays {
        let listens = r.listeners.iter().any(|l| l.tls);
        let forwards = r.forwards.iter().any(|f| f.tls);
        if r.disabled || !(listens || forwards) {
            relays.push(None);
            continue;
        }
        let settings = match r.protocol.and_then(|p| plan.protocols.get(p as usize)) {
            Some(p) => p.tls.clone(),
            None => default_settings(&plan.release),
        };
        let fail = |what: String| format!("relay {}: {what}", r.name);
        let base = Base::new(&settings).map_err(fail)?;
        let acceptor = if listens {
            Some(server::acceptor(plan, r, &settings, keys, &base).map_err(fail)?)
        } else {
            None
        };
        let connector = if forwards {
            Some(client::connector(&settings, &base).map_err(fail)?)
        } else {
            None
        };
        // relayd inspects when the relay is both a TLS server and a TLS client and the
        // protocol has a CA (relayd.c's parent_configure sets F_TLSINSPECT on exactly
        // that).
        let inspect = match (listens, forwards, settings.inspection_ca) {
            (true, true, Some(ca)) => {
                Some(mint::Inspect::new(plan, r, ca, keys, &base).map_err(fail)?)
            }
            _ => None,
        };
        relays.push(Some(RelayTls {
            acceptor,
            connector,
            inspect,
        }));
    }
    Ok(PlanTls { relays })
}

/// relayd's built-in tcp protocol's TLS settings (a relay without `protocol`), for the
/// plan's release, through the same mapping the compiler uses.
fn default_settings(release: &str) -> TlsSettings {
    use relaydc_spec::tls;
    let release = Release::parse(release).unwrap_or(Release::CURRENT);
    let flags = tls::Flags::default_for(release);
    let versions = flags.versions.rustls();
    TlsSettings {
        tls12: versions.tls12,
        tls13: versions.tls13,
        cipher_suites: tls::select_ciphers(tls::default_ciphers(release))
            .suites()
            .into_iter()
            .map(|s| s.value())
            .collect(),
        kx_groups: tls::select_curves("default")
            .groups
            .into_iter()
            .map(|g| g.value())
            .collect(),
        session_tickets: false,
        server_preference: flags.cipher_server_preference,
        ca_file: None,
        client_ca: None,
        inspection_ca: None,
    }
}

/// What every configuration of a relay shares: the provider restricted to the
/// protocol's suites and groups, and its versions.
struct Base {
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static SupportedProtocolVersion>,
}

impl Base {
    fn new(s: &TlsSettings) -> Result<Base, String> {
        use rustls::crypto::ring;
        let mut provider = ring::default_provider();
        provider.cipher_suites = s
            .cipher_suites
            .iter()
            .filter_map(|id| {
                ring::ALL_CIPHER_SUITES
                    .iter()
                    .find(|c| u16::from(c.suite()) == *id)
            })
            .copied()
            .collect();
        provider.kx_groups = s
            .kx_groups
            .iter()
            .filter_map(|id| {
                ring::ALL_KX_GROUPS
                    .iter()
                    .find(|g| u16::from(g.name()) == *id)
            })
            .copied()
            .collect();
        let mut versions = Vec::new();
        if s.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        if s.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if versions.is_empty() {
            return Err("no TLS protocol version left".to_string());
        }
        if provider.cipher_suites.is_empty() {
            return Err("no cipher suite left".to_string());
        }
        if provider.kx_groups.is_empty() {
            return Err("no ecdhe curve left".to_string());
        }
        Ok(Base {
            provider: Arc::new(provider),
            versions,
        })
    }
}

/// The certificates of PEM material, in order.
fn pem_certs(m: &Material, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let Material::Embedded(bytes) = m else {
        return Err(format!("{what} was never bound"));
    };
    let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(format!("{what} holds no PEM certificate"));
    }
    Ok(certs)
}

/// relayd's close message for a failed handshake, `TLS handshake error: ` and libtls's
/// `tls_error()`: `handshake failed: ` and the reason in LibreSSL's words where rustls
/// has the same reason (`peer did not return a certificate`, `certificate verify
/// failed`, the alerts), rustls' own text otherwise.
pub fn handshake_error(e: &io::Error) -> String {
    format!("TLS handshake error: handshake failed: {}", reason(e))
}

fn reason(e: &io::Error) -> String {
    if let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return rustls_reason(r);
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "unexpected EOF".to_string(),
        _ => match e.raw_os_error() {
            // strerror(3)'s text, without Rust's " (os error N)".
            Some(code) => {
                let s = io::Error::from_raw_os_error(code).to_string();
                s.split(" (os error").next().unwrap_or(&s).to_string()
            }
            None => e.to_string(),
        },
    }
}

fn rustls_reason(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, Error as E, PeerIncompatible as P};
    let s = match e {
        E::NoCertificatesPresented => "peer did not return a certificate",
        E::InvalidCertificate(_) => "certificate verify failed",
        E::PeerIncompatible(P::NoCipherSuitesInCommon) => "no shared cipher",
        E::PeerIncompatible(P::NoKxGroupsInCommon | P::NoEcPointFormatsInCommon) => {
            "no suitable key share"
        }
        E::PeerIncompatible(
            P::Tls12NotOffered
            | P::Tls12NotOfferedOrEnabled
            | P::Tls13RequiredForQuic
            | P::SupportedVersionsExtensionRequired,
        ) => "unsupported protocol",
        E::AlertReceived(a) => {
            return match a {
                A::HandshakeFailure => "sslv3 alert handshake failure".to_string(),
                A::BadCertificate => "sslv3 alert bad certificate".to_string(),
                A::CertificateExpired => "sslv3 alert certificate expired".to_string(),
                A::CertificateUnknown => "sslv3 alert certificate unknown".to_string(),
                A::UnknownCA => "tlsv1 alert unknown ca".to_string(),
                A::ProtocolVersion => "tlsv1 alert protocol version".to_string(),
                A::DecryptError => "tlsv1 alert decrypt error".to_string(),
                A::InternalError => "tlsv1 alert internal error".to_string(),
                A::AccessDenied => "tlsv1 alert access denied".to_string(),
                A::CertificateRequired => "tlsv13 alert certificate required".to_string(),
                other => format!("alert {}", format!("{other:?}").to_ascii_lowercase()),
            }
        }
        other => return other.to_string(),
    };
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_errors_read_as_libressl_writes_them() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert_eq!(
            handshake_error(&e),
            "TLS handshake error: handshake failed: peer did not return a certificate"
        );
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(
            handshake_error(&eof),
            "TLS handshake error: handshake failed: unexpected EOF"
        );
    }

    #[test]
    fn default_settings_offer_what_relayd_offers() {
        let s = default_settings("7.9");
        assert!(s.tls12 && s.tls13);
        assert!(!s.session_tickets);
        assert!(Base::new(&s).is_ok());
    }
}
