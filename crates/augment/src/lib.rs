//! `contrastive-augment`: image operations and multi-view presets.
//!
//! Planned (issue #4): seeded crops, flips, rotations, colour jitter, grayscale, blur and
//! solarize, the SimCLR, MoCo v2, BYOL and multi-crop presets, and a parallel multi-view
//! batch pipeline. The crate has no public items yet.
