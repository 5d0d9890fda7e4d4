//! Errors of the HTTPS API: a status and a JSON body with a stable code.
//!
//! ```json
//! {"code": "too_large", "message": "the value is 17000000 bytes, over the 16777216 bytes ...", "retryable": false}
//! ```
//!
//! `code` is one of the strings of [`code`] (never changes meaning), `message` says what went
//! wrong for a person, `retryable` whether the same request may succeed if sent again; a write
//! that may or may not have been applied names the node that minted it (`minter`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use quickv_core::wire::{ErrorKind, ErrorReply};

/// A failed request, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) retryable: bool,
    pub(crate) minter: Option<String>,
}

/// The stable code of each kind of node error, and the status it is answered with (the table
/// is core's, shared with the JavaScript client).
pub(crate) fn code(kind: ErrorKind) -> (StatusCode, &'static str) {
    let (status, code) = kind.code();
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code)
}

impl ApiError {
    /// An error of the API itself (not one a node answered).
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retryable: false, minter: None }
    }

    /// The request was malformed.
    pub(crate) fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// No such resource.
    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The node is stopping.
    pub(crate) fn stopping() -> ApiError {
        ApiError {
            retryable: true,
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the node is stopping")
        }
    }

    /// The answer, as JSON.
    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut body = serde_json::json!({ "code": self.code, "message": self.message, "retryable": self.retryable });
        if let Some(minter) = self.minter {
            body["minter"] = serde_json::Value::String(minter);
        }
        super::api::json(self.status, &body)
    }
}

impl From<ErrorReply> for ApiError {
    fn from(reply: ErrorReply) -> ApiError {
        let (status, code) = code(reply.kind);
        ApiError {
            status,
            code,
            retryable: reply.kind.is_retryable(),
            minter: reply.minter.map(|m| m.to_string()),
            message: reply.message,
        }
    }
}
