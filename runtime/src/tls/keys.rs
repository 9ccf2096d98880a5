//! Private keys: the one place where relayd-run turns a keypair into something that
//! signs. Everything else (listeners, SNI, the certificates TLS inspection mints) holds
//! only `Arc<dyn SigningKey>` and asks it to sign, as relayd's relay processes ask its
//! `ca` process over imsg. Served plans take their keys from the signer process
//! ([`crate::signer`]), so the relay process never holds key bytes; keys read in this
//! process serve library users and tests that have a plan's keys section at hand.

use crate::signer::Signer;
use relaydc_spec::plan::{KeyKind, KeyRef, Keypair, Keys};
use rustls::sign::SigningKey;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use std::fmt;
use std::sync::Arc;

/// Where a plan's private keys are.
#[derive(Clone, Copy, Debug)]
pub enum KeySource<'a> {
    /// The signer process, holding the keys section's keys (late-bound ones after them)
    /// at the indexes the plan's keypairs name.
    Signer(&'a Signer),
    /// The keys section itself, in this process.
    Section(&'a Keys),
    /// No keys: a plan whose relays need none.
    None,
}

/// Why a keypair's private key cannot sign.
#[derive(Debug)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The signing key of `keypair`, whose end-entity certificate is `cert`: a key that
/// does not belong to the certificate is refused.
pub fn signing_key(
    source: KeySource<'_>,
    keypair: &Keypair,
    cert: &CertificateDer<'_>,
) -> Result<Arc<dyn SigningKey>, KeyError> {
    let name = &keypair.name;
    let KeyRef::Section(n) = keypair.key else {
        return Err(KeyError(format!(
            "the private key of keypair {name} was never bound"
        )));
    };
    let key = match source {
        KeySource::Signer(signer) => signer
            .signing_key(n as usize, cert)
            .map_err(|e| KeyError(format!("keypair {name}: {e}")))?,
        KeySource::Section(keys) => {
            let key = keys.keys.get(n as usize).ok_or_else(|| {
                KeyError(format!(
                    "the private key of keypair {name} is not in the keys section"
                ))
            })?;
            let der = match key.kind {
                KeyKind::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.der.clone())),
                KeyKind::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(key.der.clone())),
                KeyKind::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(key.der.clone())),
            };
            let key = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| {
                KeyError(format!(
                    "the private key of keypair {name} cannot sign: {e}"
                ))
            })?;
            let pair = rustls::sign::CertifiedKey::new(vec![cert.clone().into_owned()], key);
            if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
                pair.keys_match()
            {
                return Err(KeyError(format!(
                    "the private key of keypair {name} does not belong to its certificate"
                )));
            }
            pair.key
        }
        KeySource::None => {
            return Err(KeyError(format!(
            "the private key of keypair {name} is not available: no signer holds the plan's keys"
        )))
        }
    };
    Ok(key)
}
