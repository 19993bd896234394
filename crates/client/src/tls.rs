//! TLS for the SDK: wss signaling and TURN over TLS trust the platform's root
//! certificates, or those of `SSL_CERT_FILE` / `SSL_CERT_DIR` when set (the OpenSSL
//! convention: a private CA, or a test's), read once per process.

use std::sync::{Arc, OnceLock};

use crate::ClientError;

/// The client configuration every TLS connection of this process uses.
pub(crate) fn client_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(build).clone().map_err(ClientError::Connect)
}

fn build() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a root certificate could not be loaded");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "TLS root certificates");
    if roots.is_empty() {
        return Err("TLS: no root certificates (install ca-certificates, or set SSL_CERT_FILE)".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
