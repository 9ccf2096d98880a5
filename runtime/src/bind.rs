//! Late binding: what a `relaydc compile --late-bind` plan left for the deploy host.
//!
//! Names become addresses (resolved once, the first address as relayd's `host()` takes
//! it) and TLS file paths become embedded material, exactly as `relaydc compile` would
//! have bound them on this host: keypair files are tried as relayd tries them
//! (`NAME:PORT` then `NAME`, certificate and key as a pair), private keys go to the keys
//! section. Every problem is collected and the whole plan is refused if there is one:
//! relayd-run never starts half bound. A plan bound at compile time passes unchanged.

use relaydc_spec::plan::{Address, KeyKind, KeyRef, Keys, Material, Plan, PrivateKey, Target};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// One deploy-host fact that does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindError {
    /// A name that does not resolve here; `what` says whose it is.
    Unresolvable { name: String, what: String },
    /// None of the files could be read.
    Missing { what: String, paths: Vec<String> },
    /// A file that is not what it should be (no PEM certificate, no private key).
    Bad { path: String, why: String },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Unresolvable { name, what } => {
                write!(f, "cannot resolve `{name}` ({what}) on this host")
            }
            BindError::Missing { what, paths } => {
                write!(f, "cannot read {what}: tried {}", paths.join(", "))
            }
            BindError::Bad { path, why } => write!(f, "{path}: {why}"),
        }
    }
}

/// Where the plan's absolute paths are looked up: `/` on the deploy host, or a copy of
/// its tree (`relayd-run --root DIR`, for testing a plan against that copy).
#[derive(Clone, Debug, Default)]
pub struct Root(pub Option<PathBuf>);

impl Root {
    fn path(&self, p: &str) -> PathBuf {
        match &self.0 {
            Some(root) if Path::new(p).is_absolute() => root.join(p.trim_start_matches('/')),
            _ => PathBuf::from(p),
        }
    }

    fn read(&self, p: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(p)).ok()
    }
}

/// Binds every late name and path of `plan` (keys into `keys`); on any failure, returns
/// them all and leaves nothing half done that the caller could use.
pub fn bind(plan: &mut Plan, keys: &mut Keys, root: &Root) -> Result<(), Vec<BindError>> {
    let mut errors = Vec::new();
    let mut resolve = |a: &mut Address, what: String| {
        if let Address::Name(name) = a {
            match resolve(name) {
                Some(ip) => *a = Address::Ip(ip),
                None => errors.push(BindError::Unresolvable {
                    name: name.clone(),
                    what,
                }),
            }
        }
    };
    let table_names: Vec<String> = plan.tables.iter().map(|t| t.name.clone()).collect();
    for (i, h) in plan.hosts.iter_mut().enumerate() {
        let table = table_names
            .get(h.table as usize)
            .cloned()
            .unwrap_or_default();
        resolve(&mut h.address, format!("host {} of table {table}", i + 1));
    }
    for r in &mut plan.relays {
        for l in &mut r.listeners {
            resolve(&mut l.address, format!("listener of relay {}", r.name));
        }
        for f in &mut r.forwards {
            if let Target::Addr { address, .. } = &mut f.target {
                resolve(address, format!("forward target of relay {}", r.name));
            }
        }
    }
    for r in &mut plan.redirects {
        for l in &mut r.listeners {
            resolve(&mut l.address, format!("listener of redirect {}", r.name));
        }
    }
    for kp in &mut plan.keypairs {
        bind_keypair(kp, keys, root, &mut errors);
    }
    for p in &mut plan.protocols {
        let name = p.name.clone();
        for (m, what) in [
            (&mut p.tls.ca_file, "ca file"),
            (&mut p.tls.client_ca, "client ca"),
        ] {
            if let Some(m) = m {
                bind_material(
                    m,
                    &format!("the {what} of protocol {name}"),
                    root,
                    &mut errors,
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The first address of a name (never for `.invalid`, as the compiler).
fn resolve(name: &str) -> Option<IpAddr> {
    if relaydc_spec::plan::never_resolves(name) {
        return None;
    }
    (name, 0u16)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip())
}

fn bind_material(m: &mut Material, what: &str, root: &Root, errors: &mut Vec<BindError>) {
    let Material::Paths(paths) = m else { return };
    match paths.iter().find_map(|p| root.read(p)) {
        Some(bytes) => *m = Material::Embedded(bytes),
        None => errors.push(BindError::Missing {
            what: what.to_string(),
            paths: paths.clone(),
        }),
    }
}

fn bind_keypair(
    kp: &mut relaydc_spec::plan::Keypair,
    keys: &mut Keys,
    root: &Root,
    errors: &mut Vec<BindError>,
) {
    let (Material::Paths(certs), KeyRef::Paths(key_paths)) = (&kp.certs, &kp.key) else {
        // Bound at compile time (or only one side late, which compile never writes).
        if let Material::Paths(_) = kp.certs {
            bind_material(&mut kp.certs, &format!("keypair {}", kp.name), root, errors);
        }
        return;
    };
    // relayd tries NAME:PORT, then NAME, certificate and key as a pair.
    let last = key_paths.last().cloned().unwrap_or_default();
    let pair = certs.iter().enumerate().find_map(|(i, c)| {
        let k = key_paths.get(i).unwrap_or(&last);
        Some((c.clone(), root.read(c)?, k.clone(), root.read(k)?))
    });
    let Some((cert_path, cert, key_path, key)) = pair else {
        errors.push(BindError::Missing {
            what: format!("keypair {} (certificate and key)", kp.name),
            paths: certs.iter().chain(key_paths.iter()).cloned().collect(),
        });
        return;
    };
    if CertificateDer::pem_slice_iter(&cert)
        .filter_map(Result::ok)
        .next()
        .is_none()
    {
        errors.push(BindError::Bad {
            path: cert_path,
            why: "no PEM certificate in it".to_string(),
        });
        return;
    }
    let der = match PrivateKeyDer::from_pem_slice(&key) {
        Ok(d) => d,
        Err(e) => {
            errors.push(BindError::Bad {
                path: key_path,
                why: format!("no usable PEM private key in it ({e:?})"),
            });
            return;
        }
    };
    let (kind, der) = match &der {
        PrivateKeyDer::Pkcs1(k) => (KeyKind::Pkcs1, k.secret_pkcs1_der().to_vec()),
        PrivateKeyDer::Sec1(k) => (KeyKind::Sec1, k.secret_sec1_der().to_vec()),
        _ => (KeyKind::Pkcs8, der.secret_der().to_vec()),
    };
    keys.keys.push(PrivateKey { kind, der });
    kp.key = KeyRef::Section(keys.keys.len() as u32 - 1);
    kp.certs = Material::Embedded(cert);
    if let Some(Material::Paths(ocsp)) = &kp.ocsp {
        // OCSP staples are optional: the first that exists, else none.
        kp.ocsp = ocsp
            .iter()
            .find_map(|p| root.read(p))
            .map(Material::Embedded);
    }
}
