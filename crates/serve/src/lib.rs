//! `contrastive-serve`: similar-image search as a long-running service over a
//! [`Collection`] (a local store or PostgreSQL + pgvector), with the model loaded once.
//!
//! The JSON API (every `/api` route asks for `Authorization: Bearer TOKEN` when a token is
//! set; ids are percent-encoded in paths):
//!
//! | Route | What it does |
//! |---|---|
//! | `GET /api/health` | `{"status": "ok", "items": N, ...}`, or 503 while the database is down |
//! | `POST /api/search` | a multipart form (`image` file, optional `k`, `label`) or JSON `{"id", "k", "label"}` -> `{"hits": [{"id", "source", "label", "score"}]}` |
//! | `GET /api/items/{id}` | the item |
//! | `GET /api/items/{id}/image?size=S` | its image as a PNG thumbnail (longer side at most S, default 160) |
//! | `POST /api/items` | a multipart form of `image` files (and an optional `label`): embedded and added |
//! | `DELETE /api/items/{id}` | removes the item |
//! | `GET /api/clusters?k=K&per=P` | k-means of the collection: the P items nearest each centre |
//!
//! `GET /` is a web page over the same API: drop or pick an image, see its neighbours,
//! click one to search from it, see the collection's clusters.
//!
//! Bad input never stops the service: an upload that is not an image, is truncated, too
//! large or declares a huge size, `k = 0`, an unknown id or label each get a 4xx with a
//! message (`{"error": "..."}`); a database that is down gets 503 until it is back.
//!
//! ```no_run
//! use std::sync::Arc;
//! use contrastive_retrieval::LocalCollection;
//! use contrastive_serve::{Limits, Service};
//! let collection = LocalCollection::open("runs/a/store.safetensors".as_ref(), None)?;
//! let service = Service::open(
//!     Box::new(collection),
//!     "runs/a/model.safetensors".as_ref(),
//!     None,
//!     "runs/a/uploads".into(),
//!     Limits::default(),
//!     None,
//! )?;
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     contrastive_serve::serve(listener, Arc::new(service), std::future::pending()).await
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod api;
mod error;
mod service;

pub use crate::api::router;
pub use crate::error::{ApiError, Error};
pub use crate::service::{Limits, Service};

use std::future::Future;
use std::sync::Arc;

/// Serves `service` on `listener` until `shutdown` completes (requests in flight finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service))
        .with_graceful_shutdown(shutdown)
        .await
}
