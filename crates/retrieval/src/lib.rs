//! `contrastive-retrieval`: what a trained embedding is used for and judged by.
//!
//! - [`KnnClassifier`]: the weighted k-nearest-neighbour vote of Wu et al. (2018), the
//!   protocol of benchmark W1 (cosine similarity, `k = 200`, weights `exp(sim / 0.1)`).
//! - [`LinearProbe`]: a linear classifier trained on frozen features, the standard
//!   evaluation of self-supervised representations.
//! - [`search`]: exact top-k by cosine, inner product or L2, in batched matrix products;
//!   [`EmbeddingStore`]: vectors with ids and the model's identity, saved as
//!   `.safetensors`, exported as `.npy`; [`HnswIndex`]: approximate search for large stores.
//! - [`Collection`]: a collection that grows by inserts and answers top-k queries with an
//!   optional label filter, whatever holds it; [`LocalCollection`] is the local store (and
//!   its index), the `contrastive-pgvector` crate a PostgreSQL database.
//! - [`retrieval_metrics`] (precision@1, recall@k, R-precision, MAP@R), [`KMeans`]
//!   (k-means++, seeded restarts), [`nmi`], [`ari`], [`clustering_accuracy`] (Hungarian
//!   matching), [`alignment`] and [`uniformity`].
//! - [`pca_2d`] and [`tsne_2d`]: two-dimensional maps of embeddings for pictures.
//! - [`frame_retrieval`]: for video, same-video recall@k outside the query's scene,
//!   same-scene recall@1 outside its moment, and clip-to-video recall@1.
//!
//! ```
//! use contrastive_retrieval::KnnClassifier;
//! use contrastive_tensor::Tensor;
//! let train = Tensor::from_slice(&[1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9]).view([4, 2]);
//! let labels = Tensor::from_slice(&[0i64, 0, 1, 1]);
//! let queries = Tensor::from_slice(&[0.8f32, 0.2, 0.2, 0.8]).view([2, 2]);
//! let knn = KnnClassifier::new(3, 0.1)?;
//! let predicted = knn.predict(&train, &labels, &queries, 2)?;
//! assert_eq!(Vec::<i64>::try_from(&predicted).unwrap(), [0, 1]);
//! # Ok::<(), contrastive_retrieval::Error>(())
//! ```

mod collection;
mod error;
mod hnsw;
mod item;
mod kmeans;
mod knn;
mod linear_probe;
mod maps;
mod metrics;
mod prefilter;
mod scoring;
mod search;
mod store;
mod video;

pub use crate::collection::{Collection, CollectionInfo, Hit, LocalCollection, held_items};
pub use crate::error::{Error, Result};
pub use crate::hnsw::{HnswConfig, HnswIndex};
pub use crate::item::Item;
pub use crate::kmeans::{Clustering, KMeans};
pub use crate::knn::{KnnClassifier, accuracy};
pub use crate::linear_probe::{LinearProbe, LinearProbeReport};
pub use crate::maps::{pca_2d, tsne_2d};
pub use crate::metrics::{
    RetrievalReport, alignment, ari, clustering_accuracy, hungarian, neighbour_recall, nmi,
    retrieval_metrics, uniformity,
};
pub use crate::search::{Metric, Neighbours, normalize, search};
pub use crate::store::{EmbeddingStore, Preprocess, StoreInfo, StoredVideo};
pub use crate::video::{FrameLabels, FrameRetrieval, frame_retrieval};
