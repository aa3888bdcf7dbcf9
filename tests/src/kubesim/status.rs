//! Failures as the API server reports them: `Status` objects with an HTTP code and a reason.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::resource::ResourceType;

/// A failed API request, rendered as a `meta/v1` `Status`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApiError {
    /// HTTP status code.
    pub(crate) code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, ...).
    pub(crate) reason: &'static str,
    /// Human-readable message.
    pub(crate) message: String,
    /// `details` of the Status, if any.
    pub(crate) details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        ApiError {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn about(mut self, rt: &ResourceType, name: &str) -> Self {
        let mut details = json!({ "name": name, "kind": rt.plural });
        if !rt.group.is_empty() {
            details["group"] = json!(rt.group);
        }
        self.details = Some(details);
        self
    }

    /// 404 for an object that does not exist.
    pub(crate) fn not_found(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", rt.group_resource());
        ApiError::new(404, "NotFound", message).about(rt, name)
    }

    /// 404 for a path the server does not serve.
    pub(crate) fn no_such_path() -> Self {
        let mut error = ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource".to_string(),
        );
        error.details = Some(json!({}));
        error
    }

    /// 409 for a create of an object that exists.
    pub(crate) fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", rt.group_resource());
        ApiError::new(409, "AlreadyExists", message).about(rt, name)
    }

    /// 409 for a write based on a stale resourceVersion or UID.
    pub(crate) fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            rt.group_resource()
        );
        ApiError::new(409, "Conflict", message).about(rt, name)
    }

    /// 422 for an object that fails validation.
    pub(crate) fn invalid(rt: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!("{} \"{name}\" is invalid: {why}", rt.kind);
        ApiError::new(422, "Invalid", message).about(rt, name)
    }

    /// 400 for a malformed request.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message.into())
    }

    /// 410 for a resourceVersion or continue token older than the kept history.
    pub(crate) fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message.into())
    }

    /// 405 for a verb the path does not support.
    pub(crate) fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_string(),
        )
    }

    /// 415 for a body in a format the server does not read.
    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// The `Status` object.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(self.to_status())).into_response()
    }
}
