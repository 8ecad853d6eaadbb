//! Optional TLS for the API port (rustls with the ring provider): loading the certificate and
//! key named in `http.tls` into an `axum-server` [`RustlsConfig`], and serving the router over
//! TLS. Each connection's handshake is `axum-server`'s [`RustlsAcceptor`] (bounded by the
//! header timeout); the accept loop around it, with its connection cap, idle and body limits
//! and graceful shutdown, is [`crate::listen`]'s, shared with the plain listeners.
//!
//! [`RustlsAcceptor`]: axum_server::tls_rustls::RustlsAcceptor

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("TLS key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS certificate {cert} and key {key} do not fit together: {reason}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The `http.tls` cert and key paths (made absolute when the config was loaded).
pub fn configured_paths(config: &Config) -> Option<(PathBuf, PathBuf)> {
    let tls = config.http.tls.as_ref()?;
    Some((tls.cert.clone(), tls.key.clone()))
}

/// Reads a PEM certificate chain and private key into a server config (HTTP/1.1 only, as the
/// plain listener). Read here rather than by `RustlsConfig::from_pem_file`, so that an error
/// names the file at fault and the ring provider is chosen explicitly.
pub fn load(cert: &Path, key: &Path) -> Result<RustlsConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_path_buf(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| TlsError::Config {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    // The provider is named rather than taken from the process default, so another crate
    // enabling a second provider cannot make this panic.
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| bad(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// Serves `router` over TLS on `listener` with the API port's default connection limits and
/// timeouts (see [`crate::listen`]) until `cancel` fires, then lets open requests finish. Each
/// handshake runs on its connection's own task under the header timeout, so a slow or silent
/// client never delays the next accept.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: RustlsConfig,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let how = crate::listen::Serve {
        port: crate::listen::Port::Api,
        limits: crate::listen::Limits::default(),
        stats: crate::listen::HttpStats::default(),
        tls: Some(tls),
    };
    crate::listen::serve(listener, router, how, cancel).await
}
