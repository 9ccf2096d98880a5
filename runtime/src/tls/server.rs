//! The server side: a relay's keypairs, chosen by SNI as libtls chooses them, and
//! `client ca`.

use super::{der, keys, pem_certs, Base, KeySource};
use relaydc_spec::plan::{Keypair, Material, Plan, Relay, TlsSettings};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The acceptor for a relay's TLS listeners.
pub(super) fn acceptor(
    plan: &Plan,
    r: &Relay,
    s: &TlsSettings,
    keys: KeySource<'_>,
    base: &Base,
) -> Result<TlsAcceptor, String> {
    let mut pairs = Vec::with_capacity(r.keypairs.len());
    for &k in &r.keypairs {
        let kp = plan
            .keypairs
            .get(k as usize)
            .ok_or_else(|| format!("keypair index {k} is not in the plan"))?;
        pairs.push(Pair::load(kp, keys)?);
    }
    if pairs.is_empty() {
        // relayd: "cannot load certificates for relay X".
        return Err("cannot load certificates: the relay has no keypair".to_string());
    }
    let verifier = match &s.client_ca {
        Some(m) => {
            let roots = roots(m, "the client ca")?;
            // Mandatory, as libtls's tls_config_verify_client makes it: a client without
            // a certificate fails the handshake.
            WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&base.provider))
                .build()
                .map_err(|e| format!("client ca: {e}"))?
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&base.provider))
        .with_protocol_versions(&base.versions)
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(Sni { pairs }));
    tune(&mut config, s)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What relayd's `relay_tls_ctx_create_proto` sets besides versions and suites: whose
/// cipher order wins, and session tickets, off unless `session tickets` (then TLS 1.3
/// tickets too; without them rustls sends none).
pub(super) fn tune(config: &mut ServerConfig, s: &TlsSettings) -> Result<(), String> {
    config.ignore_client_order = s.server_preference;
    if s.session_tickets {
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
    } else {
        config.send_tls13_tickets = 0;
    }
    Ok(())
}

/// A trust store of PEM material.
pub(super) fn roots(m: &Material, what: &str) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for c in pem_certs(m, what)? {
        roots
            .add(c)
            .map_err(|e| format!("{what} holds a certificate rustls cannot use: {e}"))?;
    }
    Ok(Arc::new(roots))
}

/// A keypair ready to serve, and the names SNI finds it by.
#[derive(Debug)]
pub(super) struct Pair {
    names: Vec<String>,
    pub(super) key: Arc<CertifiedKey>,
}

impl Pair {
    pub(super) fn load(kp: &Keypair, keys: KeySource<'_>) -> Result<Pair, String> {
        let certs = pem_certs(
            &kp.certs,
            &format!("the certificate of keypair {}", kp.name),
        )?;
        let signing = match certs.first() {
            Some(leaf) => keys::signing_key(keys, kp, leaf),
            None => Err(keys::KeyError(format!(
                "keypair {} has no certificate",
                kp.name
            ))),
        }
        .map_err(|e| format!("cannot load keypair {}: {e}", kp.name))?;
        let mut key = CertifiedKey::new(certs, signing);
        // The staple is sent as it is, as libtls sends it.
        key.ocsp = match &kp.ocsp {
            Some(Material::Embedded(b)) if !b.is_empty() => Some(b.clone()),
            _ => None,
        };
        let names = key
            .cert
            .first()
            .map(|c| der::host_names(c.as_ref()))
            .unwrap_or_default();
        Ok(Pair {
            names,
            key: Arc::new(key),
        })
    }
}

/// libtls's SNI callback: the first keypair whose certificate matches the name, the
/// first (default) keypair when none does or the client sent no name.
#[derive(Debug)]
struct Sni {
    pairs: Vec<Pair>,
}

impl ResolvesServerCert for Sni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let first = self.pairs.first()?;
        let pair = hello
            .server_name()
            .and_then(|name| {
                self.pairs
                    .iter()
                    .find(|p| p.names.iter().any(|n| name_matches(n, name)))
            })
            .unwrap_or(first);
        Some(Arc::clone(&pair.key))
    }
}

/// libtls's `tls_match_name`: equal ignoring case, or a wildcard `*.domain.tld` that
/// stands for exactly one leading label (never `*`, `*foo`, `*.tld`).
fn name_matches(cert_name: &str, name: &str) -> bool {
    if cert_name.eq_ignore_ascii_case(name) {
        return true;
    }
    let Some(domain) = cert_name.strip_prefix('*') else {
        return false;
    };
    // `domain` is ".rest": it must have a dot after its first label, and no empty
    // label right after either dot.
    let Some(rest) = domain.strip_prefix('.') else {
        return false;
    };
    if rest.is_empty() || rest.starts_with('.') {
        return false;
    }
    match rest.find('.') {
        Some(i) if !rest[i + 1..].starts_with('.') => {}
        _ => return false,
    }
    if name.starts_with('.') {
        return false;
    }
    match name.find('.') {
        Some(i) if name.len() > i + 1 => name[i..].eq_ignore_ascii_case(domain),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn names_match_as_libtls_matches_them() {
        assert!(name_matches("www.example.com", "WWW.Example.com"));
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.com", "example.com"));
        assert!(!name_matches("*", "example"));
        assert!(!name_matches("*foo.com", "afoo.com"));
        assert!(!name_matches("*..com", "a..com"));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(!name_matches("other.example.com", "www.example.com"));
    }
}
