//! TLS for the agent protocol (rustls, ring provider): the collector's
//! acceptor from a PEM certificate chain and key, and the agent's client
//! configuration trusting the CA file the admin provides.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::IngestError;

fn tls_err(path: &Path, what: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::Config(format!("TLS {what} {}: {e}", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, IngestError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(path, "certificate file", e))?
        .collect();
    let certs = certs.map_err(|e| tls_err(path, "certificate file", e))?;
    if certs.is_empty() {
        return Err(tls_err(path, "certificate file", "no certificate in it"));
    }
    Ok(certs)
}

/// The collector side: serves `cert` (PEM chain) with `key` (PEM); with
/// `client_ca`, a client must present a certificate that CA signed.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<tokio_rustls::TlsAcceptor, IngestError> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, "key file", e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| IngestError::Config(format!("TLS: {e}")))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_err(ca, "client CA file", e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| tls_err(ca, "client CA file", e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| IngestError::Config(format!("TLS certificate and key: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The agent side: trusts only the certificates in `ca` (PEM); presents
/// `client` (certificate chain, key) when the collector asks for one.
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, IngestError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca)? {
        roots.add(cert).map_err(|e| tls_err(ca, "CA file", e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| IngestError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, "key file", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| IngestError::Config(format!("TLS client certificate and key: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
