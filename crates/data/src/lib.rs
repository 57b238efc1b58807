//! `contrastive-data`: dataset formats and downloads, without any tensor dependency, so that
//! xtask can use it without building libtorch.
//!
//! Planned (issue #3): readers for IDX (MNIST, Fashion-MNIST), CIFAR-10/100, STL-10, image
//! folders and video, checksummed and resumable downloads. The crate has no public items yet.
