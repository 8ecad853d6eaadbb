//! Boot timelines over the API: `GET /api/v1/machines/{id or MAC}/timeline` (this boot and the
//! ones before it, steps in order; a MAC that is no machine yet answers with what DHCP and
//! TFTP saw of it) and `GET /api/v1/unregistered` (MACs seen by DHCP that never registered).

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::auth::ReadAccess;
use super::machines::{resolve, ApiPath};
use super::{ApiError, ApiState};
use crate::engine::Unregistered;
use crate::machine::{Mac, MachineId};
use crate::timeline::Timeline;

/// A timeline and whose it is.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct TimelineAnswer {
    /// the machine, once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<MachineId>,
    /// the MAC of an unregistered client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(flatten)]
    pub timeline: Timeline,
}

pub async fn show(
    _: ReadAccess,
    State(st): State<ApiState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<TimelineAnswer>, ApiError> {
    if let Ok(mac) = key.parse::<Mac>() {
        if st.engine.by_mac(&mac).is_none() {
            if let Some(timeline) = st.engine.unregistered_timeline(&mac) {
                return Ok(Json(TimelineAnswer {
                    id: None,
                    mac: Some(mac),
                    timeline,
                }));
            }
        }
    }
    let m = resolve(&st.engine, &key)?;
    Ok(Json(TimelineAnswer {
        timeline: st.engine.timeline(&m.id),
        id: Some(m.id),
        mac: None,
    }))
}

pub async fn unregistered(_: ReadAccess, State(st): State<ApiState>) -> Json<Vec<Unregistered>> {
    Json(st.engine.unregistered())
}
