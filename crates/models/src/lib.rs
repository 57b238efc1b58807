//! `contrastive-models`: embedding networks.
//!
//! Planned (issue #6): the small CNN of benchmark W1, ResNet-18/34/50 with CIFAR and ImageNet
//! stems, projection and prediction heads, the momentum encoder, and checkpoints with
//! torchvision parameter names. The crate has no public items yet.
