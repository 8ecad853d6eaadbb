//! Starts the boot services around an engine: boot HTTP, the admin API, the template reloader
//! and the dnsmasq supervisor, all stopped by one cancellation token.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Engine;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The running services; await `stopped` after cancelling to shut down cleanly.
pub struct Services {
    pub tasks: Vec<JoinHandle<()>>,
    /// where the boot and API listeners actually bound (port 0 in tests).
    pub boot_addr: Option<std::net::SocketAddr>,
    pub api_addr: Option<std::net::SocketAddr>,
}

impl Services {
    pub async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts every service configured for `engine`. Filled in as the services land.
pub async fn start(engine: Engine, cancel: CancellationToken) -> Result<Services, ServiceError> {
    let _ = (engine, cancel);
    Ok(Services {
        tasks: Vec::new(),
        boot_addr: None,
        api_addr: None,
    })
}
