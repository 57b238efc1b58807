//! `contrastive-samplers`: which items form a batch, without any tensor dependency.
//!
//! Planned (issue #5): multi-view, random pairs, triplets, P x K class-balanced and temporal
//! (video) samplers, seeded and epoch-based. The crate has no public items yet.
