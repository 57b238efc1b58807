//! Errors: what stops the service from starting, and what a request gets back.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model or the collection could not be opened, or they do not belong together.
    #[error("{0}")]
    Open(String),
    /// An error from the collection.
    #[error(transparent)]
    Collection(#[from] contrastive_retrieval::Error),
    /// An error from loading the model or the run.
    #[error(transparent)]
    Trainer(#[from] contrastive_trainer::Error),
}

/// A failed request: an HTTP status and a message, sent as `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status (4xx for the caller's input, 503 while the database is down).
    pub status: StatusCode,
    /// What went wrong, in words.
    pub message: String,
}

impl ApiError {
    /// A 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<contrastive_retrieval::Error> for ApiError {
    fn from(e: contrastive_retrieval::Error) -> Self {
        use contrastive_retrieval::Error as E;
        let status = match &e {
            E::Invalid { .. } | E::Shape { .. } | E::NonFinite { .. } => StatusCode::BAD_REQUEST,
            E::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<contrastive_trainer::Error> for ApiError {
    fn from(e: contrastive_trainer::Error) -> Self {
        let status = match &e {
            contrastive_trainer::Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            contrastive_trainer::Error::MissingData { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!("{}: {}", self.status, self.message);
        }
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}
