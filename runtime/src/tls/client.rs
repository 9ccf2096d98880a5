//! The client side, `forward with tls`: relayd's `rl_tls_client_cfg`.
//!
//! relayd never checks the backend's name (`tls_config_insecure_noverifyname`: "relayd
//! can't verify the name of certs"), checks its chain only when the protocol has a `ca
//! file` (`tls_config_insecure_noverifycert` otherwise), and connects without a server
//! name (`tls_connect_socket(…, NULL)`), so no SNI goes out. The handshake's signatures
//! are verified either way, so a peer that cannot finish a real handshake still fails.

use super::{server::roots, Base};
use relaydc_spec::plan::TlsSettings;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio_rustls::TlsConnector;

pub(super) fn connector(s: &TlsSettings, base: &Base) -> Result<TlsConnector, String> {
    let roots = match &s.ca_file {
        Some(m) => Some(roots(m, "the ca file")?),
        None => None,
    };
    let verifier = Arc::new(Backend {
        roots,
        provider: Arc::clone(&base.provider),
    });
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&base.provider))
        .with_protocol_versions(&base.versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.enable_sni = false;
    // Every libtls client context relayd makes starts afresh: no session is resumed.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The backend's chain against `ca file`, or anything without one; never its name.
#[derive(Debug)]
struct Backend {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Backend {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
