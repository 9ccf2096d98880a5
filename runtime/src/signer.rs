//! The signer process: relayd's `ca`. It alone holds the private keys; the relay process
//! asks it for every handshake signature over a socketpair (DESIGN.md, "Processes").
//!
//! [`Signer::start`] re-executes relayd-run (`/proc/self/exe`, the same binary even if
//! the file was replaced since) with the hidden first argument [`SUBCOMMAND`] and a
//! socket as its standard input. The keys go over that socket, never through argv or
//! the environment: the plan's keys section as it is in the file (decoded only in the
//! child) and keys bound late from files. The child drops privileges first (the same
//! user as the relay process, no capability at all, not dumpable) and installs its
//! seccomp allow-list (`crate::seccomp`), then reads and loads the keys with rustls'
//! ring provider and answers with each key's algorithm, signature schemes and public
//! key. The parent wipes what it sent.
//!
//! Signing: each thread of the relay process that signs gets its own connection to the
//! child, made on first use by passing one end of a fresh socketpair over the first
//! socket (SCM_RIGHTS); the child serves each connection on a thread of its own, so
//! workers sign in parallel and never wait for each other. A request is one write
//! (`len | key index | scheme | message`) and the answer one read (`len | status |
//! signature or error text`), synchronous, because rustls calls
//! [`rustls::sign::Signer::sign`] synchronously on the worker's thread.
//!
//! The child exits when its first socket reaches end of file: when every [`Signer`]
//! handle is dropped, or when the relay process dies, however it dies.

use crate::privs::Privileges;
use relaydc_spec::plan::{KeyKind, PrivateKey};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    SubjectPublicKeyInfoDer,
};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::cell::RefCell;
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use zeroize::{Zeroize, Zeroizing};

/// The hidden first argument that makes relayd-run the signer.
pub const SUBCOMMAND: &str = "__signer";
/// The signer's argument for `--no-seccomp`, before the privileges'.
const NO_SECCOMP: &str = "--no-seccomp";

const MAGIC: &[u8; 4] = b"RSK1";
/// The largest message a handshake signs is a TLS 1.2 ServerKeyExchange (well under
/// 1 KiB); anything much larger is not a handshake.
const MAX_MESSAGE: usize = 64 * 1024;
/// Larger than any signature (RSA 8192: 1 KiB) or error text.
const MAX_ANSWER: usize = 16 * 1024;
/// Keys arrive once, at start: a plan's keys are kilobytes.
const MAX_KEYS_BYTES: usize = 64 * 1024 * 1024;
const MAX_KEYS: u32 = 1 << 16;
/// Connections (relay threads that sign) one signer serves at once.
const MAX_CONNECTIONS: usize = 4096;
/// A signature takes milliseconds at most; a signer that does not answer in this time
/// is stuck, and the handshake fails rather than the worker hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Every scheme rustls' ring provider can sign with, RSA in its order of preference,
/// so a key's list (what `choose_scheme` accepts, in this order) keeps its preference.
const SCHEMES: [SignatureScheme; 10] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP521_SHA512,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// Why the signer could not start, or could not sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerError {
    /// The child could not be started.
    Spawn(String),
    /// The child refused the keys or its privilege drop (its sentence).
    Refused(String),
    /// Talking to the child failed (it died, or does not answer).
    Io(String),
    /// The child answered something that is not the protocol.
    Protocol(&'static str),
    /// No key has this index.
    NoSuchKey { index: usize, keys: usize },
    /// The key cannot sign with this scheme.
    Scheme {
        index: usize,
        scheme: SignatureScheme,
    },
    /// The message is larger than any handshake signs.
    TooLarge(usize),
    /// The certificate's public key is not the private key's.
    KeyMismatch { index: usize },
    /// The certificate cannot be parsed.
    Certificate(String),
    /// The child could not sign (its sentence).
    Sign(String),
}

impl fmt::Display for SignerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignerError::Spawn(e) => write!(f, "cannot start the signer process: {e}"),
            SignerError::Refused(e) => write!(f, "the signer process refused to start: {e}"),
            SignerError::Io(e) => write!(f, "signer process: {e}"),
            SignerError::Protocol(e) => write!(f, "signer process: unexpected answer ({e})"),
            SignerError::NoSuchKey { index, keys } => write!(
                f,
                "signer process: no private key {index} (it holds {keys})"
            ),
            SignerError::Scheme { index, scheme } => write!(
                f,
                "signer process: private key {index} cannot sign with {scheme:?}"
            ),
            SignerError::TooLarge(n) => write!(
                f,
                "signer process: a {n}-byte message is larger than any handshake signs"
            ),
            SignerError::KeyMismatch { index } => write!(
                f,
                "private key {index} does not belong to the certificate it is paired with"
            ),
            SignerError::Certificate(e) => write!(f, "cannot read the certificate: {e}"),
            SignerError::Sign(e) => write!(f, "signer process: {e}"),
        }
    }
}

impl std::error::Error for SignerError {}

impl From<io::Error> for SignerError {
    fn from(e: io::Error) -> Self {
        SignerError::Io(e.to_string())
    }
}

/// The keys to hand over: the plan's keys section as it is in the file (indexes from 0)
/// and keys bound late from files (indexes after the section's).
#[derive(Clone, Copy, Debug, Default)]
pub struct KeySource<'a> {
    pub section: &'a [u8],
    pub keys: &'a [PrivateKey],
}

/// How to start the child.
#[derive(Clone, Debug)]
pub struct Options {
    /// The relayd-run binary; `/proc/self/exe` unless a library user (a test) runs
    /// from another binary.
    pub program: PathBuf,
    /// Who the child becomes before it reads a key.
    pub privileges: Privileges,
    /// Whether the child installs its seccomp filter (`crate::seccomp`) after its
    /// privilege drop; `--no-seccomp` turns it off.
    pub seccomp: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            program: PathBuf::from("/proc/self/exe"),
            privileges: Privileges::keep(),
            seccomp: true,
        }
    }
}

/// What the child told about one key.
#[derive(Clone, Debug)]
struct KeyInfo {
    algorithm: SignatureAlgorithm,
    /// In the key's order of preference.
    schemes: Vec<SignatureScheme>,
    spki: Vec<u8>,
}

struct Inner {
    /// The first socket: connections are handed over it. Closing it ends the child.
    ctl: Mutex<UnixStream>,
    child: Mutex<Option<Child>>,
    pid: u32,
    keys: Vec<KeyInfo>,
    section_keys: usize,
    connections: AtomicUsize,
}

/// A handle on the signer process; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Signer {
    inner: Arc<Inner>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("pid", &self.inner.pid)
            .field("keys", &self.inner.keys.len())
            .finish()
    }
}

thread_local! {
    /// This thread's connection to each live signer.
    static CONNECTIONS: RefCell<Vec<(Weak<Inner>, UnixStream)>> = const { RefCell::new(Vec::new()) };
}

impl Signer {
    /// Starts a signer holding `keys` (indexes as in the slice), from this binary, with
    /// the privileges the process has (the child still sheds every capability).
    pub fn start(keys: &[PrivateKey]) -> Result<Signer, SignerError> {
        Signer::start_with(KeySource { section: &[], keys }, &Options::default())
    }

    /// Starts a signer: spawns the child, hands it the keys, waits until it holds them.
    /// The caller wipes its own copies afterwards.
    pub fn start_with(keys: KeySource<'_>, opts: &Options) -> Result<Signer, SignerError> {
        let (mut ours, theirs) = UnixStream::pair()?;
        let mut cmd = Command::new(&opts.program);
        cmd.arg0("relayd-run: signer")
            .arg(SUBCOMMAND)
            .args((!opts.seccomp).then_some(NO_SECCOMP))
            .args(opts.privileges.to_args())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env_remove("NOTIFY_SOCKET")
            // Out of the terminal's process group: ^C reaches the relay process, which
            // shuts down gracefully and still needs signatures meanwhile.
            .process_group(0);
        let spawned = cmd.spawn();
        // The child's end must be closed here, or the child's death would never reach
        // this process as end of file.
        drop(cmd);
        let mut child = spawned.map_err(|e| SignerError::Spawn(e.to_string()))?;
        let pid = child.id();
        ours.set_read_timeout(Some(IO_TIMEOUT))?;
        ours.set_write_timeout(Some(IO_TIMEOUT))?;
        let handshake = send_keys(&mut ours, keys).and_then(|()| read_ready(&mut ours));
        let (section_keys, infos) = match handshake {
            Ok(r) => r,
            Err(e) => {
                let _ = ours.shutdown(std::net::Shutdown::Both);
                reap(&mut child);
                return Err(e);
            }
        };
        ours.set_read_timeout(None)?;
        Ok(Signer {
            inner: Arc::new(Inner {
                ctl: Mutex::new(ours),
                child: Mutex::new(Some(child)),
                pid,
                keys: infos,
                section_keys,
                connections: AtomicUsize::new(0),
            }),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// How many keys the child holds.
    pub fn len(&self) -> usize {
        self.inner.keys.len()
    }

    /// Whether the child holds no key.
    pub fn is_empty(&self) -> bool {
        self.inner.keys.is_empty()
    }

    /// How many of them came from the plan's keys section (late-bound keys follow).
    pub fn section_keys(&self) -> usize {
        self.inner.section_keys
    }

    /// The key at `index` as rustls' signing key, after checking that `cert` (the
    /// end-entity certificate, DER) carries its public key. Its `choose_scheme` offers
    /// what the key type supports; signing asks the child.
    pub fn signing_key(
        &self,
        index: usize,
        cert: &CertificateDer<'_>,
    ) -> Result<Arc<dyn SigningKey>, SignerError> {
        let info = self.info(index)?;
        let key: Arc<dyn SigningKey> = Arc::new(RemoteKey {
            signer: self.clone(),
            index,
            algorithm: info.algorithm,
            schemes: info.schemes.clone(),
            spki: info.spki.clone(),
        });
        let certified = CertifiedKey::new(vec![cert.clone().into_owned()], Arc::clone(&key));
        match certified.keys_match() {
            Ok(()) => Ok(key),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(SignerError::KeyMismatch { index })
            }
            // The child could not tell the public key: nothing to compare.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(key),
            Err(e) => Err(SignerError::Certificate(e.to_string())),
        }
    }

    /// Signs `message` with key `index` and `scheme`: one request, one answer, on this
    /// thread's connection.
    pub fn sign(
        &self,
        index: usize,
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, SignerError> {
        let info = self.info(index)?;
        if !info.schemes.contains(&scheme) {
            return Err(SignerError::Scheme { index, scheme });
        }
        if message.len() > MAX_MESSAGE {
            return Err(SignerError::TooLarge(message.len()));
        }
        let mut request = Vec::with_capacity(10 + message.len());
        request.extend_from_slice(&((6 + message.len()) as u32).to_le_bytes());
        request.extend_from_slice(&(index as u32).to_le_bytes());
        request.extend_from_slice(&u16::from(scheme).to_le_bytes());
        request.extend_from_slice(message);
        CONNECTIONS.with(|c| {
            let mut conns = c.borrow_mut();
            let at = match conns
                .iter()
                .position(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.inner)))
            {
                Some(at) => at,
                None => {
                    // Connections of signers that are gone.
                    conns.retain(|(w, _)| w.strong_count() > 0);
                    let s = self.inner.connect()?;
                    conns.push((Arc::downgrade(&self.inner), s));
                    conns.len() - 1
                }
            };
            let answer = conns
                .get_mut(at)
                .ok_or(SignerError::Protocol("connection"))
                .and_then(|(_, s)| exchange(s, &request));
            if matches!(answer, Err(SignerError::Io(_) | SignerError::Protocol(_))) {
                // Out of step or dead: the next signature starts a new connection.
                conns.swap_remove(at);
            }
            answer
        })
    }

    fn info(&self, index: usize) -> Result<&KeyInfo, SignerError> {
        self.inner.keys.get(index).ok_or(SignerError::NoSuchKey {
            index,
            keys: self.inner.keys.len(),
        })
    }
}

impl Inner {
    /// A new connection for this thread: one end of a socketpair handed to the child.
    fn connect(&self) -> Result<UnixStream, SignerError> {
        let (mine, theirs) = UnixStream::pair()?;
        mine.set_read_timeout(Some(IO_TIMEOUT))?;
        mine.set_write_timeout(Some(IO_TIMEOUT))?;
        let ctl = self
            .ctl
            .lock()
            .map_err(|_| SignerError::Io("the first socket's lock is poisoned".into()))?;
        let fds = [theirs.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        if !control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
            return Err(SignerError::Protocol("ancillary buffer"));
        }
        rustix::net::sendmsg(
            &*ctl,
            &[IoSlice::new(b"C")],
            &mut control,
            rustix::net::SendFlags::NOSIGNAL,
        )
        .map_err(|e| SignerError::Io(format!("handing over a connection: {e}")))?;
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(mine)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(ctl) = self.ctl.lock() {
            let _ = ctl.shutdown(std::net::Shutdown::Both);
        }
        if let Ok(mut child) = self.child.lock() {
            if let Some(mut c) = child.take() {
                reap(&mut c);
            }
        }
    }
}

/// Waits (bounded) for a child told to go; kills it if it does not.
fn reap(child: &mut Child) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The keys message: magic, the section (length, bytes), the late keys (count, then
/// kind, length, DER each). Written piece by piece from the caller's buffers, so no
/// other copy of a key is made here.
fn send_keys(s: &mut UnixStream, keys: KeySource<'_>) -> Result<(), SignerError> {
    let section_len =
        u32::try_from(keys.section.len()).map_err(|_| SignerError::TooLarge(keys.section.len()))?;
    let count =
        u32::try_from(keys.keys.len()).map_err(|_| SignerError::TooLarge(keys.keys.len()))?;
    let sent = (|| -> io::Result<()> {
        s.write_all(MAGIC)?;
        s.write_all(&section_len.to_le_bytes())?;
        s.write_all(keys.section)?;
        s.write_all(&count.to_le_bytes())?;
        for k in keys.keys {
            let kind = match k.kind {
                KeyKind::Pkcs8 => 0u8,
                KeyKind::Pkcs1 => 1,
                KeyKind::Sec1 => 2,
            };
            s.write_all(&[kind])?;
            s.write_all(&(k.der.len() as u32).to_le_bytes())?;
            s.write_all(&k.der)?;
        }
        s.flush()
    })();
    match sent {
        Ok(()) => Ok(()),
        // The child stopped reading: its answer may say why.
        Err(e) => match read_ready(s) {
            Err(SignerError::Refused(why)) => Err(SignerError::Refused(why)),
            _ => Err(SignerError::Io(format!("handing over the keys: {e}"))),
        },
    }
}

/// The child's answer: refused with a sentence, or each key's algorithm, schemes and
/// public key.
fn read_ready(s: &mut UnixStream) -> Result<(usize, Vec<KeyInfo>), SignerError> {
    let eof = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SignerError::Io("the signer process exited while starting".into())
        } else {
            SignerError::Io(e.to_string())
        }
    };
    let mut magic = [0u8; 4];
    s.read_exact(&mut magic).map_err(eof)?;
    if &magic != MAGIC {
        return Err(SignerError::Protocol("magic"));
    }
    let status = read_u8(s).map_err(eof)?;
    if status != 0 {
        let len = read_u32(s).map_err(eof)? as usize;
        let text = read_vec(s, len.min(MAX_ANSWER)).map_err(eof)?;
        return Err(SignerError::Refused(
            String::from_utf8_lossy(&text).into_owned(),
        ));
    }
    let section = read_u32(s).map_err(eof)? as usize;
    let total = read_u32(s).map_err(eof)?;
    if total > MAX_KEYS {
        return Err(SignerError::Protocol("key count"));
    }
    let mut infos = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let algorithm = SignatureAlgorithm::from(read_u8(s).map_err(eof)?);
        let n = read_u8(s).map_err(eof)?;
        let mut schemes = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).map_err(eof)?;
            schemes.push(SignatureScheme::from(u16::from_le_bytes(b)));
        }
        let len = read_u32(s).map_err(eof)? as usize;
        if len > MAX_ANSWER {
            return Err(SignerError::Protocol("public key length"));
        }
        let spki = read_vec(s, len).map_err(eof)?;
        infos.push(KeyInfo {
            algorithm,
            schemes,
            spki,
        });
    }
    Ok((section, infos))
}

fn read_u8(s: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u32(s: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_vec(s: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    s.read_exact(&mut v)?;
    Ok(v)
}

/// Reads one frame (`u32 length | payload`) into `buf` (cleared first), usually in one
/// read. `Ok(false)`: end of file before a frame began.
fn read_frame(s: &mut UnixStream, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 2048];
    let mut want = usize::MAX;
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(false)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if want == usize::MAX && buf.len() >= 4 {
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
            }
            want = 4 + len;
        }
        if buf.len() >= want {
            if buf.len() > want {
                // Requests and answers alternate; bytes past one are out of step.
                return Err(io::Error::new(io::ErrorKind::InvalidData, "out of step"));
            }
            return Ok(true);
        }
    }
}

/// One request, one answer.
fn exchange(s: &mut UnixStream, request: &[u8]) -> Result<Vec<u8>, SignerError> {
    s.write_all(request)?;
    let mut answer = Vec::with_capacity(600);
    match read_frame(s, &mut answer, MAX_ANSWER) {
        Ok(true) => {}
        Ok(false) => return Err(SignerError::Io("the signer process is gone".into())),
        Err(e) => return Err(e.into()),
    }
    match answer.get(4) {
        Some(0) => Ok(answer.get(5..).unwrap_or_default().to_vec()),
        Some(_) => Err(SignerError::Sign(
            String::from_utf8_lossy(answer.get(5..).unwrap_or_default()).into_owned(),
        )),
        None => Err(SignerError::Protocol("empty answer")),
    }
}

/// rustls' view of a key the child holds.
struct RemoteKey {
    signer: Signer,
    index: usize,
    algorithm: SignatureAlgorithm,
    schemes: Vec<SignatureScheme>,
    spki: Vec<u8>,
}

impl fmt::Debug for RemoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteKey")
            .field("index", &self.index)
            .field("algorithm", &self.algorithm)
            .field("signer", &self.signer.pid())
            .finish()
    }
}

impl SigningKey for RemoteKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        let scheme = self.schemes.iter().find(|s| offered.contains(s))?;
        Some(Box::new(RemoteSigner {
            signer: self.signer.clone(),
            index: self.index,
            scheme: *scheme,
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        if self.spki.is_empty() {
            None
        } else {
            Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
        }
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }
}

struct RemoteSigner {
    signer: Signer,
    index: usize,
    scheme: SignatureScheme,
}

impl fmt::Debug for RemoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSigner")
            .field("index", &self.index)
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl rustls::sign::Signer for RemoteSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.signer
            .sign(self.index, self.scheme, message)
            .map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

// ---------------------------------------------------------------------------------------
// The child
// ---------------------------------------------------------------------------------------

/// `relayd-run __signer [--no-seccomp] PRIVILEGES…` with its socket as standard input:
/// the signer process. Returns the exit code.
pub fn child_main(args: &[String]) -> i32 {
    let (seccomp, args) = match args.split_first() {
        Some((first, rest)) if first == NO_SECCOMP => (false, rest),
        _ => (true, args),
    };
    let Some(privileges) = Privileges::from_args(args) else {
        eprintln!("relayd-run: {SUBCOMMAND} is started by relayd-run itself");
        return 2;
    };
    let mut ctl = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("relayd-run: signer: {e}");
            return 1;
        }
    };
    // Privileges go before any key is read, and so does the filter.
    let dropped = privileges
        .drop_everything()
        .map_err(|e| e.to_string())
        .and_then(|()| {
            if seccomp {
                crate::seccomp::enter_signer().map_err(|e| e.to_string())
            } else {
                Ok(())
            }
        });
    let keys = read_keys(&mut ctl);
    let loaded = match (dropped, keys) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok((section, late))) => load_keys(&section, &late),
    };
    let (section, keys) = match loaded {
        Ok(k) => k,
        Err(why) => {
            let mut out = Vec::new();
            out.extend_from_slice(MAGIC);
            out.push(1);
            out.extend_from_slice(&(why.len() as u32).to_le_bytes());
            out.extend_from_slice(why.as_bytes());
            let _ = ctl.write_all(&out);
            return 1;
        }
    };
    if ctl.write_all(&ready_message(section, &keys)).is_err() {
        return 1;
    }
    serve(ctl, Arc::new(keys));
    0
}

type LateKeys = Vec<(u8, Zeroizing<Vec<u8>>)>;

/// The keys message (see [`send_keys`]), into buffers wiped when dropped.
fn read_keys(s: &mut UnixStream) -> Result<(Zeroizing<Vec<u8>>, LateKeys), String> {
    let e = |e: io::Error| format!("reading the keys: {e}");
    let mut magic = [0u8; 4];
    s.read_exact(&mut magic).map_err(e)?;
    if &magic != MAGIC {
        return Err("reading the keys: not relayd-run's keys message".into());
    }
    let len = read_u32(s).map_err(e)? as usize;
    if len > MAX_KEYS_BYTES {
        return Err("reading the keys: the keys section is too large".into());
    }
    let mut section = Zeroizing::new(vec![0u8; len]);
    s.read_exact(&mut section).map_err(e)?;
    let count = read_u32(s).map_err(e)?;
    if count > MAX_KEYS {
        return Err("reading the keys: too many keys".into());
    }
    let mut late = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let kind = read_u8(s).map_err(e)?;
        let len = read_u32(s).map_err(e)? as usize;
        if len > MAX_KEYS_BYTES {
            return Err("reading the keys: a key is too large".into());
        }
        let mut der = Zeroizing::new(vec![0u8; len]);
        s.read_exact(&mut der).map_err(e)?;
        late.push((kind, der));
    }
    Ok((section, late))
}

/// rustls keys (ring provider) from the section and the late keys, in index order.
fn load_keys(section: &[u8], late: &LateKeys) -> Result<(usize, Vec<Arc<dyn SigningKey>>), String> {
    let mut decoded = if section.is_empty() {
        Vec::new()
    } else {
        relaydc_spec::plan::decode_keys(section)
            .map_err(|e| format!("the plan's keys section cannot be decoded ({})", e.0))?
            .keys
    };
    let section_keys = decoded.len();
    let mut out = Vec::with_capacity(section_keys + late.len());
    let mut failed = None;
    for (i, k) in decoded.iter().enumerate() {
        let kind = match k.kind {
            KeyKind::Pkcs8 => 0,
            KeyKind::Pkcs1 => 1,
            KeyKind::Sec1 => 2,
        };
        match load_key(kind, &k.der) {
            Ok(key) => out.push(key),
            Err(e) => {
                failed = Some(format!("private key {i}: {e}"));
                break;
            }
        }
    }
    for k in decoded.iter_mut() {
        k.der.zeroize();
    }
    if let Some(e) = failed {
        return Err(e);
    }
    for (i, (kind, der)) in late.iter().enumerate() {
        let key =
            load_key(*kind, der).map_err(|e| format!("private key {}: {e}", section_keys + i))?;
        out.push(key);
    }
    Ok((section_keys, out))
}

fn load_key(kind: u8, der: &[u8]) -> Result<Arc<dyn SigningKey>, String> {
    let der = match kind {
        0 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
        1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
        2 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
        _ => return Err("unknown key encoding".into()),
    };
    rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| format!("not a key rustls can sign with ({e})"))
}

/// Each key's algorithm, the schemes its `choose_scheme` accepts (in [`SCHEMES`] order)
/// and its public key.
fn ready_message(section: usize, keys: &[Arc<dyn SigningKey>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(0);
    out.extend_from_slice(&(section as u32).to_le_bytes());
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for k in keys {
        out.push(u8::from(k.algorithm()));
        let schemes: Vec<SignatureScheme> = SCHEMES
            .iter()
            .copied()
            .filter(|s| k.choose_scheme(&[*s]).is_some())
            .collect();
        out.push(schemes.len() as u8);
        for s in schemes {
            out.extend_from_slice(&u16::from(s).to_le_bytes());
        }
        let spki = k
            .public_key()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default();
        out.extend_from_slice(&(spki.len() as u32).to_le_bytes());
        out.extend_from_slice(&spki);
    }
    out
}

/// Takes connections from the first socket until it reaches end of file, each served
/// on its own thread; then the process ends (and with it those threads).
fn serve(ctl: UnixStream, keys: Arc<Vec<Arc<dyn SigningKey>>>) {
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let mut byte = [0u8; 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &ctl,
            &mut [io::IoSliceMut::new(&mut byte)],
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        );
        let fds: Vec<OwnedFd> = control
            .drain()
            .flat_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
                _ => Vec::new(),
            })
            .collect();
        match got {
            Ok(r) if r.bytes == 0 => return,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        for fd in fds {
            if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                continue;
            }
            let keys = Arc::clone(&keys);
            let live2 = Arc::clone(&live);
            live.fetch_add(1, Ordering::Relaxed);
            let spawned = std::thread::Builder::new()
                .name("sign".into())
                .spawn(move || {
                    serve_connection(UnixStream::from(fd), &keys);
                    live2.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                live.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Answers requests on one connection until it closes or goes out of step.
fn serve_connection(mut s: UnixStream, keys: &[Arc<dyn SigningKey>]) {
    let mut request = Vec::with_capacity(600);
    let mut answer = Vec::with_capacity(600);
    while let Ok(true) = read_frame(&mut s, &mut request, MAX_MESSAGE + 6) {
        let Some(head) = request.get(4..10) else {
            return;
        };
        let index = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let scheme = SignatureScheme::from(u16::from_le_bytes([head[4], head[5]]));
        let message = request.get(10..).unwrap_or_default();
        let signed = keys
            .get(index)
            .ok_or_else(|| format!("no private key {index}"))
            .and_then(|k| {
                k.choose_scheme(&[scheme])
                    .ok_or_else(|| format!("private key {index} cannot sign with {scheme:?}"))
            })
            .and_then(|signer| signer.sign(message).map_err(|e| e.to_string()));
        answer.clear();
        let (status, body) = match &signed {
            Ok(sig) => (0u8, sig.as_slice()),
            Err(e) => (1u8, e.as_bytes()),
        };
        answer.extend_from_slice(&((1 + body.len()) as u32).to_le_bytes());
        answer.push(status);
        answer.extend_from_slice(body);
        if s.write_all(&answer).is_err() {
            return;
        }
    }
}
