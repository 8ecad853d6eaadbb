//! DHCP leases as the lease table shows them.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::machine::{Mac, MachineId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
    /// None for infinite leases.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
    pub client_id: Option<String>,
    /// the inventory machine with this MAC; None shows as an unknown machine.
    pub machine: Option<MachineId>,
}

/// Where a service stands; shown in the console header, `/api/v1/services` and
/// `mayuctl services` by its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    Starting,
    Running,
    /// watching for changes (the template reloader).
    Watching,
    /// doing its job (the audit: every change committed or being committed).
    Ok,
    /// waiting for something outside mayu (an interface to appear).
    Waiting,
    Restarting,
    /// failing, retried with backoff; nothing is lost meanwhile (the audit).
    Retrying,
    Stopped,
    Disabled,
    Failed,
}

/// How bad a status is, for colour and alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Fine,
    Degraded,
    Failed,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Starting => "starting",
            ServiceStatus::Running => "running",
            ServiceStatus::Watching => "watching",
            ServiceStatus::Ok => "ok",
            ServiceStatus::Waiting => "waiting",
            ServiceStatus::Restarting => "restarting",
            ServiceStatus::Retrying => "retrying",
            ServiceStatus::Stopped => "stopped",
            ServiceStatus::Disabled => "disabled",
            ServiceStatus::Failed => "failed",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            ServiceStatus::Failed => Severity::Failed,
            ServiceStatus::Waiting | ServiceStatus::Restarting | ServiceStatus::Retrying => {
                Severity::Degraded
            }
            _ => Severity::Fine,
        }
    }
}

impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The latest state of one service (boot HTTP, API, dnsmasq, template reloader, audit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    pub name: String,
    pub status: ServiceStatus,
    pub restarts: u32,
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// why the service is not doing its job (or is degraded), and what to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<ServiceProblem>,
}

/// A reason a service cannot do its job, written for the operator: what is wrong and what to
/// do. `code` names the reason for scripts (e.g. `interface_missing`); `reason` and `hint`
/// are the words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceProblem {
    pub code: String,
    pub reason: String,
    pub hint: String,
}

impl ServiceProblem {
    /// `reason: hint`, one line.
    pub fn line(&self) -> String {
        format!("{}: {}", self.reason, self.hint)
    }
}
