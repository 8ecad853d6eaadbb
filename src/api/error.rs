//! The API's one error type: every failure becomes a status and a JSON body
//! `{"error": code, "detail": reason}` (plus `suggestions` for unknown machines).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::responses::ErrorBody;
use crate::engine::EngineError;
use crate::inventory::InventoryError;
use crate::Engine;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// the request is malformed: bad JSON, unknown fields, a bad id or MAC.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("unknown machine `{key}`")]
    UnknownMachine {
        key: String,
        suggestions: Vec<String>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// the request conflicts with current state (a full profile).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// well-formed but not acceptable: an unknown profile, an invalid hostname, nothing to do.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    /// the disk is full: nothing was changed.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Internal(String),
    /// a device mayu drives for the request (a BMC) failed or refused.
    #[error("{0}")]
    BadGateway(String),
    /// a device mayu drives for the request (a BMC) did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownMachine { .. } | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A short, stable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnknownMachine { .. } => "unknown_machine",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable(_) => "invalid",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::InsufficientStorage(_) => "insufficient_storage",
            ApiError::Internal(_) => "internal",
            ApiError::BadGateway(_) => "bmc_failed",
            ApiError::GatewayTimeout(_) => "bmc_timeout",
        }
    }

    /// Maps an engine error, looking up close ids when a machine is unknown.
    pub fn from_engine(e: EngineError, engine: &Engine) -> ApiError {
        match e {
            EngineError::UnknownMachine(key) => ApiError::unknown_machine(key, engine),
            EngineError::UnknownProfile { .. } | EngineError::Invalid(_) => {
                ApiError::Unprocessable(e.to_string())
            }
            EngineError::ProfileFull { .. } => ApiError::Conflict(e.to_string()),
            EngineError::Id(_) => ApiError::BadRequest(e.to_string()),
            EngineError::Inventory(InventoryError::NoAudit) => ApiError::Unavailable(e.to_string()),
            // A shared inventory: someone else was first, or the store is out of reach. The
            // reason is the client's to see; nothing was changed.
            EngineError::Inventory(InventoryError::Conflict(_)) => {
                ApiError::Conflict(format!("{e}; nothing was changed, try again"))
            }
            EngineError::Inventory(InventoryError::Unavailable(_)) => {
                ApiError::Unavailable(format!("{e}; nothing was changed"))
            }
            EngineError::Unreadable { .. } | EngineError::AlreadyKnown { .. } => {
                ApiError::Conflict(e.to_string())
            }
            // Storage failures: the detail (paths, OS errors) goes to the log, not the client.
            EngineError::Inventory(ref inv) => {
                tracing::error!(error = %e, "inventory write failed");
                if inv.storage_full() {
                    ApiError::InsufficientStorage(
                        "the inventory's disk is full; nothing was changed".into(),
                    )
                } else {
                    ApiError::Unavailable(
                        "the inventory cannot be written right now; nothing was changed (see the server log)".into(),
                    )
                }
            }
        }
    }

    pub fn unknown_machine(key: String, engine: &Engine) -> ApiError {
        let suggestions = engine.suggest(&key);
        ApiError::UnknownMachine { key, suggestions }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "api request failed");
        }
        let (detail, suggestions) = match &self {
            ApiError::UnknownMachine { key, suggestions } => {
                let mut d = format!("no machine has the id or MAC `{key}`");
                if suggestions.is_empty() {
                    d.push_str("; list machines with GET /api/v1/machines");
                } else {
                    d.push_str(&format!("; did you mean {}?", suggestions.join(", ")));
                }
                (d, suggestions.clone())
            }
            other => (other.to_string(), Vec::new()),
        };
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.code().to_string(),
                detail,
                suggestions,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mayu\""),
            );
        }
        resp
    }
}
