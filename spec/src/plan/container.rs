//! The plan file container (format version 2): a checksummed frame around the plan's
//! byte sections.
//!
//! The plan's body (an rkyv archive) is produced and read elsewhere; this module only
//! frames it. Its promise is that **no byte of a plan file goes unchecked**: every byte
//! is either compared with a constant (magic), covered by the header digest (every
//! header field, including padding and reserved bytes), covered by the body or keys
//! digest, or refused by the length check (bytes past the end). A corrupt, truncated or
//! foreign file is therefore refused with one clear sentence, never half-loaded.
//!
//! # Layout
//!
//! ```text
//! ┌──────────────────────┬───────────────────────┬──────────────────────────┐
//! │ header (HEADER_LEN)  │ body (body_len bytes) │ keys (keys_len bytes)    │
//! └──────────────────────┴───────────────────────┴──────────────────────────┘
//! 0                      256                      256 + body_len             end
//! ```
//!
//! The file is exactly `HEADER_LEN + body_len + keys_len` bytes long. The header is
//! [`HEADER_LEN`] = 256 bytes (a multiple of 16), so in a file buffer that is itself
//! 16-aligned (an mmap is page-aligned) the body starts 16-aligned, as rkyv wants.
//! All integers are little-endian.
//!
//! | offset | size | field | check on reading, and why |
//! | ---: | ---: | --- | --- |
//! | 0 | 8 | magic `RELAYDPL` | compared first, so a relayd.conf or any other file handed to `relayd-run` is named for what it is instead of being reported as "corrupt" |
//! | 8 | 4 | format version (u32) | must be [`FORMAT_VERSION`]; checked before anything else in the header, because magic and version are the only fields whose place every format version keeps, so a plan from another relaydc gets "wrong version, rebuild" and not "corrupted" |
//! | 12 | 4 | flags (u32) | bit 0 [`Flags::LATE_BIND`], bit 1 [`Flags::HAS_KEYS`]; an unknown bit is refused because it means a feature this runtime would silently ignore; `HAS_KEYS` must agree with `keys_len != 0` |
//! | 16 | 32 | compiler version | UTF-8, NUL-padded (e.g. `relaydc 0.1.0`); must be valid UTF-8 and NUL after its first NUL, so the bytes decode to exactly one string |
//! | 48 | 32 | source digest | SHA-256 over the source files ([`source_digest`]); recorded, ties the plan to the exact configuration it was built from |
//! | 80 | 8 | body length (u64) | with keys length, must add up to the file length exactly: a short file is truncated, a long one carries bytes nobody checked |
//! | 88 | 32 | body SHA-256 | the body's bytes must hash to it ([`open`], [`open_public`]) |
//! | 120 | 8 | keys length (u64) | see body length |
//! | 128 | 32 | keys SHA-256 | the keys' bytes must hash to it ([`open`]; [`open_public`] never sees them) |
//! | 160 | 64 | reserved | must be zero, so a later format can give them a meaning that an older reader cannot mistake |
//! | 224 | 32 | header SHA-256 | over bytes 0..224; every header field is thereby checked before it is believed |
//!
//! # Who reads what
//!
//! * [`open`] checks the whole file: header, body digest, keys digest. The signer process
//!   (the only one that holds private keys) uses it.
//! * [`open_public`] is for the relay process, which must never map the keys section. It
//!   reads the first [`HEADER_LEN`] bytes, calls [`parse_header`], then reads exactly
//!   [`Header::public_len`] bytes from the start of the file and hands them to
//!   [`open_public`], which checks the header and body digests; the keys' length and
//!   digest are only recorded.
//! * [`read_header`] checks the header and the file length without hashing the body
//!   (e.g. `relayctl` or `relaydc` printing what a plan is).
//!
//! The writer, [`write()`], is deterministic: the same inputs give the same bytes, so a plan
//! is byte-for-byte reproducible.

use sha2::{Digest, Sha256};
use std::fmt;

/// The container format version this module writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// The length of the fixed header, in bytes; the body starts at this offset.
pub const HEADER_LEN: usize = 256;

/// The first eight bytes of every plan file.
pub const MAGIC: [u8; 8] = *b"RELAYDPL";

/// The longest compiler version the header can hold, in bytes.
pub const COMPILER_VERSION_LEN: usize = 32;

/// The command every "rebuild the plan" message names.
pub const REBUILD_COMMAND: &str = "relaydc compile relayd.conf -o plan.bin";

// The body must start 16-aligned in a 16-aligned buffer.
const _: () = assert!(HEADER_LEN & 15 == 0);

/// Field offsets inside the header (see the module table).
mod off {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const FLAGS: usize = 12;
    pub const COMPILER: usize = 16;
    pub const SOURCE_DIGEST: usize = 48;
    pub const BODY_LEN: usize = 80;
    pub const BODY_SHA: usize = 88;
    pub const KEYS_LEN: usize = 120;
    pub const KEYS_SHA: usize = 128;
    pub const RESERVED: usize = 160;
    pub const HEADER_SHA: usize = 224;
    pub const END: usize = 256;
}

const _: () = assert!(off::END == HEADER_LEN);
const _: () = assert!(off::COMPILER + COMPILER_VERSION_LEN == off::SOURCE_DIGEST);

// ---------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------

/// The header's flag word. Only known bits can be set through this type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(u32);

impl Flags {
    /// No flags.
    pub const EMPTY: Flags = Flags(0);
    /// Bit 0: the plan keeps DNS names and TLS file paths; `relayd-run` binds and
    /// validates them at start and on every reload.
    pub const LATE_BIND: Flags = Flags(1 << 0);
    /// Bit 1: the keys section is not empty. [`write()`] sets it exactly when keys are
    /// given; readers refuse a header where it disagrees with the keys length.
    pub const HAS_KEYS: Flags = Flags(1 << 1);
    /// Every bit this format version defines.
    pub const KNOWN: Flags = Flags(Self::LATE_BIND.0 | Self::HAS_KEYS.0);

    /// The flags of a raw word, or `None` if it has a bit this version does not define.
    pub fn from_bits(bits: u32) -> Option<Flags> {
        if bits & !Self::KNOWN.0 == 0 {
            Some(Flags(bits))
        } else {
            None
        }
    }

    /// The raw word.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` added.
    #[must_use]
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` without the bits of `other`.
    #[must_use]
    pub fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

// ---------------------------------------------------------------------------------------
// Header, errors
// ---------------------------------------------------------------------------------------

/// The decoded header of a plan file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Always [`FORMAT_VERSION`] in a header this module returns.
    pub format_version: u32,
    pub flags: Flags,
    /// The version of the relaydc that wrote the plan, e.g. `relaydc 0.1.0`.
    pub compiler_version: String,
    /// SHA-256 over the configuration's source files ([`source_digest`]).
    pub source_digest: [u8; 32],
    pub body_len: u64,
    pub body_sha256: [u8; 32],
    pub keys_len: u64,
    pub keys_sha256: [u8; 32],
}

impl Header {
    /// How many bytes from the start of the file the relay process reads: header and body,
    /// never the keys. Saturates at `u64::MAX` (only for a hand-made header; one returned
    /// by [`parse_header`] always fits).
    pub fn public_len(&self) -> u64 {
        (HEADER_LEN as u64).saturating_add(self.body_len)
    }

    /// The length of the whole file: header, body and keys. Saturates like
    /// [`Header::public_len`].
    pub fn file_len(&self) -> u64 {
        self.public_len().saturating_add(self.keys_len)
    }
}

/// A plan file whose every byte has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub header: Header,
    /// The body section (the rkyv archive); starts at offset [`HEADER_LEN`] of the file.
    pub body: &'a [u8],
    /// The keys section (private keys); empty when the plan has none.
    pub keys: &'a [u8],
}

/// Why a plan file was refused. `Display` gives one operator-facing sentence (without the
/// file's name: the caller puts it in front).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerError {
    /// Shorter than the magic, version and header need (`len` bytes).
    TooShort { len: u64 },
    /// The first bytes are not `RELAYDPL`; `first_bytes` holds up to 16 of them.
    NotAPlan { first_bytes: Vec<u8> },
    /// A plan of another container format version.
    WrongVersion { found: u32 },
    /// The header's bytes do not hash to the header digest.
    HeaderChecksum,
    /// The body's bytes do not hash to the header's body digest.
    BodyChecksum,
    /// The keys' bytes do not hash to the header's keys digest.
    KeysChecksum,
    /// The file ends before the header says it does.
    Truncated { len: u64, expected: u64 },
    /// The file goes on after the header says it ends.
    TrailingBytes { len: u64, expected: u64 },
    /// The header's section lengths add up to more than a file can hold.
    TooLarge,
    /// Flag bits this version does not define (`bits` holds only the unknown ones).
    UnknownFlags { bits: u32 },
    /// `HAS_KEYS` disagrees with the keys section's length.
    KeysFlagMismatch { has_keys_flag: bool, keys_len: u64 },
    /// A reserved header byte is not zero (`offset` is the first such byte in the file).
    ReservedNonZero { offset: usize },
    /// The compiler version field is not UTF-8 text followed by NUL padding.
    CompilerVersion,
    /// [`open_public`] was handed more than header and body: the relay process must never
    /// read the keys section (a bug in the caller, not in the file).
    PublicPrefixTooLong { len: u64, expected: u64 },
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rebuild = REBUILD_COMMAND;
        match self {
            ContainerError::TooShort { len } => write!(
                f,
                "the file is too short to be a relaydc plan ({len} bytes, a plan header alone \
                 has {HEADER_LEN}); rebuild it with `{rebuild}`"
            ),
            ContainerError::NotAPlan { first_bytes } => {
                write!(f, "this is not a relaydc plan: ")?;
                match printable_prefix(first_bytes) {
                    Some(text) => write!(
                        f,
                        "it starts with the text \"{}\" where a plan starts with \"RELAYDPL\"; if \
                         it is a relayd.conf, compile it first with `{rebuild}`",
                        text.escape_debug()
                    ),
                    None => write!(
                        f,
                        "it starts with the bytes {} where a plan starts with \"RELAYDPL\"; build \
                         a plan with `{rebuild}`",
                        hex_bytes(first_bytes)
                    ),
                }
            }
            ContainerError::WrongVersion { found } => write!(
                f,
                "the plan has format version {found}, but this relayd-run reads version \
                 {FORMAT_VERSION}; rebuild it with the matching relaydc: `{rebuild}`"
            ),
            ContainerError::HeaderChecksum => write!(
                f,
                "the plan's header does not match its checksum, so the file is corrupted; \
                 rebuild it with `{rebuild}`"
            ),
            ContainerError::BodyChecksum => write!(
                f,
                "the plan's body does not match its checksum, so the file is corrupted; \
                 rebuild it with `{rebuild}`"
            ),
            ContainerError::KeysChecksum => write!(
                f,
                "the plan's keys section does not match its checksum, so the file is corrupted; \
                 rebuild it with `{rebuild}`"
            ),
            ContainerError::Truncated { len, expected } => write!(
                f,
                "the plan is truncated: the file has {len} bytes but its header says \
                 {expected}; rebuild it with `{rebuild}` or copy it again"
            ),
            ContainerError::TrailingBytes { len, expected } => write!(
                f,
                "the plan has {} unexpected bytes after its end (the file has {len} bytes, its \
                 header says {expected}); rebuild it with `{rebuild}` or copy it again",
                len.saturating_sub(*expected)
            ),
            ContainerError::TooLarge => write!(
                f,
                "the plan's header gives section lengths that add up to more than any file can \
                 hold, so the file is corrupted or not written by relaydc; rebuild it with \
                 `{rebuild}`"
            ),
            ContainerError::UnknownFlags { bits } => write!(
                f,
                "the plan uses features this relayd-run does not know (flag bits {bits:#010x}); \
                 rebuild it with the matching relaydc: `{rebuild}`"
            ),
            ContainerError::KeysFlagMismatch {
                has_keys_flag,
                keys_len,
            } => write!(
                f,
                "the plan's header is inconsistent (the has-keys flag is {} but the keys \
                 section has {keys_len} bytes), so it was not written by relaydc; rebuild it \
                 with `{rebuild}`",
                if *has_keys_flag { "set" } else { "clear" }
            ),
            ContainerError::ReservedNonZero { offset } => write!(
                f,
                "the plan's header has a nonzero reserved byte at offset {offset}, so it was \
                 written by a newer or foreign tool; rebuild it with `{rebuild}`"
            ),
            ContainerError::CompilerVersion => write!(
                f,
                "the plan's compiler-version field is not UTF-8 text, so it was not written by \
                 relaydc; rebuild it with `{rebuild}`"
            ),
            ContainerError::PublicPrefixTooLong { len, expected } => write!(
                f,
                "internal error: the relay process was handed {len} bytes of the plan, but its \
                 header and body end at byte {expected} and the relay process must never read \
                 the keys section"
            ),
        }
    }
}

impl std::error::Error for ContainerError {}

/// The bytes as text if they look like text (UTF-8 without control characters other
/// than tab, CR and LF, possibly cut in the middle of a character at the end).
fn printable_prefix(bytes: &[u8]) -> Option<String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            // Cut inside a multi-byte character: keep the valid part.
            std::str::from_utf8(bytes.get(..e.valid_up_to())?).ok()?
        }
        Err(_) => return None,
    };
    if text.is_empty()
        || text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return None;
    }
    Some(text.to_owned())
}

fn hex_bytes(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(" ")
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The compiler version as stored: cut at the first NUL, then to at most
/// [`COMPILER_VERSION_LEN`] bytes at a character boundary.
fn stored_compiler_version(version: &str) -> &str {
    let version = version.split('\0').next().unwrap_or_default();
    let mut end = version.len().min(COMPILER_VERSION_LEN);
    while !version.is_char_boundary(end) {
        end -= 1;
    }
    version.get(..end).unwrap_or_default()
}

/// Writes a plan file: the header, then `body`, then `keys` (may be empty).
///
/// Deterministic: the same inputs give the same bytes. `compiler_version` is cut at its
/// first NUL and to at most [`COMPILER_VERSION_LEN`] bytes (at a character boundary).
/// [`Flags::HAS_KEYS`] is set exactly when `keys` is not empty, whatever `flags` says.
pub fn write(
    compiler_version: &str,
    flags: Flags,
    source_digest: [u8; 32],
    body: &[u8],
    keys: &[u8],
) -> Vec<u8> {
    let flags = if keys.is_empty() {
        flags.difference(Flags::HAS_KEYS)
    } else {
        flags.union(Flags::HAS_KEYS)
    };
    let mut header = [0u8; HEADER_LEN];
    fn put(header: &mut [u8; HEADER_LEN], at: usize, bytes: &[u8]) {
        if let Some(dst) = header.get_mut(at..at.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    }
    put(&mut header, off::MAGIC, &MAGIC);
    put(&mut header, off::VERSION, &FORMAT_VERSION.to_le_bytes());
    put(&mut header, off::FLAGS, &flags.bits().to_le_bytes());
    put(
        &mut header,
        off::COMPILER,
        stored_compiler_version(compiler_version).as_bytes(),
    );
    put(&mut header, off::SOURCE_DIGEST, &source_digest);
    put(
        &mut header,
        off::BODY_LEN,
        &(body.len() as u64).to_le_bytes(),
    );
    put(&mut header, off::BODY_SHA, &sha256(body));
    put(
        &mut header,
        off::KEYS_LEN,
        &(keys.len() as u64).to_le_bytes(),
    );
    put(&mut header, off::KEYS_SHA, &sha256(keys));
    // Reserved bytes stay zero.
    let header_sha = sha256(header.get(..off::HEADER_SHA).unwrap_or_default());
    put(&mut header, off::HEADER_SHA, &header_sha);

    let mut file = Vec::with_capacity(
        HEADER_LEN
            .saturating_add(body.len())
            .saturating_add(keys.len()),
    );
    file.extend_from_slice(&header);
    file.extend_from_slice(body);
    file.extend_from_slice(keys);
    file
}

/// SHA-256 over the configuration's source files, in the given order: for each file its
/// name's length (u64, little-endian), its name (UTF-8), its content's length (u64,
/// little-endian) and its content. The lengths make the encoding unambiguous.
///
/// The compiler passes names relative to the main file's directory, so the digest does
/// not depend on where the build machine keeps the files.
pub fn source_digest(files: &[(&str, &[u8])]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (name, content) in files {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(content);
    }
    hasher.finalize().into()
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(bytes, at))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(bytes, at))
}

/// Decodes and checks a header from the first bytes of a plan file (at least
/// [`HEADER_LEN`]; anything after them is ignored): magic, format version, header digest,
/// reserved bytes, flags, compiler version, and that the section lengths fit in a file.
/// It does not look at the file's length or at any section.
pub fn parse_header(bytes: &[u8]) -> Result<Header, ContainerError> {
    let len = bytes.len() as u64;
    // Magic: compared on what is there, so that even a tiny foreign file is named as such.
    let head = bytes
        .get(..bytes.len().min(MAGIC.len()))
        .unwrap_or_default();
    if MAGIC.get(..head.len()) != Some(head) {
        let shown = bytes.get(..bytes.len().min(16)).unwrap_or_default();
        return Err(ContainerError::NotAPlan {
            first_bytes: shown.to_vec(),
        });
    }
    if bytes.len() < off::FLAGS {
        return Err(ContainerError::TooShort { len });
    }
    let found = u32_at(bytes, off::VERSION);
    if found != FORMAT_VERSION {
        return Err(ContainerError::WrongVersion { found });
    }
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(ContainerError::TooShort { len });
    };
    let covered = header.get(..off::HEADER_SHA).unwrap_or_default();
    if sha256(covered) != array::<32>(header, off::HEADER_SHA) {
        return Err(ContainerError::HeaderChecksum);
    }
    let reserved = header
        .get(off::RESERVED..off::HEADER_SHA)
        .unwrap_or_default();
    if let Some(i) = reserved.iter().position(|&b| b != 0) {
        return Err(ContainerError::ReservedNonZero {
            offset: off::RESERVED + i,
        });
    }
    let bits = u32_at(header, off::FLAGS);
    let Some(flags) = Flags::from_bits(bits) else {
        return Err(ContainerError::UnknownFlags {
            bits: bits & !Flags::KNOWN.bits(),
        });
    };
    let field = header
        .get(off::COMPILER..off::SOURCE_DIGEST)
        .unwrap_or_default();
    let text_len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let (text, padding) = field.split_at(text_len);
    if padding.iter().any(|&b| b != 0) {
        return Err(ContainerError::CompilerVersion);
    }
    let Ok(compiler_version) = std::str::from_utf8(text) else {
        return Err(ContainerError::CompilerVersion);
    };
    let body_len = u64_at(header, off::BODY_LEN);
    let keys_len = u64_at(header, off::KEYS_LEN);
    let has_keys_flag = flags.contains(Flags::HAS_KEYS);
    if has_keys_flag != (keys_len != 0) {
        return Err(ContainerError::KeysFlagMismatch {
            has_keys_flag,
            keys_len,
        });
    }
    let total = (HEADER_LEN as u64)
        .checked_add(body_len)
        .and_then(|n| n.checked_add(keys_len))
        .filter(|&n| usize::try_from(n).is_ok());
    if total.is_none() {
        return Err(ContainerError::TooLarge);
    }
    Ok(Header {
        format_version: found,
        flags,
        compiler_version: compiler_version.to_owned(),
        source_digest: array(header, off::SOURCE_DIGEST),
        body_len,
        body_sha256: array(header, off::BODY_SHA),
        keys_len,
        keys_sha256: array(header, off::KEYS_SHA),
    })
}

/// Compares an actual length with the one the header gives.
fn check_len(len: usize, expected: u64) -> Result<(), ContainerError> {
    let len = len as u64;
    if len < expected {
        Err(ContainerError::Truncated { len, expected })
    } else if len > expected {
        Err(ContainerError::TrailingBytes { len, expected })
    } else {
        Ok(())
    }
}

/// Reads and checks the header of a whole plan file ([`parse_header`]) and checks that the
/// file's length is exactly header + body + keys. Does not hash the body or the keys.
pub fn read_header(file: &[u8]) -> Result<Header, ContainerError> {
    let header = parse_header(file)?;
    check_len(file.len(), header.file_len())?;
    Ok(header)
}

/// The body's bytes, given a header whose lengths were checked against `file`.
fn body_of<'a>(file: &'a [u8], header: &Header) -> Result<&'a [u8], ContainerError> {
    let end = usize::try_from(header.public_len()).map_err(|_| ContainerError::TooLarge)?;
    let body = file.get(HEADER_LEN..end).ok_or(ContainerError::Truncated {
        len: file.len() as u64,
        expected: header.public_len(),
    })?;
    if sha256(body) != header.body_sha256 {
        return Err(ContainerError::BodyChecksum);
    }
    Ok(body)
}

/// Opens a whole plan file, checking every byte: the header ([`read_header`]), the body
/// digest and the keys digest.
pub fn open(file: &[u8]) -> Result<Opened<'_>, ContainerError> {
    let header = read_header(file)?;
    let body = body_of(file, &header)?;
    let keys_start = body.len().saturating_add(HEADER_LEN);
    let keys = file.get(keys_start..).unwrap_or_default();
    if sha256(keys) != header.keys_sha256 {
        return Err(ContainerError::KeysChecksum);
    }
    Ok(Opened { header, body, keys })
}

/// Opens the public part of a plan: exactly the first [`Header::public_len`] bytes of the
/// file (header and body, never the keys). Checks the header and the body digest; the
/// keys section's length and digest are only recorded in the returned header.
///
/// Fewer bytes is [`ContainerError::Truncated`]; more is
/// [`ContainerError::PublicPrefixTooLong`], because the relay process must never read
/// the keys.
pub fn open_public(file_prefix: &[u8]) -> Result<(Header, &[u8]), ContainerError> {
    let header = parse_header(file_prefix)?;
    let expected = header.public_len();
    let len = file_prefix.len() as u64;
    if len > expected {
        return Err(ContainerError::PublicPrefixTooLong { len, expected });
    }
    check_len(file_prefix.len(), expected)?;
    let body = body_of(file_prefix, &header)?;
    Ok((header, body))
}
