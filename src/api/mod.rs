//! The operator API on the API port: the router factory, its shared state, JSON extraction that
//! answers bad input with `{error, detail}`, health/readiness, `/metrics`, and serving with
//! graceful shutdown.
//!
//! Every `/api/v1` route except health and readiness needs a bearer token; routes that change
//! state or return rendered configs need an admin token (see [`auth`]).
//!
//! | route | token | what |
//! |---|---|---|
//! | `GET /api/v1/health`, `/healthz` | none | liveness |
//! | `GET /api/v1/ready`, `/readyz` | none | 200 once the inventory is loaded and templates serve |
//! | `GET /metrics` | none | Prometheus text format |
//! | `GET /api/v1/machines?state=&profile=&q=&stalled=` | read | list (`profile=-`: unassigned) |
//! | `POST /api/v1/machines` | admin | enrol a MAC: `{"mac", "profile"?, "hostname"?, "rack"?, "force"?}` → 201 |
//! | `GET /api/v1/ignored` | read | DHCP clients ignored as unknown (`known_only`), for enrolment |
//! | `GET /api/v1/machines/{id or MAC}` | read | one machine (never its token) |
//! | `PATCH /api/v1/machines/{id}` | admin | `profile` (+`force`), `pin`, `state`, `hostname`, `ipmi_addr`, `provider_id`, `rack`, `notes`, `metadata`, `etcd_token`, `overrides` |
//! | `POST /api/v1/machines/{id}/reinstall`, `/boot-complete` | admin | |
//! | `POST /api/v1/machines/{id}/power` | admin | `{"action": "on|off|cycle|status|reinstall"}` over the BMC |
//! | `DELETE /api/v1/machines/{id}` | admin | retire |
//! | `GET /api/v1/machines/{id}/history` | read | git log of the machine's file |
//! | `GET /api/v1/machines/{id or MAC}/timeline` | read | this boot and the previous ones, every step in order |
//! | `GET /api/v1/unregistered` | read | MACs seen by DHCP that are no machine yet, with their steps |
//! | `GET /api/v1/machines/{id}/render/{kind}` | admin | rendered template |
//! | `GET /api/v1/profiles`, `/leases`, `/services`, `/templates` | read | status views |
//! | `GET /api/v1/events` | read | Server-Sent Events; resume with `Last-Event-ID` or `?after=` |
//! | `GET/POST /api/v1/tokens`, `DELETE /api/v1/tokens/{name}` | admin | token management |
//! | `GET /admin/hosts`, `/admin/mayu_config`, `PUT /admin/host/{serial}/...` | read / admin, or an address in `compat.mayu.allow_from` | Mayu compatibility ([`compat`]) |
//!
//! Errors are `{"error": code, "detail": reason}` with a 4xx/5xx status; a refused request
//! changes nothing.

pub mod access;
pub mod auth;
pub mod compat;
pub mod enrol;
pub mod error;
pub mod events;
pub mod launch;
pub mod machines;
pub mod power;
pub mod render;
pub mod responses;
pub mod timeline;
pub mod tls;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use launch::{launch, launch_with_power, LaunchError, Launched};

use crate::machine::Machine;
use crate::metrics::{self, Metrics};
use crate::tokens::Tokens;
use crate::Engine;

/// Request bodies larger than this are refused with 413 before they are parsed.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Template-set status and rendering, provided by the template service (the API does not own
/// templates). Without one, the routes that need it answer 503 with the reason.
pub trait Renderer: Send + Sync + 'static {
    /// e.g. `{"ok": true, "last_reload": "...", "errors": [], "templates": [...]}`; an `ok` of
    /// `false` makes readiness fail.
    fn status(&self) -> serde_json::Value;
    /// Renders `template` (a template file name, or a kind such as `ipxe`/`ignition`) for `machine`.
    fn render(&self, machine: &Machine, template: &str) -> Result<String, String>;
}

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub tokens: Tokens,
    pub metrics: Metrics,
    pub renderer: Option<Arc<dyn Renderer>>,
    /// ends open event streams, so graceful shutdown does not wait on them forever.
    pub shutdown: CancellationToken,
    /// power control over IPMI, when `power:` is configured.
    pub power: Option<crate::power::Power>,
}

impl ApiState {
    pub fn new(engine: Engine, tokens: Tokens, metrics: Metrics) -> ApiState {
        ApiState {
            engine,
            tokens,
            metrics,
            renderer: None,
            shutdown: CancellationToken::new(),
            power: None,
        }
    }

    pub fn with_power(mut self, power: crate::power::Power) -> ApiState {
        self.power = Some(power);
        self
    }

    pub fn with_renderer(mut self, renderer: Arc<dyn Renderer>) -> ApiState {
        self.renderer = Some(renderer);
        self
    }

    /// Event streams end when `cancel` fires; pass the token that stops the services.
    pub fn with_shutdown(mut self, cancel: CancellationToken) -> ApiState {
        self.shutdown = cancel;
        self
    }
}

/// `Json<T>` whose rejections (malformed JSON, unknown fields, wrong content type, a body over
/// [`BODY_LIMIT`]) are [`ApiError`]s with a reason.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    let text = rej.body_text();
    match rej.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "the request body is larger than the limit of {BODY_LIMIT} bytes"
        )),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "send the body as JSON with `Content-Type: application/json`".into(),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(text),
        _ => ApiError::BadRequest(text),
    }
}

/// `Query<T>` whose rejections are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rej: QueryRejection| ApiError::BadRequest(rej.body_text()))
    }
}

/// Runs engine work (file writes, fsync, git) off the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("the worker task failed: {e}")))?
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Ready when the inventory loaded and the template set (if attached) is good.
async fn ready(State(st): State<ApiState>) -> Response {
    let templates = match &st.renderer {
        Some(r) => r.status(),
        None => json!({"ok": null, "detail": "no template service attached"}),
    };
    let templates_ok = templates.get("ok").and_then(|v| v.as_bool()) != Some(false);
    let problems = st.engine.load_problems().len();
    // An audit that cannot commit is not ready: changes still succeed (they wait in the
    // journal), but an operator must know.
    let audit = st.engine.audit_health().map(|h| h.borrow().clone());
    let audit_ok = audit
        .as_ref()
        .is_none_or(|h| h.status != crate::lease::ServiceStatus::Retrying);
    // A shared inventory out of reach: known machines are served, but nothing new is taken.
    let cluster = st.engine.store_link().map(|l| l.borrow().clone());
    let cluster_ok = cluster.as_ref().is_none_or(|l| l.up);
    let ready = templates_ok && audit_ok && cluster_ok;
    let body = json!({
        "ready": ready,
        "machines": st.engine.len(),
        "inventory_files_skipped": problems,
        "templates": templates,
        "audit": audit,
        "cluster": cluster.map(|l| json!({"up": l.up, "detail": l.detail})),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn scrape(State(st): State<ApiState>) -> Result<Response, ApiError> {
    let (engine, metrics) = (st.engine.clone(), st.metrics.clone());
    let text = blocking(move || Ok(metrics.render(&engine))).await?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route {} {}; the API lives under /api/v1",
        req.method(),
        req.uri().path()
    ))
}

async fn wrong_method(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.uri().path()
    ))
}

/// The API port's router: `/api/v1/...`, the Mayu compatibility routes under `/admin`,
/// `/metrics`, and health/readiness. Request latency per route is recorded in `state.metrics`.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/machines", get(machines::list).post(enrol::add))
        .route("/ignored", get(enrol::ignored))
        .route("/unregistered", get(timeline::unregistered))
        .route("/machines/{id}/timeline", get(timeline::show))
        .route(
            "/machines/{id}",
            get(machines::show)
                .patch(machines::update)
                .delete(machines::retire),
        )
        .route("/machines/{id}/reinstall", post(machines::reinstall))
        .route("/machines/{id}/power", post(power::act))
        .route(
            "/machines/{id}/boot-complete",
            post(machines::boot_complete),
        )
        .route("/machines/{id}/history", get(machines::history))
        .route("/machines/{id}/render/{template}", get(machines::render))
        .route("/profiles", get(machines::profiles))
        .route("/leases", get(machines::leases))
        .route("/services", get(machines::services))
        .route("/templates", get(machines::templates))
        .route("/events", get(events::stream))
        .route("/tokens", get(access::list).post(access::add))
        .route("/tokens/{name}", axum::routing::delete(access::revoke));
    let admin = Router::new()
        .route("/hosts", get(compat::hosts))
        .route("/host/{serial}/boot_complete", put(compat::boot_complete))
        .route(
            "/host/{serial}/set_provider_id",
            put(compat::set_provider_id),
        )
        .route("/host/{serial}/set_ipmi_addr", put(compat::set_ipmi_addr))
        .route("/host/{serial}/set_state", put(compat::set_state))
        .route("/host/{serial}/override", put(compat::set_override))
        .route(
            "/host/{serial}/set_etcd_cluster_token",
            put(compat::set_etcd_cluster_token),
        )
        .route("/host/{serial}/set_cabinet", put(compat::set_cabinet))
        .route("/host/{serial}/set_metadata", put(compat::set_metadata))
        .route("/host/{serial}/set_installed", put(compat::set_installed))
        .route("/host/{serial}/mark_fresh", put(compat::mark_fresh))
        .route("/mayu_config", get(compat::config));
    let metrics = state.metrics.clone();
    let router = Router::new()
        .nest("/api/v1", v1)
        .nest("/admin", admin)
        .route("/metrics", get(scrape))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    metrics::instrument(router, &metrics, "api")
}

/// Serves `router` on `listener` with the API port's default connection limits and timeouts
/// (see [`crate::listen`]) until `cancel` fires, then finishes open requests and returns.
/// [`launch`] serves with the configured limits instead.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let how = crate::listen::Serve {
        port: crate::listen::Port::Api,
        limits: crate::listen::Limits::default(),
        stats: crate::listen::HttpStats::default(),
        tls: None,
    };
    crate::listen::serve(listener, router, how, cancel).await
}
