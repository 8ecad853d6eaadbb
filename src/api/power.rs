//! `POST /api/v1/machines/{id}/power`: power on, off, cycle, status and "reinstall now" over the
//! machine's BMC, and the `power` field machine JSON carries. A refused request (no BMC, no
//! credentials, a bad action) is a 4xx with the reason; a BMC that fails is a 502, one that does
//! not answer in time a 504. Credentials never appear in an answer.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::auth::AdminAccess;
use super::machines::{resolve, ApiPath};
use super::{blocking, ApiError, ApiJson, ApiState};
use crate::power::{Power, PowerAction, PowerError, PowerOutcome};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    pub action: String,
}

fn power_of(st: &ApiState) -> Result<&Power, ApiError> {
    st.power.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "power control is not configured; add `power: { secrets: FILE }` to config.yaml \
             (a 0600 file with the BMC credentials)"
                .into(),
        )
    })
}

impl From<PowerError> for ApiError {
    fn from(e: PowerError) -> ApiError {
        match e {
            PowerError::NoBmc { .. } | PowerError::NoCredentials { .. } => {
                ApiError::Unprocessable(e.to_string())
            }
            PowerError::Reinstall(_) => ApiError::Unprocessable(e.to_string()),
            PowerError::Timeout { .. } | PowerError::Unreachable { .. } => {
                ApiError::GatewayTimeout(e.to_string())
            }
            PowerError::Auth { .. } | PowerError::Bmc { .. } => ApiError::BadGateway(e.to_string()),
            PowerError::Client { .. } => ApiError::Unavailable(e.to_string()),
        }
    }
}

pub async fn act(
    who: AdminAccess,
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PowerRequest>,
) -> Result<Json<PowerOutcome>, ApiError> {
    let action: PowerAction = req.action.parse().map_err(ApiError::BadRequest)?;
    let power = power_of(&st)?.clone();
    let engine = st.engine.clone();
    let m = blocking(move || resolve(&engine, &id)).await?;
    Ok(Json(power.act(&m, action, &who.author()).await?))
}

/// Adds `power: {state, checked_at, error?}` to one machine's JSON when it is known.
pub fn add_power(st: &ApiState, v: &mut Value) {
    let Some(power) = &st.power else { return };
    let Some(o) = v.as_object_mut() else { return };
    let Some(id) = o
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    if let Some(p) = power.status_of(&id) {
        o.insert(
            "power".into(),
            serde_json::to_value(p).unwrap_or(Value::Null),
        );
    }
}

/// The machine list's JSON with each machine's power added (unchanged without power control).
pub fn add_power_to_list(st: &ApiState, body: Vec<u8>) -> Vec<u8> {
    let Some(power) = &st.power else { return body };
    if power.statuses().is_empty() {
        return body;
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    if let Some(list) = v.as_array_mut() {
        for m in list {
            add_power(st, m);
        }
    } else if let Some(list) = v.get_mut("machines").and_then(Value::as_array_mut) {
        for m in list {
            add_power(st, m);
        }
    }
    serde_json::to_vec(&v).unwrap_or(body)
}
