//! mayu's dnsmasq child: DHCP, proxyDHCP and TFTP chainloading into iPXE, supervised, with its
//! log turned into events and its lease file into the engine's lease table.
//!
//! - [`conf`]: the runtime files, rendering `templates/dnsmasq.conf`, `dnsmasq --test`.
//! - [`hosts`]: the `dhcp-hostsfile` text for the inventory (re-read on SIGHUP).
//! - [`hosts_sync`]: keeps that file current off the supervisor's task.
//! - [`leases`]: the lease file parser and watcher.
//! - [`logparse`]: dnsmasq's log lines as typed items.
//! - [`supervisor`]: the child process itself.
//! - [`tftproot`]: the boot programs the TFTP root must hold, checked and filled.

pub mod conf;
pub mod hosts;
pub mod hosts_sync;
pub mod leases;
pub mod logparse;
pub mod supervisor;
pub mod tftproot;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

pub use conf::{check, render_conf, self_test, CheckError, ConfError, RuntimeFiles, SelfTestError};
pub use supervisor::{Options, Supervisor, SERVICE};

/// Runs dnsmasq for `engine` until `cancel`: renders and self-tests its config, supervises
/// the child, keeps the lease table and the hostsfile current and reports its state as the
/// `dnsmasq` service. With `network.dhcp.mode: off` it only reports `disabled`.
pub async fn run(engine: Engine, cancel: CancellationToken) {
    fill_tftproot(&engine).await;
    Supervisor::new(engine, Options::default())
        .run(cancel)
        .await
}

/// Fills a TFTP root that lacks boot programs from Debian's `ipxe` package when it is
/// installed, so a fresh clone boots machines without a separate script. Says so on the bus.
async fn fill_tftproot(engine: &Engine) {
    let config = engine.config().clone();
    if tftproot::programs(&config).is_empty() {
        return;
    }
    let root = config.tftproot.clone();
    let source = tftproot::source();
    let from = source.clone();
    let filled = tokio::task::spawn_blocking(move || tftproot::fill(&root, &from)).await;
    let (level, message) = match filled {
        Ok(Ok(files)) if files.is_empty() => return,
        Ok(Ok(files)) => (
            crate::events::LogLevel::Info,
            format!(
                "filled the TFTP root {} with {} from {}",
                config.tftproot.display(),
                files.join(", "),
                source.display()
            ),
        ),
        Ok(Err(e)) => (crate::events::LogLevel::Warn, e.to_string()),
        Err(e) => (
            crate::events::LogLevel::Warn,
            format!("filling the TFTP root failed: {e}"),
        ),
    };
    engine.say(level, message);
}
