//! `contrastive-trainer`: training loops.
//!
//! Planned (issue #6): SimCLR, MoCo v2, triplet, pair, SupCon and temporal methods, optimisers
//! and schedules, atomic checkpoints with exact resume, metrics and plots. The crate has no
//! public items yet.
