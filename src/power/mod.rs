//! Power control over IPMI: a machine's BMC (`Machine.ipmi_addr`) driven with Debian's
//! `ipmitool` under a hard timeout, credentials from a 0600 secrets file (per rack, per
//! profile, default), "reinstall now" (the engine's reinstall flag, next boot from the network,
//! then a power cycle), and a poller that keeps every machine's power state fresh with bounded
//! concurrency. Power state lives in memory only (never in machine files or git) and each change
//! is a `power` event on the bus, which the console, SSE and metrics follow.

pub mod ipmitool;
pub mod secrets;
pub mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::events::EventKind;
use crate::machine::{Machine, MachineId};
use crate::Engine;

pub use ipmitool::{Chassis, Ipmitool, Target};
pub use secrets::{Credential, Password, Secrets, SecretsError};
pub use settings::PowerSettings;

/// Whether `program` (a path, or a name looked up on `PATH`) is an executable file.
pub fn ipmitool_found(program: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program);
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| executable(&d.join(program))))
}

/// The secrets file `settings` names, checked (see [`Secrets::load`]) and refused when it lies
/// inside `inventory`, a git repository.
pub fn load_secrets(
    settings: &PowerSettings,
    inventory: &std::path::Path,
) -> Result<Secrets, SecretsError> {
    if settings.secrets.starts_with(inventory) {
        return Err(SecretsError::InInventory {
            path: settings.secrets.clone(),
            inventory: inventory.to_path_buf(),
        });
    }
    Secrets::load(&settings.secrets)
}

/// What a machine's BMC last said about its power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    On,
    Off,
    /// the BMC did not answer within the timeout.
    Unreachable,
    /// the BMC answered but refused (credentials) or failed.
    Error,
    /// not asked yet.
    Unknown,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Unreachable => "unreachable",
            PowerState::Error => "error",
            PowerState::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A machine's power as last checked: `{"state", "checked_at", "error"?}` in the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerStatus {
    pub state: PowerState,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PowerStatus {
    fn of(result: &Result<PowerState, PowerError>) -> PowerStatus {
        let (state, error) = match result {
            Ok(s) => (*s, None),
            Err(e) => (e.state(), Some(e.to_string())),
        };
        PowerStatus {
            state,
            checked_at: OffsetDateTime::now_utc(),
            error,
        }
    }

    /// Same state and error (the time of the check aside).
    fn same_as(&self, other: &PowerStatus) -> bool {
        self.state == other.state && self.error == other.error
    }
}

/// An operator's power request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    Status,
    On,
    Off,
    Cycle,
    /// set the reinstall flag, boot from the network next, power-cycle (or on, if off).
    Reinstall,
}

impl PowerAction {
    pub const ALL: [&'static str; 5] = ["on", "off", "cycle", "status", "reinstall"];

    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Status => "status",
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::Cycle => "cycle",
            PowerAction::Reinstall => "reinstall",
        }
    }
}

impl std::str::FromStr for PowerAction {
    type Err = String;

    fn from_str(s: &str) -> Result<PowerAction, String> {
        match s {
            "status" => Ok(PowerAction::Status),
            "on" => Ok(PowerAction::On),
            "off" => Ok(PowerAction::Off),
            "cycle" => Ok(PowerAction::Cycle),
            "reinstall" => Ok(PowerAction::Reinstall),
            other => Err(format!(
                "unknown power action `{}`; one of: {}",
                crate::text::escape_control(other),
                PowerAction::ALL.join(", ")
            )),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PowerError {
    #[error("{id} has no BMC address; set one with `mayuctl set {id} ipmi_addr ADDR` (or PATCH ipmi_addr)")]
    NoBmc { id: MachineId },
    #[error("no BMC credentials cover {id} (no entry for its rack or profile and no default in the secrets file)")]
    NoCredentials { id: MachineId },
    #[error("cannot run {program}: {reason} (install Debian's ipmitool)")]
    Client { program: String, reason: String },
    #[error("the BMC at {addr} did not answer within {secs} s")]
    Timeout { addr: String, secs: u64 },
    #[error("the BMC at {addr} is unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the BMC at {addr} refused the login: {reason}")]
    Auth { addr: String, reason: String },
    #[error("the BMC at {addr} failed: {reason}")]
    Bmc { addr: String, reason: String },
    #[error("{0}")]
    Reinstall(String),
}

impl PowerError {
    /// The state a failed check leaves the machine in.
    pub fn state(&self) -> PowerState {
        match self {
            PowerError::Timeout { .. } | PowerError::Unreachable { .. } => PowerState::Unreachable,
            _ => PowerState::Error,
        }
    }
}

/// What a power request did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PowerOutcome {
    pub id: MachineId,
    pub action: PowerAction,
    pub power: PowerStatus,
    /// e.g. a BMC that refused "next boot from the network" during a reinstall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

struct Inner {
    engine: Engine,
    settings: PowerSettings,
    secrets: RwLock<Secrets>,
    client: Ipmitool,
    states: Mutex<HashMap<MachineId, PowerStatus>>,
}

/// Power control for every machine; cheap to clone.
#[derive(Clone)]
pub struct Power {
    inner: Arc<Inner>,
}

impl Power {
    /// Loads the secrets file named by `settings` (refused unless mode 0600 or stricter).
    /// A file inside the inventory (a git repository) is refused too.
    pub fn open(engine: Engine, settings: PowerSettings) -> Result<Power, SecretsError> {
        let secrets = load_secrets(&settings, &engine.config().inventory)?;
        Ok(Power::with_secrets(engine, settings, secrets))
    }

    pub fn with_secrets(engine: Engine, settings: PowerSettings, secrets: Secrets) -> Power {
        let client = Ipmitool {
            program: settings.ipmitool.clone(),
            timeout: settings.timeout,
        };
        Power {
            inner: Arc::new(Inner {
                engine,
                settings,
                secrets: RwLock::new(secrets),
                client,
                states: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Reads the secrets file again (after an operator changed it).
    pub fn reload_secrets(&self) -> Result<(), SecretsError> {
        let s = Secrets::load(&self.inner.settings.secrets)?;
        *self
            .inner
            .secrets
            .write()
            .unwrap_or_else(|p| p.into_inner()) = s;
        Ok(())
    }

    pub fn settings(&self) -> &PowerSettings {
        &self.inner.settings
    }

    /// The last known power of machine `id`.
    pub fn status_of(&self, id: &MachineId) -> Option<PowerStatus> {
        self.states().get(id).cloned()
    }

    /// Every machine's last known power.
    pub fn statuses(&self) -> HashMap<MachineId, PowerStatus> {
        self.states().clone()
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<MachineId, PowerStatus>> {
        self.inner.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How ipmitool reaches `m`'s BMC: its address, credentials by rack/profile/default.
    pub fn target(&self, m: &Machine) -> Result<Target, PowerError> {
        let addr = m
            .ipmi_addr
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| PowerError::NoBmc { id: m.id.clone() })?;
        let secrets = self.inner.secrets.read().unwrap_or_else(|p| p.into_inner());
        let (c, _) = secrets
            .for_machine(m)
            .ok_or_else(|| PowerError::NoCredentials { id: m.id.clone() })?;
        Ok(Target {
            addr: addr.to_string(),
            port: c.port.unwrap_or(self.inner.settings.port),
            user: c.user.clone(),
            password: c.password.clone(),
            cipher_suite: c.cipher_suite.unwrap_or(3),
        })
    }

    /// Records a check's result; publishes a `power` event when it differs from the last one
    /// (or always, for an operator's `action`).
    fn record(
        &self,
        id: &MachineId,
        result: &Result<PowerState, PowerError>,
        action: Option<(PowerAction, &str)>,
    ) -> PowerStatus {
        let status = PowerStatus::of(result);
        let changed = {
            let mut states = self.states();
            let changed = states.get(id).is_none_or(|old| !old.same_as(&status));
            states.insert(id.clone(), status.clone());
            changed
        };
        if changed || action.is_some() {
            self.inner.engine.bus().publish(EventKind::Power {
                id: id.clone(),
                power: status.clone(),
                action: action.map(|(a, _)| a),
                actor: action.map(|(_, who)| who.to_string()),
            });
        }
        status
    }

    /// Asks `m`'s BMC for its power state and records it.
    pub async fn check(&self, m: &Machine) -> PowerStatus {
        let result = match self.target(m) {
            Ok(t) => self.inner.client.chassis(&t, Chassis::Status).await,
            Err(e) => Err(e),
        };
        self.record(&m.id, &result, None)
    }

    /// Carries out `action` on machine `key` (id or MAC) for `actor`. A machine without a BMC
    /// address or credentials is refused before anything changes.
    pub async fn act(
        &self,
        m: &Machine,
        action: PowerAction,
        actor: &str,
    ) -> Result<PowerOutcome, PowerError> {
        let target = self.target(m)?;
        let client = &self.inner.client;
        let mut note = None;
        let result = match action {
            PowerAction::Status => client.chassis(&target, Chassis::Status).await,
            PowerAction::On => client.chassis(&target, Chassis::On).await,
            PowerAction::Off => client.chassis(&target, Chassis::Off).await,
            PowerAction::Cycle => match client.chassis(&target, Chassis::Status).await {
                // A cycle of a machine that is off is refused by many BMCs: power it on.
                Ok(PowerState::Off) => client.chassis(&target, Chassis::On).await,
                Ok(_) => client.chassis(&target, Chassis::Cycle).await,
                Err(e) => Err(e),
            },
            PowerAction::Reinstall => {
                // The BMC must answer before the flag is set: an unreachable BMC changes nothing.
                let before = client.chassis(&target, Chassis::Status).await;
                let before = match before {
                    Ok(s) => s,
                    Err(e) => {
                        self.record(&m.id, &Err(e.clone()), None);
                        return Err(e);
                    }
                };
                let (engine, key, who) = (
                    self.inner.engine.clone(),
                    m.id.to_string(),
                    actor.to_string(),
                );
                tokio::task::spawn_blocking(move || engine.request_reinstall(&key, &who))
                    .await
                    .map_err(|e| PowerError::Reinstall(format!("the worker task failed: {e}")))?
                    .map_err(|e| PowerError::Reinstall(e.to_string()))?;
                match client.chassis(&target, Chassis::BootPxe).await {
                    Ok(_) => {}
                    Err(e @ PowerError::Bmc { .. }) => {
                        // Machines that boot from the network first still reinstall.
                        note = Some(format!(
                            "the BMC refused next boot from the network ({e}); went on without it"
                        ));
                    }
                    Err(e) => {
                        self.record(&m.id, &Err(e.clone()), None);
                        return Err(e);
                    }
                }
                match before {
                    PowerState::Off => client.chassis(&target, Chassis::On).await,
                    _ => client.chassis(&target, Chassis::Cycle).await,
                }
            }
        };
        let failed = result.as_ref().err().cloned();
        let power = self.record(&m.id, &result, Some((action, actor)));
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(PowerOutcome {
            id: m.id.clone(),
            action,
            power,
            note,
        })
    }

    /// One round: every machine with a BMC address asked once, at most `concurrency` at a
    /// time; machines that lost their address (or were retired) are forgotten.
    pub async fn poll_once(&self) {
        let machines: Vec<Machine> = self
            .inner
            .engine
            .list()
            .into_iter()
            .filter(|m| m.ipmi_addr.as_deref().is_some_and(|a| !a.is_empty()))
            .collect();
        {
            let keep: std::collections::HashSet<&MachineId> =
                machines.iter().map(|m| &m.id).collect();
            self.states().retain(|id, _| keep.contains(id));
        }
        let width = self.inner.settings.concurrency.max(1);
        futures_util::stream::iter(machines)
            .for_each_concurrent(width, |m| async move {
                self.check(&m).await;
            })
            .await;
    }

    /// Polls every `settings.poll` until `cancel` fires (not at all for a poll of 0).
    pub async fn run_poller(self, cancel: CancellationToken) {
        let every = self.inner.settings.poll;
        if every.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.poll_once() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
