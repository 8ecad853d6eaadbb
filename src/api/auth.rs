//! Bearer-token checks as extractors: [`ReadAccess`] for routes that only read, [`AdminAccess`]
//! for routes that change state or reveal rendered configs. 401 without a valid token, 403 when
//! the token's scope is too small. The token's name is the audit author.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};

use super::error::ApiError;
use super::ApiState;
use crate::tokens::{Caller, Scope};

fn caller(parts: &Parts, state: &ApiState) -> Result<Caller, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "this route needs a token: send `Authorization: Bearer <token>`".into(),
            )
        })?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?;
    state
        .tokens
        .authenticate(secret)
        .ok_or_else(|| ApiError::Unauthorized("the token is not known to this server".into()))
}

/// Any valid token.
pub struct ReadAccess(pub Caller);

/// A token with the admin scope.
pub struct AdminAccess(pub Caller);

impl AdminAccess {
    /// The audit author for changes made through this request.
    pub fn author(&self) -> String {
        self.0.name.clone()
    }
}

impl FromRequestParts<ApiState> for ReadAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        caller(parts, state).map(ReadAccess)
    }
}

impl FromRequestParts<ApiState> for AdminAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let c = caller(parts, state)?;
        if c.scope != Scope::Admin {
            return Err(ApiError::Forbidden(format!(
                "token `{}` has scope `{}`; this route needs an admin token",
                c.name,
                c.scope.as_str()
            )));
        }
        Ok(AdminAccess(c))
    }
}
