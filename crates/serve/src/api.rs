//! The HTTP layer: routes, the token check, the body limit, request parsing. Each
//! operation runs on a blocking thread (libtorch and the database client are blocking).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::error::ApiError;
use crate::service::Service;

/// The page at `/`.
const PAGE: &str = include_str!("page.html");

/// Neighbours a search returns unless told.
const DEFAULT_K: usize = 8;

/// The service's routes (see the crate's documentation).
pub fn router(service: Arc<Service>) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/search", post(search))
        .route("/items", post(add_items))
        .route("/items/{id}", get(item).delete(delete_item))
        .route("/items/{id}/image", get(thumbnail))
        .route("/clusters", get(clusters))
        .fallback(|| async { ApiError::not_found("no such API route") })
        .layer(middleware::from_fn_with_state(
            service.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .nest("/api", api)
        .layer(DefaultBodyLimit::max(service.limits.max_body))
        .with_state(service)
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    service: &Arc<Service>,
    work: impl FnOnce(&Service) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let service = service.clone();
    tokio::task::spawn_blocking(move || work(&service))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the request failed: {e}"),
            )
        })?
}

/// 401 unless the request carries the service's token (when it has one).
async fn require_token(
    State(service): State<Arc<Service>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &service.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this service needs its token: send the header `Authorization: Bearer TOKEN`",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(service): State<Arc<Service>>) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(&service, Service::health).await.map(Json)
}

/// A search from a stored item, as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchById {
    id: String,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    label: Option<String>,
}

fn default_k() -> usize {
    DEFAULT_K
}

/// A multipart form's image, `k` and `label` fields.
struct Form {
    images: Vec<(String, Vec<u8>)>,
    k: Option<usize>,
    label: Option<String>,
}

async fn read_form(mut multipart: Multipart) -> Result<Form, ApiError> {
    let bad =
        |e: axum::extract::multipart::MultipartError| ApiError::new(e.status(), e.body_text());
    let mut form = Form {
        images: Vec::new(),
        k: None,
        label: None,
    };
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "image" => {
                let name = field.file_name().unwrap_or("the upload").to_owned();
                form.images
                    .push((name, field.bytes().await.map_err(bad)?.to_vec()));
            }
            "k" => {
                let text = field.text().await.map_err(bad)?;
                form.k = Some(text.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!("k = {text:?} is not a whole number"))
                })?);
            }
            "label" => {
                let text = field.text().await.map_err(bad)?;
                form.label = Some(text).filter(|t| !t.is_empty());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field {other:?}: send image, k and label"
                )));
            }
        }
    }
    Ok(form)
}

fn is_multipart(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

async fn search(
    State(service): State<Arc<Service>>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hits = if is_multipart(&request) {
        let multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let mut form = read_form(multipart).await?;
        if form.images.len() != 1 {
            return Err(ApiError::bad_request(format!(
                "send one image to search with, not {}",
                form.images.len()
            )));
        }
        let (name, bytes) = form.images.remove(0);
        let k = form.k.unwrap_or(DEFAULT_K);
        blocking(&service, move |s| {
            let image = s.decode(&bytes, &name)?;
            s.search_image(image, k, form.label.as_deref())
        })
        .await?
    } else {
        let query: Result<Json<SearchById>, JsonRejection> = Json::from_request(request, &()).await;
        let Json(query) = query.map_err(|e| {
            ApiError::new(
                e.status(),
                format!(
                    "{}: send a multipart form with an image, or JSON {{\"id\": ..., \"k\": ...}}",
                    e.body_text()
                ),
            )
        })?;
        blocking(&service, move |s| {
            s.search_id(&query.id, query.k, query.label.as_deref())
        })
        .await?
    };
    Ok(Json(serde_json::json!({ "hits": hits })))
}

async fn item(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<contrastive_retrieval::Item>, ApiError> {
    blocking(&service, move |s| s.item(&id)).await.map(Json)
}

/// The `size` of a thumbnail.
#[derive(Debug, Deserialize)]
struct ThumbnailQuery {
    size: Option<u32>,
}

async fn thumbnail(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    Query(query): Query<ThumbnailQuery>,
) -> Result<Response, ApiError> {
    let size = query.size.unwrap_or(160);
    let png = blocking(&service, move |s| s.thumbnail(&id, size)).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

async fn add_items(
    State(service): State<Arc<Service>>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let multipart = multipart.map_err(|e| {
        ApiError::new(
            e.status(),
            format!("{}: send the images as a multipart form", e.body_text()),
        )
    })?;
    let form = read_form(multipart).await?;
    if form.images.is_empty() {
        return Err(ApiError::bad_request("the form holds no image field"));
    }
    let (items, added) = blocking(&service, move |s| {
        let decoded = form
            .images
            .into_iter()
            .map(|(name, bytes)| s.decode(&bytes, &name).map(|image| (bytes, image)))
            .collect::<Result<Vec<_>, _>>()?;
        s.add(decoded, form.label)
    })
    .await?;
    Ok(Json(serde_json::json!({ "items": items, "added": added })))
}

async fn delete_item(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(&service, move |s| s.delete(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `k` clusters and `per` items of each to show.
#[derive(Debug, Deserialize)]
struct ClustersQuery {
    k: Option<usize>,
    per: Option<usize>,
}

async fn clusters(
    State(service): State<Arc<Service>>,
    Query(query): Query<ClustersQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (k, per) = (query.k.unwrap_or(8), query.per.unwrap_or(6));
    let clusters = blocking(&service, move |s| s.clusters(k, per)).await?;
    Ok(Json(serde_json::json!({ "clusters": clusters })))
}
