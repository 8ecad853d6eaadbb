//! The boot port (machine-facing): the iPXE chain, per-machine scripts and configs rendered
//! from memory, kernel/initrd assets, the boot programs for UEFI HTTP boot, facts and
//! boot-complete. No operator routes live here.

mod assets;
mod error;
mod ipxe;
mod legacy;
mod machine;
mod programs;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;

use crate::templates::Templates;
use crate::Engine;
pub use error::BootError;
pub use ipxe::IpxeQuery;

/// Bodies machines send (facts) are small; anything larger is refused.
const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct BootState {
    pub engine: Engine,
    pub templates: Arc<Templates>,
    /// where the boot listener is bound (its port goes into every URL handed to machines).
    pub boot_addr: SocketAddr,
}

pub fn router(state: BootState) -> Router {
    let mut router = Router::new();
    if state.engine.config().compat.mayu.is_some() {
        router = router
            .route("/ipxebootscript", get(legacy::ipxe_boot_script))
            .route("/images/{file}", get(legacy::image))
            .route("/images/{serial}/{file}", get(legacy::machine_image));
    }
    router
        .route("/boot.ipxe", get(ipxe::chain))
        .route("/ipxe", get(ipxe::machine_script))
        .route("/ignition", get(machine::ignition))
        .route("/cloud-config", get(machine::cloud_config))
        .route("/metadata", get(machine::metadata))
        .route("/facts", post(machine::facts))
        .route("/assignment", get(machine::assignment))
        .route(
            "/boot-complete",
            post(machine::boot_complete).put(machine::boot_complete),
        )
        .route("/installed", post(machine::installed))
        .route("/assets/{image}/{file}", get(assets::asset))
        .route(
            "/assets/{image}/{version}/{file}",
            get(assets::versioned_asset),
        )
        .route("/boot/{file}", get(programs::program))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The peer's address when the server was started with connect info (always in production;
/// absent in router-level tests).
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// A render that must not be served: said as an error (log and console) and answered with a
/// 500 and its reason.
pub(crate) fn refused(s: &BootState, msg: String) -> BootError {
    s.engine.say(crate::events::LogLevel::Error, msg.clone());
    BootError::internal(msg)
}

/// Serving a configured machine its profile's script or config means it is now installing.
pub(crate) async fn note_installing(
    s: &BootState,
    m: &crate::machine::Machine,
) -> Result<(), BootError> {
    if m.state == crate::machine::State::Configured {
        s.engine.begin_mark_installing(&m.id)?.durable().await?;
    }
    Ok(())
}

/// Runs an engine call off the async workers: engine calls may fsync.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, BootError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BootError::internal(format!("worker failed: {e}")))
}
