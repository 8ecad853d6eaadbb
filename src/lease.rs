//! DHCP leases as the lease table shows them.

use std::net::Ipv4Addr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::machine::{Mac, MachineId};

#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// The latest state of one service (boot HTTP, API, dnsmasq, template reloader).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceState {
    pub name: String,
    /// e.g. `running`, `starting`, `failed`, `stopped`, `disabled`.
    pub status: String,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
