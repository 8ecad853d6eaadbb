//! The event bus: every change and boot step, numbered, broadcast to the console, the API's
//! event stream and the metrics, with a short replay buffer for late subscribers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::lease::ServiceProblem;
use crate::machine::{Mac, Machine, MachineId, Phase, Stall};

/// How many recent events are kept for `Last-Event-ID` resume and the console's log.
const REPLAY: usize = 2048;

/// Something that happened. Serialised for the API as `{"type": ..., ...}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    MachineAdded {
        machine: Box<Machine>,
        actor: String,
    },
    MachineChanged {
        machine: Box<Machine>,
        change: String,
        actor: String,
    },
    MachineRetired {
        id: MachineId,
        actor: String,
    },
    /// a boot step served to a machine (script, kernel, initrd, config, boot-complete).
    BootStep {
        id: Option<MachineId>,
        phase: Phase,
        detail: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        /// the machine's profile at this step, so subscribers (metrics) need not ask.
        #[serde(skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// a machine has been in one boot phase longer than its profile allows.
    Stalled {
        id: MachineId,
        stall: Stall,
        #[serde(skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// a stalled machine moved on (another phase, a new boot, done) or was retired.
    StallEnded {
        id: MachineId,
        /// the phase it was stuck in.
        phase: Phase,
        /// how long it was in that phase.
        stalled_secs: u64,
        /// the phase it is in now; none once retired.
        #[serde(skip_serializing_if = "Option::is_none")]
        now_in: Option<Phase>,
        #[serde(skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// dnsmasq ignored a DHCP client mayu does not know (`known_only`); announced the first
    /// time each MAC is heard, so an operator can enrol it.
    Ignored {
        client: crate::engine::IgnoredClient,
    },
    /// a step recorded in a boot timeline (`crate::timeline`): of machine `id`, or of `mac`
    /// while no machine has it; `boot` is the timeline's boot number it went to.
    TimelineStep {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<MachineId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mac: Option<Mac>,
        boot: u32,
        step: crate::timeline::Step,
    },
    /// the steps recorded under `mac` joined machine `id`'s timeline (it registered).
    TimelineMerged {
        mac: Mac,
        id: MachineId,
    },
    /// a DHCP exchange seen in dnsmasq's log.
    Dhcp {
        message: String,
        mac: Option<Mac>,
        ip: Option<String>,
        hostname: Option<String>,
        detail: String,
    },
    /// a TFTP transfer seen in dnsmasq's log.
    Tftp {
        file: String,
        client: String,
        /// the machine holding the client's lease, when known.
        machine: Option<MachineId>,
        ok: bool,
        detail: String,
    },
    /// the lease table changed.
    Leases {
        count: usize,
    },
    TemplatesReloaded {
        ok: bool,
        /// `file:line: message` for each problem when not ok.
        errors: Vec<String>,
    },
    /// a supervised child process changed state.
    Service {
        name: String,
        status: crate::lease::ServiceStatus,
        restarts: u32,
        detail: String,
        /// why it is not (fully) working and what to do, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        problem: Option<ServiceProblem>,
    },
    /// a machine's power as its BMC reported it: a poll that saw a change, or an operator's
    /// power action (then `action` and `actor` say which and who). Never carries credentials.
    Power {
        id: MachineId,
        power: crate::power::PowerStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        action: Option<crate::power::PowerAction>,
        #[serde(skip_serializing_if = "Option::is_none")]
        actor: Option<String>,
    },
    /// a log line worth showing to the operator (warnings and errors).
    Log {
        level: LogLevel,
        message: String,
    },
}

/// How much a log event matters; the console's log pane colours by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// One line for logs, `mayuctl watch` and the console's event log.
    pub fn summary(&self) -> String {
        match &self.kind {
            EventKind::MachineAdded { machine, actor } => {
                format!("{} registered ({actor})", machine.id)
            }
            EventKind::MachineChanged {
                machine,
                change,
                actor,
            } => format!("{}: {change} ({actor})", machine.id),
            EventKind::MachineRetired { id, actor } => format!("{id} retired ({actor})"),
            EventKind::BootStep {
                id,
                phase,
                detail,
                duration_ms,
                ..
            } => {
                let who = id.as_ref().map(|i| i.as_str()).unwrap_or("unknown machine");
                match duration_ms {
                    Some(ms) => format!("{who}: {} {detail} in {ms} ms", phase.as_str()),
                    None => format!("{who}: {} {detail}", phase.as_str()),
                }
            }
            EventKind::Stalled { id, stall, .. } => format!(
                "{id}: stalled in {} for over {} (since {})",
                stall.phase.as_str(),
                crate::text::duration(stall.after_secs),
                stall
                    .since
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ),
            EventKind::StallEnded {
                id,
                phase,
                stalled_secs,
                now_in,
                ..
            } => match now_in {
                Some(p) => format!(
                    "{id}: moved on to {} after {} in {}",
                    p.as_str(),
                    crate::text::duration(*stalled_secs),
                    phase.as_str()
                ),
                None => format!("{id}: stall in {} ended (retired)", phase.as_str()),
            },
            EventKind::Ignored { client } => format!(
                "unknown DHCP client {} ignored{}; enrol it to let it boot",
                client.mac,
                client
                    .vendor_class
                    .as_deref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default()
            ),
            EventKind::TimelineStep {
                id,
                mac,
                boot,
                step,
            } => {
                let who = match (id, mac) {
                    (Some(id), _) => id.to_string(),
                    (None, Some(mac)) => format!("unregistered {mac}"),
                    (None, None) => "unknown".into(),
                };
                format!("{who}: boot {boot}: {} {}", step.kind.as_str(), step.detail)
                    .trim_end()
                    .to_string()
            }
            EventKind::TimelineMerged { mac, id } => {
                format!("{id}: the steps of {mac} before it registered joined its timeline")
            }
            EventKind::Dhcp {
                message,
                mac,
                ip,
                detail,
                ..
            } => {
                let mac = mac.map(|m| m.to_string()).unwrap_or_default();
                format!(
                    "DHCP {message} {mac} {} {detail}",
                    ip.as_deref().unwrap_or("")
                )
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
            }
            EventKind::Tftp {
                file,
                client,
                machine,
                ok,
                detail,
            } => {
                // dnsmasq names no client on some failures (`cannot access …`).
                let to = match (machine, client.is_empty()) {
                    (Some(m), false) => format!(" to {m} ({client})"),
                    (Some(m), true) => format!(" to {m}"),
                    (None, false) => format!(" to {client}"),
                    (None, true) => String::new(),
                };
                match (ok, file.is_empty()) {
                    (true, _) => format!("TFTP sent {file}{to}"),
                    (false, false) => format!("TFTP failed {file}{to}: {detail}"),
                    // the client's own error names no file.
                    (false, true) => format!("TFTP transfer{to} failed: {detail}"),
                }
            }
            EventKind::Leases { count } => format!("lease table: {count} leases"),
            EventKind::TemplatesReloaded { ok: true, .. } => "templates reloaded".into(),
            EventKind::TemplatesReloaded { errors, .. } => {
                format!("template reload refused: {}", errors.join("; "))
            }
            EventKind::Service {
                name,
                status,
                restarts,
                detail,
                ..
            } => format!("{name} {status} (restarts {restarts}) {detail}")
                .trim_end()
                .to_string(),
            EventKind::Log { level, message } => format!("{level}: {message}"),
            EventKind::Power {
                id,
                power,
                action,
                actor,
            } => {
                let mut s = match action {
                    Some(a) => format!("{id}: power {} -> {}", a.as_str(), power.state),
                    None => format!("{id}: power {}", power.state),
                };
                if let Some(e) = &power.error {
                    s.push_str(&format!(" ({e})"));
                }
                if let Some(who) = actor {
                    s.push_str(&format!(" ({who})"));
                }
                s
            }
        }
    }

    /// The machine this event is about, if any.
    pub fn machine_id(&self) -> Option<&MachineId> {
        match &self.kind {
            EventKind::MachineAdded { machine, .. } | EventKind::MachineChanged { machine, .. } => {
                Some(&machine.id)
            }
            EventKind::MachineRetired { id, .. }
            | EventKind::Stalled { id, .. }
            | EventKind::TimelineMerged { id, .. }
            | EventKind::StallEnded { id, .. }
            | EventKind::Power { id, .. } => Some(id),
            EventKind::BootStep { id, .. } | EventKind::TimelineStep { id, .. } => id.as_ref(),
            EventKind::Tftp { machine, .. } => machine.as_ref(),
            _ => None,
        }
    }
}

struct Inner {
    next_seq: u64,
    recent: VecDeque<Arc<Event>>,
}

/// One broadcast bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Event>>,
    inner: Arc<Mutex<Inner>>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

/// A bus that does not keep its engine's bus alive (see [`Bus::downgrade`]).
#[derive(Clone)]
pub struct WeakBus {
    tx: broadcast::WeakSender<Arc<Event>>,
    inner: std::sync::Weak<Mutex<Inner>>,
}

impl WeakBus {
    pub fn upgrade(&self) -> Option<Bus> {
        Some(Bus {
            tx: self.tx.upgrade()?,
            inner: self.inner.upgrade()?,
        })
    }
}

impl Bus {
    pub fn downgrade(&self) -> WeakBus {
        WeakBus {
            tx: self.tx.downgrade(),
            inner: Arc::downgrade(&self.inner),
        }
    }

    pub fn new() -> Bus {
        let (tx, _) = broadcast::channel(4096);
        Bus {
            tx,
            inner: Arc::new(Mutex::new(Inner {
                next_seq: 1,
                recent: VecDeque::with_capacity(REPLAY),
            })),
        }
    }

    /// Numbers, records and broadcasts an event. Sequence order is send order.
    pub fn publish(&self, kind: EventKind) -> Arc<Event> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ev = Arc::new(Event {
            seq: inner.next_seq,
            at: OffsetDateTime::now_utc(),
            kind,
        });
        inner.next_seq += 1;
        if inner.recent.len() == REPLAY {
            inner.recent.pop_front();
        }
        inner.recent.push_back(ev.clone());
        // Sending under the lock keeps broadcast order equal to sequence order.
        let _ = self.tx.send(ev.clone());
        ev
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Subscribes and returns the kept events after `after` (all kept when `None`), with no
    /// gap or duplicate between the two.
    pub fn subscribe_from(
        &self,
        after: Option<u64>,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let past = inner
            .recent
            .iter()
            .filter(|e| after.is_none_or(|a| e.seq > a))
            .cloned()
            .collect();
        (past, rx)
    }

    pub fn recent(&self, n: usize) -> Vec<Arc<Event>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let skip = inner.recent.len().saturating_sub(n);
        inner.recent.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resume_has_no_gap() {
        let bus = Bus::new();
        for i in 0..5 {
            bus.publish(EventKind::Leases { count: i });
        }
        let (past, mut rx) = bus.subscribe_from(Some(3));
        assert_eq!(past.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        bus.publish(EventKind::Leases { count: 9 });
        assert_eq!(rx.recv().await.unwrap().seq, 6);
    }
}
