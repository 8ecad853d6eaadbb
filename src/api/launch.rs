//! Starting the API port in one call: tokens (creating the first admin token), the listener
//! from `http.api` with its connection limits and timeouts, TLS when `http.tls` is set, and the
//! service state the console shows.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::tls::{self, TlsError};
use super::{router, ApiState, Renderer};
use crate::lease::ServiceStatus;
use crate::listen::{self, Limits, Port, Serve};
use crate::metrics::Metrics;
use crate::tokens::{CreatedToken, TokenError, Tokens};
use crate::Engine;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr} for the API: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running API port.
pub struct Launched {
    /// where it listens (the real port when the config says 0).
    pub addr: SocketAddr,
    pub tls: bool,
    /// set at first start: print `secret_file` so the operator can find the admin token.
    pub created: Option<CreatedToken>,
    pub tokens: Tokens,
    /// ends after `cancel` once open requests are done.
    pub task: JoinHandle<()>,
}

/// Starts the API for `engine` as configured. `metrics` should be the registry the boot router
/// records into (and whose bus feed runs), so `/metrics` shows both listeners.
pub async fn launch(
    engine: Engine,
    metrics: Metrics,
    renderer: Option<Arc<dyn Renderer>>,
    cancel: CancellationToken,
) -> Result<Launched, LaunchError> {
    launch_with_power(engine, metrics, renderer, None, cancel).await
}

/// [`launch`], with power control over IPMI behind `POST /machines/{id}/power`.
pub async fn launch_with_power(
    engine: Engine,
    metrics: Metrics,
    renderer: Option<Arc<dyn Renderer>>,
    power: Option<crate::power::Power>,
    cancel: CancellationToken,
) -> Result<Launched, LaunchError> {
    let config = engine.config().clone();
    let tokens_file = config.tokens_file.clone();
    let (tokens, created) =
        tokio::task::spawn_blocking(move || Tokens::load_or_create(&tokens_file))
            .await
            .map_err(|e| {
                LaunchError::Tokens(TokenError::Io {
                    path: config.tokens_file.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            })??;
    let tls_config = match tls::configured_paths(&config) {
        Some((cert, key)) => Some(tls::load(&cert, &key)?),
        None => None,
    };
    let bind = config.http.api;
    let listener =
        listen::bind(bind).map_err(|source| LaunchError::Listen { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| LaunchError::Listen { addr: bind, source })?;
    let how = Serve {
        port: Port::Api,
        limits: Limits::api(&config.http),
        stats: metrics.http.clone(),
        tls: tls_config,
    };
    let mut state =
        ApiState::new(engine.clone(), tokens.clone(), metrics).with_shutdown(cancel.clone());
    if let Some(r) = renderer {
        state = state.with_renderer(r);
    }
    if let Some(p) = power {
        state = state.with_power(p);
    }
    let app = router(state);
    let is_tls = how.tls.is_some();
    let max_connections = how.limits.max_connections;
    let scheme = if is_tls { "https" } else { "http" };
    engine.set_service(
        "api",
        ServiceStatus::Running,
        0,
        &format!("{scheme}://{addr}"),
    );
    let task = tokio::spawn(async move {
        let served = listen::serve(listener, app, how, cancel).await;
        match served {
            Ok(()) => engine.set_service("api", ServiceStatus::Stopped, 0, ""),
            Err(e) => engine.set_service("api", ServiceStatus::Failed, 0, &e.to_string()),
        }
    });
    tracing::info!(%addr, scheme, max_connections, "API listening");
    if let Some(c) = &created {
        tracing::warn!(
            file = %c.secret_file.display(),
            "created the first admin API token; its secret is in this file (mode 0600)"
        );
    }
    Ok(Launched {
        addr,
        tls: is_tls,
        created,
        tokens,
        task,
    })
}
