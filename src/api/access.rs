//! Managing API tokens over the API (admin only): list names and scopes, add a token (its
//! secret is returned once), revoke one. Secrets are never listed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::auth::AdminAccess;
use super::responses::{CreatedToken, Revoked, TokenInfo};
use super::{blocking, ApiError, ApiJson, ApiState};
use crate::tokens::{Scope, TokenError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub scope: Scope,
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Duplicate(_) | TokenError::LastAdmin(_) => ApiError::Conflict(e.to_string()),
        TokenError::BadName(_) => ApiError::Unprocessable(e.to_string()),
        TokenError::Unknown(_) => ApiError::NotFound(e.to_string()),
        TokenError::Io { .. } | TokenError::Invalid { .. } => ApiError::Internal(e.to_string()),
    }
}

pub async fn list(_: AdminAccess, State(st): State<ApiState>) -> Json<Vec<TokenInfo>> {
    let tokens = st
        .tokens
        .names()
        .into_iter()
        .map(|(name, scope)| TokenInfo { name, scope })
        .collect();
    Json(tokens)
}

pub async fn add(
    who: AdminAccess,
    State(st): State<ApiState>,
    ApiJson(t): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let tokens = st.tokens.clone();
    let (name, scope) = (t.name.clone(), t.scope);
    let secret = blocking(move || tokens.add(&name, scope).map_err(token_error)).await?;
    // Not an inventory change, so no git commit; the event log records who did it.
    st.engine.say(
        crate::events::LogLevel::Info,
        format!(
            "API token `{}` ({}) added by {}",
            t.name,
            t.scope.as_str(),
            who.author()
        ),
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            name: t.name,
            scope: t.scope,
            secret,
        }),
    ))
}

pub async fn revoke(
    who: AdminAccess,
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let tokens = st.tokens.clone();
    let n = name.clone();
    blocking(move || tokens.remove(&n).map_err(token_error)).await?;
    st.engine.say(
        crate::events::LogLevel::Info,
        format!("API token `{name}` revoked by {}", who.author()),
    );
    Ok(Json(Revoked { revoked: name }))
}
