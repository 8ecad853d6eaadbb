//! mayu's dnsmasq child: DHCP, proxyDHCP and TFTP chainloading into iPXE, supervised, with its
//! log turned into events and its lease file into the engine's lease table.
//!
//! - [`conf`]: the runtime files, rendering `templates/dnsmasq.conf`, `dnsmasq --test`.
//! - [`hosts`]: the `dhcp-hostsfile` written from the inventory (re-read on SIGHUP).
//! - [`leases`]: the lease file parser and watcher.
//! - [`logparse`]: dnsmasq's log lines as typed items.
//! - [`supervisor`]: the child process itself.

pub mod conf;
pub mod hosts;
pub mod leases;
pub mod logparse;
pub mod supervisor;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

pub use conf::{check, render_conf, self_test, CheckError, ConfError, RuntimeFiles, SelfTestError};
pub use supervisor::{Options, Supervisor, SERVICE};

/// Runs dnsmasq for `engine` until `cancel`: renders and self-tests its config, supervises
/// the child, keeps the lease table and the hostsfile current and reports its state as the
/// `dnsmasq` service. With `network.dhcp.mode: off` it only reports `disabled`.
pub async fn run(engine: Engine, cancel: CancellationToken) {
    Supervisor::new(engine, Options::default())
        .run(cancel)
        .await
}
