//! `contrastive-losses`: the losses that pull positives together and push negatives apart.
//!
//! Planned (issue #5): margin contrastive, triplet with miners, InfoNCE / NT-Xent (chunked for
//! large batches), SupCon and the MoCo queue. The crate has no public items yet.
