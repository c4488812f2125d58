//! How a client trusts a TLS API: ebb's API has its own CA, so the client trusts that CA only,
//! given as its certificate (`--ca FILE`, the data dir's `tls/ca.pem`) or pinned by its
//! SHA-256 (from the join token), and checks that the server's certificate chains to it. The
//! name the server was reached by is not checked: the CA is ebb's own and signs nothing else,
//! and a server is reached by whatever address, name or load balancer is at hand.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// What a client trusts the API's certificate by.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The CA certificate, PEM.
    CaPem(Vec<u8>),
    /// The CA certificate's SHA-256 (DER), hex: the server sends the CA in its chain.
    CaSha256(String),
}

/// The rustls client configuration for `trust`.
pub fn client_config(trust: Trust) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let anchor = match trust {
        Trust::CaPem(pem) => Anchor::Known(
            CertificateDer::from_pem_slice(&pem)
                .map_err(|e| format!("the CA file is not a PEM certificate: {e}"))?,
        ),
        Trust::CaSha256(hash) => Anchor::Pinned(hash.to_ascii_lowercase()),
    };
    let verifier = Arc::new(OwnCa {
        anchor,
        provider: provider.clone(),
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[derive(Debug)]
enum Anchor {
    Known(CertificateDer<'static>),
    Pinned(String),
}

/// Accepts a server certificate that chains to the one trusted CA.
#[derive(Debug)]
struct OwnCa {
    anchor: Anchor,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for OwnCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca: CertificateDer<'_> = match &self.anchor {
            Anchor::Known(ca) => ca.clone(),
            Anchor::Pinned(hash) => intermediates
                .iter()
                .find(|c| ebb_core::hash::sha256_hex(c.as_ref()) == *hash)
                .cloned()
                .ok_or_else(|| {
                    rustls::Error::General(
                        "the server's CA is not the one the join token names (wrong CA hash, or another server)".into(),
                    )
                })?,
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.into_owned())?;
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
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
