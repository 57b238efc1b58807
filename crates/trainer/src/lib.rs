//! `contrastive-trainer`: turns a [`TrainConfig`] into a trained embedding network.
//!
//! - Methods, one file each behind the [`TrainMethod`] trait, their `[method]` keys in a
//!   settings struct per method ([`methods`] has them; [`MethodConfig`] is their enum):
//!   SimCLR, MoCo v2 (momentum encoder and queue), SupCon, triplet (with a miner) and
//!   margin-contrastive pairs, the last three on P x K class-balanced batches; temporal
//!   contrast for video (frames close in time are positives); and without negatives BYOL,
//!   SimSiam, Barlow Twins and VICReg; NNCLR (nearest neighbours from a support set);
//!   alignment and uniformity on the hypersphere.
//! - Data: the standard image sets, image folders, and video (files decoded by ffmpeg,
//!   folders of frames, or the generated demo set: [`ensure_demo`]), with [`VideoIndex`]
//!   saying where each frame comes from.
//! - [`Optimizer`]: SGD (momentum, Nesterov), LARS and AdamW, weight decay with batch-norm
//!   and biases optionally excluded, gradient clipping; [`learning_rate`]: linear warm-up
//!   and cosine decay.
//! - Mixed precision (bf16 where the device computes it natively) and channels-last by
//!   default; augmentation runs on other threads ahead of the model.
//! - A run directory: `config.toml`, `metrics.jsonl`, `checkpoints/last.safetensors`
//!   (written atomically every `run.checkpoint_every` steps and at each epoch end, holding
//!   model, optimiser, the method's state (MoCo's queue, BYOL's target...) and position: a resumed run continues exactly),
//!   `model.safetensors` with its config, `report.json`, `report.md`, and PNG charts of the
//!   loss (`loss.png`) and kNN (`knn.png`) curves.
//! - The kNN monitor each epoch and a final linear probe on the held-out split; for video,
//!   same-video recall outside the query's scene, clip recall and video-clustering NMI, and
//!   [`VideoCollection`] to find which video shows a frame, and when.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use contrastive_trainer::{TrainConfig, Trainer};
//!
//! let config = TrainConfig::load("configs/fmnist-simclr.toml".as_ref(), &["run.epochs=1".into()])?;
//! let mut trainer = Trainer::new(config, false)?;
//! let report = trainer.run(&mut (), &AtomicBool::new(false))?;
//! println!("kNN top-1 {:?}", report.evaluation.knn_top1);
//! # Ok::<(), contrastive_trainer::Error>(())
//! ```

mod baseline;
mod budget;
mod checkpoint;
mod config;
mod data;
mod error;
mod evaluation;
mod inference;
mod item_images;
mod lock;
mod memory;
pub mod methods;
mod metrics;
mod numerics;
mod optim;
mod plot;
mod run;
mod split;
mod standard;
mod video;
mod video_search;
mod views;

pub use crate::baseline::{
    GUIDE_SECTION, PixelComparison, loses_to_pixels, raw_pixel_baseline, worse_than_pixels,
};
pub use crate::budget::{
    BudgetInputs, BudgetPlan, CALIBRATION_STEPS, costs_from_monitor, costs_from_pass,
    parse_duration, plan_steps,
};
pub use crate::checkpoint::{Checkpoint, Position, checkpoint_path};
pub use crate::config::{
    DataConfig, DatasetName, EvalConfig, ModelSection, OptimizerConfig, OptimizerName, RunConfig,
    TrainConfig, view_transforms,
};
pub use crate::data::{RunData, load as load_data};
pub use crate::error::{Error, Result};
pub use crate::evaluation::{Evaluation, Features, Input, embed};
pub use crate::inference::{
    DatasetEmbedder, QueryEmbedder, embed_dataset, embed_query, evaluate_raw_pixels,
    evaluate_saved, evaluate_saved_against_pixels, model_identity,
};
pub use crate::item_images::{ItemImages, images_for_ids};
pub use crate::lock::RunLock;
pub use crate::memory::{StepMemory, measure_step_memory, parse_size};
pub use crate::methods::{
    Batch, MethodConfig, MethodSettings, Progress, RunFacts, Sampling, Setup, StepInputs,
    TrainMethod, temporal_masks,
};
pub use crate::metrics::{MetricsLog, Record, read as read_metrics};
pub use crate::numerics::{
    LOW_PRECISION_MARGIN, Numerics, NumericsChoice, Trial, cached_numerics, choose_numerics,
};
pub use crate::optim::{Optimizer, learning_rate};
pub use crate::plot::plot_run;
pub use crate::run::{Observer, Plan, Report, Trainer};
pub use crate::split::{SplitData, VideoIndex};
pub use crate::video::ensure_demo;
pub use crate::video_search::{FrameStoreUpdate, VideoCollection, VideoHit};
pub use crate::views::{LocalViews, ViewsConfig, recipe_transforms};
