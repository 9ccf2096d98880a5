//! `check tls`, `check https … code|digest` and `check send … expect … tls`: relayd's
//! check_tls.c. After the TCP connect, a TLS handshake within what is left of the table
//! timeout; `check tls` stops there, the others run the same exchange as over plain TCP
//! with the `tls …` error texts.

use super::{exchange, Outcome, Transport};
use relaydc_spec::plan::Check;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsConnector;

const TEXTS: Transport = Transport {
    write_timeout: "tls write timeout",
    write_failed: "tls write error",
    read_timeout: "tls read timeout",
    read_failed: "tls read error",
    // check_tls_read reports its timeout as such, whatever had arrived.
    validate_on_timeout: false,
    // libtls reads a TCP EOF without close_notify after the handshake as a plain EOF.
    eof_without_close_notify: true,
};

/// Accepts any certificate chain, as relayd's hce does
/// (`tls_config_insecure_noverifycert` and `…noverifyname`): a health check asks whether
/// the backend speaks TLS and answers, not whom it claims to be, and backends behind a
/// relay commonly carry self-signed or internal certificates that no trust store knows.
/// The handshake signatures are still verified with the presented key, as libtls does,
/// so a peer that cannot complete a real handshake does not pass.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One client configuration for every TLS check, as relayd keeps one per table, all
/// alike. `None` if rustls refused to build it (then every TLS check reports
/// `tls connect error`, libtls's text for a context it could not set up).
fn config() -> Option<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .ok()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            // libtls starts every check afresh (tls_reset); resuming would let a backend
            // skip the full handshake the check is meant to exercise.
            config.resumption = rustls::client::Resumption::disabled();
            Some(Arc::new(config))
        })
        .clone()
}

/// The TLS part of a check on a connected stream.
pub(super) async fn check(
    stream: TcpStream,
    ip: IpAddr,
    check: &Check,
    deadline: Instant,
) -> Outcome {
    let Some(config) = config() else {
        return Outcome::down("tls connect error");
    };
    // An address as the server name: rustls then sends no SNI, as libtls does when
    // relayd connects without a name.
    let name = ServerName::from(ip);
    let tls = match timeout_at(deadline, TlsConnector::from(config).connect(name, stream)).await {
        Err(_) => return Outcome::down("tls connect timeout"),
        Ok(Err(_)) => return Outcome::down("tls connect failed"),
        Ok(Ok(tls)) => tls,
    };
    match check {
        Check::Tls => Outcome::up("tls connect ok"),
        _ => exchange(tls, check, deadline, &TEXTS).await,
    }
}
