//! API errors: a status, a stable code and a message, always as a JSON body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use shoal_proto::api::{error_code as code, ErrorBody};

use crate::token::TokenError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after_s: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }
    pub fn rate_limited(retry_after_s: u64) -> Self {
        ApiError {
            retry_after_s: Some(retry_after_s.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                code::RATE_LIMITED,
                "too many requests from this address",
            )
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let (status, c) = match e {
            TokenError::Malformed(_) | TokenError::BadAlgorithm => {
                (StatusCode::UNAUTHORIZED, code::TOKEN_MALFORMED)
            }
            TokenError::UnknownKey | TokenError::BadSignature => {
                (StatusCode::UNAUTHORIZED, code::TOKEN_INVALID)
            }
            TokenError::Expired | TokenError::NotYetValid => (StatusCode::UNAUTHORIZED, code::TOKEN_EXPIRED),
            TokenError::WrongStream => (StatusCode::FORBIDDEN, code::WRONG_STREAM),
            TokenError::OriginNotAllowed => (StatusCode::FORBIDDEN, code::ORIGIN_NOT_ALLOWED),
        };
        ApiError::new(status, c, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code.to_owned(), message: self.message };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
