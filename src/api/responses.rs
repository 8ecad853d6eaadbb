//! The bodies the API answers with that are not an engine type of their own. The handlers
//! build them and [`crate::client`] reads them back, so the server and `mayuctl` cannot drift
//! apart on a field name. (Machines, leases, services and history entries go out as the engine's
//! own types.)

use serde::{Deserialize, Serialize};

use crate::engine::ProfileStatus;
use crate::machine::MachineId;
use crate::tokens::Scope;

/// `GET /api/v1/profiles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    pub profiles: Vec<ProfileLoad>,
    /// machines in no profile.
    pub unassigned: usize,
}

/// One profile and how many of its machines have still to boot or install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileLoad {
    #[serde(flatten)]
    pub status: ProfileStatus,
    /// assigned but not yet reported running.
    pub waiting: usize,
}

/// `DELETE /api/v1/machines/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retired {
    pub retired: MachineId,
}

/// One entry of `GET /api/v1/tokens`: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub scope: Scope,
}

/// `POST /api/v1/tokens`: the only time a secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub name: String,
    pub scope: Scope,
    pub secret: String,
}

/// `DELETE /api/v1/tokens/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revoked {
    pub revoked: String,
}

/// Every refusal: a code for scripts, the reason for a person, and for an unknown machine
/// the ids it may have meant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<String>,
}
