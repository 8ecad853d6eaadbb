//! Machine routes (list, show, change, reinstall, boot-complete, retire, history, render) and
//! the read-only views next to them (profiles, leases, services, template-set status).

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::auth::{AdminAccess, ReadAccess};
use super::responses::{ProfileLoad, Profiles, Retired};
use super::{blocking, ApiError, ApiJson, ApiQuery, ApiState};
use crate::engine::{Edit, EngineError};
use crate::inventory::HistoryEntry;
use crate::lease::{Lease, ServiceState};
use crate::machine::{Mac, Machine, MachineId, Rack, State as MachineState};
use crate::text;
use crate::Engine;

/// `Path<T>` whose rejection (a segment that is not UTF-8 once percent-decoded) is the API's
/// JSON 400 with the reason, not axum's plain text.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|rej: PathRejection| {
                ApiError::BadRequest(text::escape_control(&rej.body_text()).into_owned())
            })
    }
}

/// A machine as the API shows it: the per-machine token is never part of it.
pub fn machine_json(m: &Machine) -> Value {
    let mut v = serde_json::to_value(m.redacted()).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("token");
    }
    v
}

/// Finds a machine by id or MAC; a key that is neither is a bad request, an unknown one a 404
/// with close ids.
pub(crate) fn resolve(engine: &Engine, key: &str) -> Result<Machine, ApiError> {
    // Ids are lower case; operators often type serials as printed on the label.
    let lower = key.to_lowercase();
    if let Some(m) = engine.find(key).or_else(|| engine.find(&lower)) {
        return Ok(m);
    }
    check_key(&lower)?;
    Err(ApiError::unknown_machine(key.to_string(), engine))
}

pub(crate) fn check_key(key: &str) -> Result<(), ApiError> {
    if key.parse::<MachineId>().is_ok() || key.parse::<Mac>().is_ok() {
        return Ok(());
    }
    let key = text::escape_control(key);
    Err(ApiError::BadRequest(format!(
        "`{key}` is neither a machine id (1–128 of a-z, 0-9, `.`, `-`, `_`) nor a MAC address \
         (six hex pairs like 52:54:00:12:34:56)"
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub state: Option<String>,
    pub profile: Option<String>,
    /// free text, matched case-insensitively against ids, MACs, names, addresses and notes.
    pub q: Option<String>,
    /// `true`: only machines stalled in a boot phase; `false`: only those that are not.
    pub stalled: Option<bool>,
}

fn matches_text(m: &Machine, needle: &str) -> bool {
    let mut hay: Vec<String> = vec![m.id.to_string(), m.notes.clone()];
    hay.extend(m.macs.iter().map(|x| x.to_string()));
    hay.extend(
        [
            &m.hostname,
            &m.serial,
            &m.uuid,
            &m.profile,
            &m.ipmi_addr,
            &m.provider_id,
        ]
        .into_iter()
        .flatten()
        .cloned(),
    );
    if let Some(ip) = m.ip {
        hay.push(ip.to_string());
    }
    if let Some(r) = &m.rack {
        hay.push(r.rack.clone());
    }
    hay.iter().any(|h| h.to_lowercase().contains(needle))
}

pub async fn list(
    _: ReadAccess,
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let state = q
        .state
        .as_deref()
        .map(|s| {
            s.parse::<MachineState>()
                .map_err(|e| ApiError::BadRequest(text::escape_control(&e).into_owned()))
        })
        .transpose()?;
    let needle = q.q.as_deref().map(str::to_lowercase);
    let body = st.engine.list_json(|m| {
        state.is_none_or(|s| m.state == s)
            && q.profile.as_deref().is_none_or(|p| match p {
                // `-` selects machines without a profile.
                "-" => m.profile.is_none(),
                p => m.profile.as_deref() == Some(p),
            })
            && needle.as_deref().is_none_or(|n| matches_text(m, n))
            && q.stalled.is_none_or(|s| m.stall.is_some() == s)
    });
    let body = super::power::add_power_to_list(&st, body);
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

pub async fn show(
    _: ReadAccess,
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let mut v = machine_json(&resolve(&st.engine, &id)?);
    super::power::add_power(&st, &mut v);
    Ok(Json(v))
}

/// `Some(None)` when the field is present as `null`, `None` when it is absent.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A PATCH body. Every field is optional; unknown fields are refused. [`crate::client`] sends
/// it too, with only the fields that are set.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MachinePatch {
    /// a profile name assigns (and pins); `null` unassigns and holds the machine.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub profile: Option<Option<String>>,
    /// assign past a full quota.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// `false` hands the machine back to the assignment rules; `true` pins it where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<MachineState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipmi_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<Rack>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// replaces the machine's metadata labels (`role=worker`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<String>>,
    /// the etcd discovery token; `""` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_token: Option<String>,
    /// template env overrides to set; a `null` value removes the key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, Option<Value>>,
}

impl MachinePatch {
    fn edit(&self) -> Option<Edit> {
        let e = Edit {
            hostname: self.hostname.clone(),
            state: self.state,
            ipmi_addr: self.ipmi_addr.clone(),
            provider_id: self.provider_id.clone(),
            rack: self.rack.clone(),
            notes: self.notes.clone(),
            metadata: self.metadata.clone(),
            etcd_token: self.etcd_token.clone(),
            versions: BTreeMap::new(),
            overrides: self.overrides.clone(),
        };
        let empty = e.hostname.is_none()
            && e.state.is_none()
            && e.ipmi_addr.is_none()
            && e.provider_id.is_none()
            && e.rack.is_none()
            && e.notes.is_none()
            && e.metadata.is_none()
            && e.etcd_token.is_none()
            && e.overrides.is_empty();
        (!empty).then_some(e)
    }
}

/// Checks the whole PATCH before anything is applied, so a bad field never leaves the
/// assignment half done; every text field goes through [`crate::text`]'s rules and a refusal
/// names the field (the value itself is not echoed: it is what must not reach a terminal raw).
fn validate(engine: &Engine, m: &Machine, p: &MachinePatch) -> Result<(), ApiError> {
    if let Some(edit) = p.edit() {
        text::check_edit(edit).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    }
    if let Some(Some(name)) = &p.profile {
        text::check_line(name).map_err(|e| {
            ApiError::Unprocessable(
                text::FieldError {
                    field: "profile".into(),
                    error: e,
                }
                .to_string(),
            )
        })?;
    }
    if p.force && !matches!(p.profile, Some(Some(_))) {
        return Err(ApiError::Unprocessable(
            "`force` only applies together with `profile`".into(),
        ));
    }
    if let Some(Some(name)) = &p.profile {
        if p.pin == Some(false) {
            return Err(ApiError::Unprocessable(
                "assigning a profile pins the machine; drop `pin: false` or `profile`".into(),
            ));
        }
        let config = engine.config();
        let Some(profile) = config.profile(name) else {
            let known: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
            return Err(ApiError::Unprocessable(format!(
                "unknown profile `{name}`; known: {}",
                known.join(", ")
            )));
        };
        if let (Some(q), false, false) = (
            profile.quantity,
            p.force,
            m.profile.as_deref() == Some(name.as_str()),
        ) {
            let held = engine
                .profiles()
                .iter()
                .find(|s| &s.name == name)
                .map(|s| s.assigned)
                .unwrap_or(0);
            if held >= q {
                return Err(ApiError::Conflict(format!(
                    "profile `{name}` is full ({q} of {q}); assign with force to go past it"
                )));
            }
        }
    }
    if p.profile.is_none() && p.pin.is_none() && p.edit().is_none() {
        return Err(ApiError::Unprocessable(
            "nothing to change; send at least one of profile, pin, state, hostname, ipmi_addr, \
             provider_id, rack, notes, overrides"
                .into(),
        ));
    }
    Ok(())
}

/// Applies a PATCH: the assignment part first (it may reset the state), then the field edits,
/// so an explicit `state` in the same request wins. Each engine call is one audit commit.
pub async fn update(
    who: AdminAccess,
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(p): ApiJson<MachinePatch>,
) -> Result<Json<Value>, ApiError> {
    let engine = st.engine.clone();
    let author = who.author();
    let m = blocking(move || {
        let m = resolve(&engine, &id)?;
        validate(&engine, &m, &p)?;
        let key = m.id.to_string();
        let e = |err| ApiError::from_engine(err, &engine);
        match (&p.profile, p.pin) {
            (Some(Some(name)), _) => {
                engine.assign(&key, name, &author, p.force).map_err(e)?;
            }
            (Some(None), _) => {
                engine.unassign(&key, &author).map_err(e)?;
            }
            (None, Some(false)) => {
                engine.release(&key, &author).map_err(e)?;
            }
            (None, Some(true)) => match &m.profile {
                Some(current) if !m.pinned => {
                    engine.assign(&key, current, &author, true).map_err(e)?;
                }
                None if !m.pinned => {
                    engine.unassign(&key, &author).map_err(e)?;
                }
                _ => {}
            },
            (None, None) => {}
        }
        if let Some(edit) = p.edit() {
            // checked again for its canonical form (an IPv6 BMC address spelled short).
            let edit =
                text::check_edit(edit).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
            engine.edit(&key, &author, edit).map_err(e)?;
        }
        resolve(&engine, &key)
    })
    .await?;
    Ok(Json(machine_json(&m)))
}

/// Runs one engine action on the machine `id` names, authored by the caller.
async fn act<F>(who: AdminAccess, st: ApiState, id: String, f: F) -> Result<Json<Value>, ApiError>
where
    F: FnOnce(&Engine, &str, &str) -> Result<Machine, EngineError> + Send + 'static,
{
    let engine = st.engine.clone();
    let author = who.author();
    let m = blocking(move || {
        let m = resolve(&engine, &id)?;
        f(&engine, m.id.as_str(), &author).map_err(|e| ApiError::from_engine(e, &engine))
    })
    .await?;
    Ok(Json(machine_json(&m)))
}

pub async fn reinstall(
    who: AdminAccess,
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    act(who, st, id, |e, id, author| e.request_reinstall(id, author)).await
}

pub async fn boot_complete(
    who: AdminAccess,
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    act(who, st, id, |e, id, author| e.boot_complete(id, author)).await
}

pub async fn retire(
    who: AdminAccess,
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Retired>, ApiError> {
    let engine = st.engine.clone();
    let author = who.author();
    let id = blocking(move || {
        let m = resolve(&engine, &id)?;
        engine
            .retire(m.id.as_str(), &author)
            .map_err(|e| ApiError::from_engine(e, &engine))
    })
    .await?;
    Ok(Json(Retired { retired: id }))
}

/// The machine's audit trail, newest first. Works for retired machines too (by id).
pub async fn history(
    _: ReadAccess,
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let engine = st.engine.clone();
    let entries = blocking(move || {
        // Ids and MACs are stored lower case; a retired machine is only known by its id.
        let id = id.to_lowercase();
        check_key(&id)?;
        let known = engine.find(&id).is_some();
        let entries = engine
            .history(&id)
            .map_err(|e| ApiError::from_engine(e, &engine))?;
        if entries.is_empty() && !known {
            return Err(ApiError::unknown_machine(id, &engine));
        }
        Ok(entries)
    })
    .await?;
    Ok(Json(entries))
}

/// A machine's rendered template. Admin only: rendered configs carry secrets.
pub async fn render(
    _: AdminAccess,
    State(st): State<ApiState>,
    ApiPath((id, template)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let renderer = st.renderer.clone().ok_or_else(|| {
        ApiError::Unavailable(
            "template rendering is not available: no template service is attached to this API"
                .into(),
        )
    })?;
    let engine = st.engine.clone();
    let text = blocking(move || {
        let m = resolve(&engine, &id)?;
        renderer.render(&m, &template).map_err(|e| {
            ApiError::Unprocessable(format!("cannot render `{template}` for {}: {e}", m.id))
        })
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

pub async fn profiles(_: ReadAccess, State(st): State<ApiState>) -> Json<Profiles> {
    let machines = st.engine.list();
    let profiles = st
        .engine
        .profiles()
        .into_iter()
        .map(|status| {
            // assigned but not yet reported running: still to boot or install.
            let waiting = machines
                .iter()
                .filter(|m| {
                    m.profile.as_deref() == Some(status.name.as_str())
                        && m.state != MachineState::Running
                })
                .count();
            ProfileLoad { status, waiting }
        })
        .collect();
    let unassigned = machines.iter().filter(|m| m.profile.is_none()).count();
    Json(Profiles {
        profiles,
        unassigned,
    })
}

pub async fn leases(_: ReadAccess, State(st): State<ApiState>) -> Json<Vec<Lease>> {
    Json(st.engine.leases())
}

pub async fn services(_: ReadAccess, State(st): State<ApiState>) -> Json<Vec<ServiceState>> {
    Json(st.engine.services())
}

pub async fn templates(_: ReadAccess, State(st): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let r = st.renderer.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "template status is not available: no template service is attached to this API".into(),
        )
    })?;
    Ok(Json(r.status()))
}
