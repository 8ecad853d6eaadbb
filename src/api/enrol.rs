//! Enrolment over the API: `GET /api/v1/ignored` lists the DHCP clients dnsmasq ignored as
//! unknown (`known_only`), `POST /api/v1/machines` makes a MAC a machine before it ever boots
//! (optionally in a profile, with hostname and rack). See `engine::enrol`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::auth::{AdminAccess, ReadAccess};
use super::machines::machine_json;
use super::{ApiError, ApiJson, ApiState};
use crate::engine::{Enrolment, IgnoredClient};

pub async fn ignored(_: ReadAccess, State(st): State<ApiState>) -> Json<Vec<IgnoredClient>> {
    Json(st.engine.ignored())
}

/// `201 Created` with the machine and its `Location`; `409` when the MAC is already a machine
/// or the profile is full (without `force`), `422` for an unknown profile or a bad hostname.
pub async fn add(
    who: AdminAccess,
    State(st): State<ApiState>,
    ApiJson(e): ApiJson<Enrolment>,
) -> Result<impl IntoResponse, ApiError> {
    let engine = st.engine.clone();
    let m = engine
        .begin_enrol(e, &who.author())
        .map_err(|err| ApiError::from_engine(err, &engine))?
        .durable()
        .await
        .map_err(|err| ApiError::from_engine(err, &engine))?;
    let location = format!("/api/v1/machines/{}", m.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(machine_json(&m)),
    ))
}
