//! `contrastive-retrieval`: using embeddings.
//!
//! Planned (issue #7): embedding stores, exact and HNSW search, kNN and linear-probe
//! evaluation, k-means and clustering metrics, contact sheets and embedding maps. The crate
//! has no public items yet.
