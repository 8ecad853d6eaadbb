//! Keeps the dnsmasq hostsfile in step with the inventory, off the supervisor's task. It
//! follows the machine events from one snapshot on, keeps only what the file holds of each
//! machine ([`HostEntry`]), ignores events that change none of that, gathers a burst into one
//! write, and renders and writes on a blocking thread. Each write that changed the file bumps
//! a generation the supervisor watches to send dnsmasq its SIGHUP. A write that fails is the
//! `hostsfile` service's problem (console header, `/api/v1/services`) and is retried.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::hosts::{render_entries, HostEntry};
use crate::config::NetworkConfig;
use crate::engine::Engine;
use crate::events::EventKind;
use crate::lease::{ServiceProblem, ServiceStatus};
use crate::machine::MachineId;

pub const SERVICE: &str = "hostsfile";
/// A burst of registrations becomes one write (and one SIGHUP) at most this late.
const GATHER: Duration = Duration::from_millis(100);
const RETRY: Duration = Duration::from_secs(2);

/// What the file holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// bumped by every write that changed the file.
    pub generation: u64,
    /// machines listed.
    pub count: usize,
}

struct Sync {
    engine: Engine,
    path: PathBuf,
    net: NetworkConfig,
    entries: BTreeMap<MachineId, HostEntry>,
    last: Option<String>,
    failing: bool,
    tx: watch::Sender<Written>,
}

/// Writes the file for the current inventory, then keeps it current until `cancel`.
pub async fn start(
    engine: Engine,
    path: PathBuf,
    cancel: CancellationToken,
) -> watch::Receiver<Written> {
    let (snapshot, rx) = engine.subscribe();
    let (tx, written) = watch::channel(Written::default());
    let mut sync = Sync {
        net: engine.config().network.clone(),
        engine,
        path,
        entries: snapshot
            .machines
            .iter()
            .map(|m| (m.id.clone(), HostEntry::of(m)))
            .collect(),
        last: None,
        failing: false,
        tx,
    };
    let retry = !sync.write().await;
    tokio::spawn(sync.follow(rx, retry, cancel));
    written
}

impl Sync {
    async fn follow(
        mut self,
        mut rx: broadcast::Receiver<std::sync::Arc<crate::events::Event>>,
        retry: bool,
        cancel: CancellationToken,
    ) {
        let mut due: Option<Instant> = retry.then(|| Instant::now() + RETRY);
        loop {
            let wait = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wait => {
                    due = (!self.write().await).then(|| Instant::now() + RETRY);
                }
                ev = rx.recv() => {
                    let changed = match ev {
                        Ok(ev) => self.apply(&ev.kind),
                        Err(broadcast::error::RecvError::Lagged(_)) => self.reseed(),
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if changed && due.is_none() {
                        due = Some(Instant::now() + GATHER);
                    }
                }
            }
        }
    }

    /// Follows one event; true when the file's content may change.
    fn apply(&mut self, kind: &EventKind) -> bool {
        match kind {
            EventKind::MachineAdded { machine, .. } | EventKind::MachineChanged { machine, .. } => {
                let entry = HostEntry::of(machine);
                if self.entries.get(&entry.id) == Some(&entry) {
                    return false;
                }
                self.entries.insert(entry.id.clone(), entry);
                true
            }
            EventKind::MachineRetired { id, .. } => self.entries.remove(id).is_some(),
            _ => false,
        }
    }

    /// Missed events: start again from the engine's state.
    fn reseed(&mut self) -> bool {
        self.entries = self
            .engine
            .snapshot()
            .machines
            .iter()
            .map(|m| (m.id.clone(), HostEntry::of(m)))
            .collect();
        true
    }

    /// Renders and writes on a blocking thread if the text changed; false when it failed.
    async fn write(&mut self) -> bool {
        let entries: Vec<HostEntry> = self.entries.values().cloned().collect();
        let (net, path, last) = (self.net.clone(), self.path.clone(), self.last.take());
        let done = tokio::task::spawn_blocking(move || {
            let text = render_entries(&entries, &net);
            if last.as_deref() == Some(text.as_str()) {
                return (Ok(false), last, entries.len());
            }
            match crate::atomic::write(&path, text.as_bytes(), 0o644) {
                Ok(()) => (Ok(true), Some(text), entries.len()),
                Err(e) => (Err(e.to_string()), last, entries.len()),
            }
        })
        .await;
        let (result, last, count) = match done {
            Ok(d) => d,
            Err(e) => (Err(format!("the writer thread failed: {e}")), None, 0),
        };
        self.last = last;
        match result {
            Ok(changed) => {
                if changed {
                    self.tx.send_modify(|w| {
                        w.generation += 1;
                        w.count = count;
                    });
                }
                if self.failing {
                    self.failing = false;
                    let detail = format!("{} written again", self.path.display());
                    self.engine
                        .set_service(SERVICE, ServiceStatus::Ok, 0, &detail);
                }
                true
            }
            Err(reason) => {
                tracing::warn!(file = %self.path.display(), error = %reason, "cannot write the dnsmasq hostsfile; retrying");
                self.failing = true;
                self.engine.set_service_problem(
                    SERVICE,
                    ServiceStatus::Failed,
                    0,
                    &format!("cannot write {}", self.path.display()),
                    Some(ServiceProblem {
                        code: "hostsfile_unwritable".into(),
                        reason: format!("cannot write {}: {reason}", self.path.display()),
                        hint: "dnsmasq keeps the last good list; mayu retries every 2 s (free the disk or fix the folder's permissions)".into(),
                    }),
                );
                false
            }
        }
    }
}
