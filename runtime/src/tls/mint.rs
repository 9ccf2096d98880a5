//! TLS inspection: the certificate the client is served is the backend's own, copied,
//! given the relay's public key and the inspection CA as its issuer, and signed by that
//! CA, as relayd's `ssl_update_certificate` does (`X509_dup`, `X509_set_pubkey`,
//! `X509_set_issuer_name`, `X509_sign`). Subject, subjectAltName, serial, validity and
//! the other extensions are the backend's, so the client sees the names it asked for;
//! the backend's key identifiers, which no longer describe the copy, are dropped, and
//! the CA's subject key identifier becomes its authority key identifier so that chain
//! building finds the CA. The relay's first keypair holds the private key, as relayd
//! uses its first keypair's key.
//!
//! Minting costs a signature by the CA, so each worker keeps what it minted, keyed by
//! the backend's certificate: one signature per backend certificate per worker.

use super::der::{self, Tlv};
use super::server::{tune, Pair};
use super::{keys, pem_certs, Base, KeySource};
use relaydc_spec::plan::{Plan, Relay, TlsSettings};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{ServerConfig, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::CertificateDer;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// One relay's inspection: the CA, the relay's key, and how to serve a minted copy.
pub struct Inspect {
    /// Tells the minted certificates of different relays (and plans) apart in the
    /// per-worker caches.
    id: u64,
    ca_subject: Vec<u8>,
    ca_key_id: Option<Vec<u8>>,
    ca_key: Arc<dyn SigningKey>,
    scheme: SignatureScheme,
    sig_alg: &'static [u8],
    relay_spki: Vec<u8>,
    relay_key: Arc<dyn SigningKey>,
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static SupportedProtocolVersion>,
    settings: TlsSettings,
}

/// The signature algorithms a CA key can sign certificates with, each with its
/// AlgorithmIdentifier. relayd signs with SHA-256; a P-384 key signs with SHA-384 here,
/// the only hash rustls pairs with that curve.
const ALGORITHMS: [(SignatureScheme, &[u8]); 4] = [
    (
        SignatureScheme::ECDSA_NISTP256_SHA256,
        // ecdsa-with-SHA256
        &[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ],
    ),
    (
        SignatureScheme::ECDSA_NISTP384_SHA384,
        // ecdsa-with-SHA384
        &[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
        ],
    ),
    (
        SignatureScheme::RSA_PKCS1_SHA256,
        // sha256WithRSAEncryption, NULL parameters
        &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
            0x00,
        ],
    ),
    (
        SignatureScheme::ED25519,
        // id-Ed25519
        &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70],
    ),
];

/// Caches above this many certificates are emptied rather than grown.
const CACHE_MAX: usize = 1024;

thread_local! {
    /// What this worker minted: by inspection id, then by the backend's certificate.
    static MINTED: RefCell<HashMap<u64, HashMap<Vec<u8>, TlsAcceptor>>> =
        RefCell::new(HashMap::new());
}

impl Inspect {
    pub(super) fn new(
        plan: &Plan,
        r: &Relay,
        ca: u32,
        keys: KeySource<'_>,
        base: &Base,
    ) -> Result<Inspect, String> {
        let ca = plan
            .keypairs
            .get(ca as usize)
            .ok_or_else(|| format!("inspection CA index {ca} is not in the plan"))?;
        let ca_cert = pem_certs(&ca.certs, "the ca cert")?
            .into_iter()
            .next()
            .ok_or("the ca cert holds no certificate")?;
        let ca_key = keys::signing_key(keys, ca, &ca_cert).map_err(|e| e.to_string())?;
        let first = r
            .keypairs
            .first()
            .and_then(|k| plan.keypairs.get(*k as usize))
            .ok_or("TLS inspection needs the relay's keypair")?;
        let relay = Pair::load(first, keys)?;
        let protocol = r
            .protocol
            .and_then(|p| plan.protocols.get(p as usize))
            .map(|p| p.tls.clone())
            .ok_or("TLS inspection needs a protocol")?;
        Inspect::from_parts(ca_cert.as_ref(), ca_key, &relay.key, base, protocol)
    }

    fn from_parts(
        ca_cert: &[u8],
        ca_key: Arc<dyn SigningKey>,
        relay: &CertifiedKey,
        base: &Base,
        settings: TlsSettings,
    ) -> Result<Inspect, String> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let ca = der::tbs(ca_cert).ok_or("the ca cert is not an X.509 certificate")?;
        let (scheme, sig_alg) = ALGORITHMS
            .iter()
            .find(|(s, _)| ca_key.choose_scheme(&[*s]).is_some())
            .copied()
            .ok_or("the ca key cannot sign certificates (RSA, ECDSA P-256/P-384 or Ed25519)")?;
        let relay_cert = relay
            .cert
            .first()
            .ok_or("the relay's keypair has no certificate")?;
        let relay_spki = der::tbs(relay_cert.as_ref())
            .ok_or("the relay's certificate is not an X.509 certificate")?
            .spki
            .whole
            .to_vec();
        Ok(Inspect {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            ca_subject: ca.subject.whole.to_vec(),
            ca_key_id: der::subject_key_id(ca_cert),
            ca_key,
            scheme,
            sig_alg,
            relay_spki,
            relay_key: Arc::clone(&relay.key),
            provider: Arc::clone(&base.provider),
            versions: base.versions.clone(),
            settings,
        })
    }

    /// An acceptor that serves the copy of `leaf`, the backend's certificate (DER):
    /// this worker's earlier one for the same certificate, or a new one.
    pub fn acceptor(&self, leaf: &[u8]) -> Result<TlsAcceptor, String> {
        let cached = MINTED.with(|m| m.borrow().get(&self.id).and_then(|c| c.get(leaf)).cloned());
        if let Some(a) = cached {
            return Ok(a);
        }
        let cert = self.mint(leaf)?;
        let key = CertifiedKey::new(vec![cert], Arc::clone(&self.relay_key));
        // relayd's inspection context has the protocol's settings but no client CA.
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&self.versions)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(WebPkiClientVerifier::no_client_auth())
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
        tune(&mut config, &self.settings)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        MINTED.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= 16 && !m.contains_key(&self.id) {
                m.clear();
            }
            let cache = m.entry(self.id).or_default();
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(leaf.to_vec(), acceptor.clone());
        });
        Ok(acceptor)
    }

    /// The copy of `leaf` with the relay's key, issued and signed by the CA.
    fn mint(&self, leaf: &[u8]) -> Result<CertificateDer<'static>, String> {
        let tbs = der::tbs(leaf).ok_or("the backend's certificate is not X.509")?;
        let mut extensions = Vec::new();
        for e in &tbs.extensions {
            let Some((oid, _)) = der::extension(e) else {
                continue;
            };
            if oid != der::OID_AKI && oid != der::OID_SKI {
                extensions.extend_from_slice(e.whole);
            }
        }
        if let Some(id) = &self.ca_key_id {
            extensions.extend_from_slice(&authority_key_id(id));
        }
        let mut body = Vec::with_capacity(leaf.len() + 256);
        if !extensions.is_empty() {
            // v3, needed for extensions.
            body.extend_from_slice(&[der::VERSION, 0x03, der::INTEGER, 0x01, 0x02]);
        } else if let Some(Tlv { whole, .. }) = tbs.version {
            body.extend_from_slice(whole);
        }
        body.extend_from_slice(tbs.serial.whole);
        body.extend_from_slice(self.sig_alg);
        body.extend_from_slice(&self.ca_subject);
        body.extend_from_slice(tbs.validity.whole);
        body.extend_from_slice(tbs.subject.whole);
        body.extend_from_slice(&self.relay_spki);
        if !extensions.is_empty() {
            let mut list = Vec::with_capacity(extensions.len() + 4);
            der::write(der::SEQUENCE, &extensions, &mut list);
            der::write(der::EXTENSIONS, &list, &mut body);
        }
        let mut tbs_der = Vec::with_capacity(body.len() + 4);
        der::write(der::SEQUENCE, &body, &mut tbs_der);
        let signature = self
            .ca_key
            .choose_scheme(&[self.scheme])
            .ok_or("the ca key no longer signs")?
            .sign(&tbs_der)
            .map_err(|e| format!("the ca key did not sign: {e}"))?;
        let mut bits = Vec::with_capacity(signature.len() + 1);
        bits.push(0);
        bits.extend_from_slice(&signature);
        let mut content = tbs_der;
        content.extend_from_slice(self.sig_alg);
        der::write(der::BIT_STRING, &bits, &mut content);
        let mut cert = Vec::with_capacity(content.len() + 4);
        der::write(der::SEQUENCE, &content, &mut cert);
        Ok(CertificateDer::from(cert))
    }
}

/// An authorityKeyIdentifier extension with just the key identifier.
fn authority_key_id(id: &[u8]) -> Vec<u8> {
    let mut key_id = Vec::new();
    der::write(0x80, id, &mut key_id);
    let mut aki = Vec::new();
    der::write(der::SEQUENCE, &key_id, &mut aki);
    let mut ext = Vec::new();
    der::write(der::OID, der::OID_AKI, &mut ext);
    der::write(der::OCTET_STRING, &aki, &mut ext);
    let mut out = Vec::new();
    der::write(der::SEQUENCE, &ext, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test fixtures")]

    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
        PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    };
    use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
    use rustls::server::ParsedCertificate;
    use rustls::RootCertStore;

    fn signer(k: &KeyPair) -> Arc<dyn SigningKey> {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der()));
        rustls::crypto::ring::sign::any_supported_type(&der).unwrap()
    }

    fn settings() -> TlsSettings {
        super::super::default_settings("7.9")
    }

    fn check(ca_alg: &'static rcgen::SignatureAlgorithm) {
        let ca_key = KeyPair::generate_for(ca_alg).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "inspection ca");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "ca");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = p.self_signed(&ca_key).unwrap();

        // The backend's certificate comes from another CA and names it in its
        // authority key identifier, which the copy must not keep.
        let other_key = KeyPair::generate().unwrap();
        let mut o = CertificateParams::new(Vec::<String>::new()).unwrap();
        o.distinguished_name.push(DnType::CommonName, "backend ca");
        o.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = o.self_signed(&other_key).unwrap();
        let backend_key = KeyPair::generate().unwrap();
        let mut b = CertificateParams::new(vec!["inspect.test".to_string()]).unwrap();
        b.distinguished_name.push(DnType::CommonName, "backend");
        b.use_authority_key_identifier_extension = true;
        let backend = b.signed_by(&backend_key, &other, &other_key).unwrap();

        let relay_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let relay = CertificateParams::new(vec!["relay.test".to_string()])
            .unwrap()
            .self_signed(&relay_key)
            .unwrap();
        let relay = CertifiedKey::new(vec![relay.der().clone()], signer(&relay_key));

        let base = Base::new(&settings()).unwrap();
        let inspect =
            Inspect::from_parts(ca.der(), signer(&ca_key), &relay, &base, settings()).unwrap();
        let minted = inspect.mint(backend.der()).unwrap();

        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let parsed = ParsedCertificate::try_from(&minted).unwrap();
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &[],
            UnixTime::now(),
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .all,
        )
        .unwrap();
        verify_server_name(&parsed, &ServerName::try_from("inspect.test").unwrap()).unwrap();
        let m = der::tbs(minted.as_ref()).unwrap();
        let r = der::tbs(relay.cert[0].as_ref()).unwrap();
        let o = der::tbs(backend.der().as_ref()).unwrap();
        assert_eq!(m.spki.whole, r.spki.whole);
        assert_eq!(m.subject.whole, o.subject.whole);
        assert_eq!(m.serial.whole, o.serial.whole);
        assert_eq!(m.validity.whole, o.validity.whole);
        assert_eq!(der::host_names(minted.as_ref()), ["inspect.test"]);
        let akis: Vec<_> = m
            .extensions
            .iter()
            .filter_map(der::extension)
            .filter(|(oid, _)| *oid == der::OID_AKI)
            .map(|(_, v)| v.to_vec())
            .collect();
        let ca_ski = der::subject_key_id(ca.der()).unwrap();
        assert_eq!(akis, [authority_key_id_value(&ca_ski)]);
        // Cached: the same acceptor for the same backend certificate.
        let a = inspect.acceptor(backend.der()).unwrap();
        let b2 = inspect.acceptor(backend.der()).unwrap();
        assert!(Arc::ptr_eq(a.config(), b2.config()));
    }

    fn authority_key_id_value(id: &[u8]) -> Vec<u8> {
        let mut key_id = Vec::new();
        der::write(0x80, id, &mut key_id);
        let mut aki = Vec::new();
        der::write(der::SEQUENCE, &key_id, &mut aki);
        aki
    }

    #[test]
    fn minted_copies_chain_to_the_ca_with_the_backend_names() {
        check(&PKCS_ECDSA_P256_SHA256);
        check(&PKCS_ECDSA_P384_SHA384);
    }
}
