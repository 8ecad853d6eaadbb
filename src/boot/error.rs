//! The boot port's one error type: a status and a JSON body `{error, detail}` with the reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct BootError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
}

impl BootError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> BootError {
        BootError {
            status,
            error,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> BootError {
        Self::new(StatusCode::BAD_REQUEST, "bad request", detail)
    }

    /// The same answer for an unknown machine and a wrong token, so neither is revealed.
    pub fn forbidden() -> BootError {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a valid machine id and its token are required",
        )
    }

    pub fn not_found(detail: impl Into<String>) -> BootError {
        Self::new(StatusCode::NOT_FOUND, "not found", detail)
    }

    pub fn internal(detail: impl Into<String>) -> BootError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", detail)
    }
}

impl From<crate::engine::EngineError> for BootError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        match e {
            E::UnknownMachine(_) => BootError::forbidden(),
            E::Id(e) => BootError::bad_request(e.to_string()),
            E::Invalid(d) => BootError::bad_request(d),
            // Machine-facing: say what to do, never a server path.
            E::Unreadable { .. } => {
                tracing::warn!(error = %e, "registration refused: the machine's file is unreadable");
                BootError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "this machine's inventory record is unreadable; an operator must repair it",
                )
            }
            E::Inventory(crate::inventory::InventoryError::Conflict(ref why)) => BootError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("changed elsewhere first ({why}); ask again"),
            ),
            E::Inventory(ref inv) => {
                tracing::error!(error = %e, "inventory write failed");
                let status = if inv.storage_full() {
                    StatusCode::INSUFFICIENT_STORAGE
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                BootError::new(
                    status,
                    "unavailable",
                    "the inventory cannot be written right now",
                )
            }
            other => BootError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for BootError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "detail": self.detail });
        (self.status, Json(body)).into_response()
    }
}
