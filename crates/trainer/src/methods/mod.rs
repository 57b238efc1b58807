//! The learning methods, one file each, behind one trait: the training loop (`run.rs`)
//! knows none of them by name. A method owns its state (a key or target encoder, a queue,
//! a predictor), says which views and batches it needs, computes its loss from a batch, and
//! updates its state around the optimiser's step; its state is saved in every checkpoint
//! and restored on resume, so a resumed run goes on exactly.
//!
//! Each method's `[method]` keys are a settings struct in its own file: serde reads them
//! (an unknown key is an error naming the keys the method takes), its `Default` holds every
//! default, and [`MethodSettings`] checks the values against the rest of the run and builds
//! the method. [`MethodConfig`] is the enum of them all, tagged by `name`.
//!
//! To add a method: write `methods/<name>.rs` with its settings struct (implementing
//! [`MethodSettings`], `Default`, serde) and a type that implements [`TrainMethod`], and add
//! one line to the `registry!` below.

mod labeled;
mod momentum;
mod predictor;

use std::collections::HashMap;

use contrastive_models::{EmbeddingModel, HeadKind, ModelConfig};
use contrastive_tensor::{Device, Tensor, nn::VarStore};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub use temporal::temporal_masks;

/// One prepared batch of views.
#[derive(Debug)]
pub struct Batch {
    /// The views in groups of one size, each `[V_g * B, C, H_g, W_g]` view-major, the groups
    /// in view order: one group unless the run adds smaller local views (multi-crop).
    pub groups: Vec<Tensor>,
    /// Images in the batch (`B`).
    pub images: i64,
    /// One label per view, view-major, when the method reads labels (for video: each
    /// frame's video).
    pub labels: Option<Tensor>,
    /// For video: each frame's index in its video, one per view.
    pub frames: Option<Tensor>,
}

impl Batch {
    /// The views of a batch that has a single size of view (every method but SimCLR and
    /// SupCon, whose configs refuse local views).
    pub fn single(&self) -> &Tensor {
        assert_eq!(
            self.groups.len(),
            1,
            "Batch::single: the method takes views of one size, got {} groups",
            self.groups.len()
        );
        &self.groups[0]
    }

    /// The first and second view of every image of a two-view batch.
    pub fn two_views(&self) -> (Tensor, Tensor) {
        let views = self.single();
        let half = views.size()[0] / 2;
        (views.narrow(0, 0, half), views.narrow(0, half, half))
    }

    /// The labels of a batch drawn for a method that reads them.
    pub fn labels(&self) -> &Tensor {
        self.labels
            .as_ref()
            .expect("methods that read labels get class-balanced batches")
    }
}

/// How a method wants its batches drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Images in a shuffled order, each once per epoch.
    Shuffled,
    /// P classes x K images per batch; the loss reads labels.
    ClassBalanced {
        /// Images of each class in a batch (K, `method.per_class`).
        per_class: usize,
    },
    /// Frames of a few videos per batch; the loss reads each frame's video (as its label)
    /// and index.
    VideoFrames {
        /// Frames of each video in a batch (`method.per_video`).
        per_video: usize,
        /// Frames at most this far apart are positives (`method.window`).
        window: usize,
    },
}

/// Where a run stands when a method updates its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Steps done before this one.
    pub step: u64,
    /// Steps the run takes in all.
    pub total: u64,
}

/// What the loop gives a method for one step's loss.
pub struct StepInputs<'a> {
    /// The batch: this rank's views, the global batch's labels and frames.
    pub batch: &'a Batch,
    /// The model being trained.
    pub model: &'a EmbeddingModel,
    /// Runs a model in training mode (under autocast) on this rank's views and returns every
    /// rank's `f32` embeddings in the global batch's view-major order, gradients kept.
    pub embed: &'a dyn Fn(&EmbeddingModel, &Tensor) -> Result<Tensor>,
    /// [`StepInputs::embed`] without gradient for a key or target encoder; with `true`, on
    /// several ranks the global batch's images are dealt out to the ranks in a fresh order
    /// first (MoCo's shuffled batch-norm), the embeddings coming back in the same order.
    pub encode: &'a dyn Fn(&EmbeddingModel, &Tensor, bool) -> Result<Tensor>,
    /// Whether batch-norm statistics span the global batch (`model.sync_bn` on several
    /// ranks).
    pub sync_bn: bool,
}

impl StepInputs<'_> {
    /// The first and the second view of a two-view batch through the model, each on its
    /// own (so batch-norm statistics never mix the views), as every rank's embeddings.
    pub fn each_view(&self) -> Result<(Tensor, Tensor)> {
        let (first, second) = self.batch.two_views();
        Ok((
            (self.embed)(self.model, &first)?,
            (self.embed)(self.model, &second)?,
        ))
    }

    /// Every view of the batch through `model`, group by group (batch-norm statistics stay
    /// within one resolution), concatenated view-major.
    pub fn all_views(&self, model: &EmbeddingModel) -> Result<Tensor> {
        let groups = self
            .batch
            .groups
            .iter()
            .map(|g| (self.embed)(model, g))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&groups, 0))
    }
}

/// A learning method, as the training loop drives it.
pub trait TrainMethod: std::fmt::Debug + Send {
    /// Views per image the method takes (`data.local_views` come on top).
    fn views(&self) -> usize {
        2
    }

    /// How batches are drawn.
    fn sampling(&self) -> Sampling {
        Sampling::Shuffled
    }

    /// The projection head the model trains with.
    fn head(&self) -> HeadKind {
        HeadKind::Simclr
    }

    /// Builds what the method keeps beside the model (a key or target encoder starting as
    /// a copy of `online`, a predictor), once the model exists; draws from libtorch's
    /// generators only here, under the run's seed.
    fn attach(&mut self, online: &VarStore, model: ModelConfig) -> Result<()> {
        let _ = (online, model);
        Ok(())
    }

    /// Before the step's forward pass (momentum updates of a key or target encoder).
    fn before_step(&mut self, online: &VarStore, progress: Progress) -> Result<()> {
        let _ = (online, progress);
        Ok(())
    }

    /// The loss of one batch, a scalar to minimise.
    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor>;

    /// After the optimiser's step (enqueueing this step's keys).
    fn after_step(&mut self) -> Result<()> {
        Ok(())
    }

    /// Everything the method keeps, as named tensors: saved in checkpoints, sent from rank
    /// 0 to every rank at the start, restored on resume. Names must not start with
    /// `model.` or `optim.`.
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Puts back a state [`TrainMethod::state`] named, `saved` holding each of its names
    /// (with the shape and kind checked).
    fn restore(&mut self, saved: &HashMap<String, Tensor>) -> Result<()> {
        let _ = saved;
        Ok(())
    }

    /// The variables the optimiser trains besides the model's (a predictor), named.
    fn trainable(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The variable stores of the encoders the method keeps, so the run can give their
    /// convolutions the model's memory layout.
    fn encoders(&self) -> Vec<&VarStore> {
        Vec::new()
    }
}

/// What building a method may need besides its `[method]` section.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Width of the model's output (`model.head_out`).
    pub dim: i64,
    /// Images in a global batch.
    pub batch_size: usize,
    /// Images in the training set.
    pub dataset_len: usize,
    /// Where the run computes.
    pub device: Device,
}

/// What a method's settings are checked against: the rest of the run's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFacts {
    /// Images in a global batch (`data.batch_size`).
    pub batch_size: usize,
    /// Whether the dataset is made of videos.
    pub video: bool,
}

/// A method's `[method]` settings: checked, then built into the method.
pub trait MethodSettings {
    /// Checks every value against the rest of the run; an error names the key
    /// (`method.<key>`) and what it allows.
    fn check(&self, run: &RunFacts) -> Result<()>;

    /// The method, ready to attach to a model.
    fn build(&self, setup: &Setup) -> Result<Box<dyn TrainMethod>>;

    /// Whether the method takes multi-crop's local views (`data.local_views`); the others
    /// get views of one size.
    fn takes_local_views(&self) -> bool {
        false
    }
}

/// Declares each method's module and [`MethodConfig`], one variant per method:
/// `"name" => Variant(module::Settings)`.
macro_rules! registry {
    ($($name:literal => $variant:ident($module:ident::$settings:ident),)*) => {
        $(
            pub mod $module;
            pub use $module::$settings;
        )*

        /// `[method]`: the learning method, by `name`, with its own keys (kebab-case names,
        /// as configs spell them). A key another method takes is an error.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "name")]
        pub enum MethodConfig {
            $(
                #[doc = concat!("`", $name, "`: see [`", stringify!($settings), "`].")]
                #[serde(rename = $name)]
                $variant($settings),
            )*
        }

        impl MethodConfig {
            /// Every method's name, as `method.name` takes it.
            pub const NAMES: &[&str] = &[$($name),*];

            /// The method called `name`, with its defaults.
            pub fn named(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant(<$settings>::default())),)*
                    _ => None,
                }
            }

            /// This method's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)*
                }
            }

            /// The method `table` (a `[method]` section) names, read from its other keys;
            /// an error names the key at fault (`method.temperature: invalid type...`).
            fn from_table<E: serde::de::Error>(mut table: toml::Table) -> std::result::Result<Self, E> {
                let name = match table.remove("name") {
                    Some(toml::Value::String(name)) => name,
                    Some(other) => return Err(E::custom(format!("method.name: {other} is not a name"))),
                    None => return Err(E::missing_field("name")),
                };
                let keys = toml::Value::Table(table);
                let at_fault = |e: serde_path_to_error::Error<toml::de::Error>| {
                    let key = e.path().to_string();
                    let message = e.into_inner().message().to_owned();
                    E::custom(if key == "." {
                        format!("method {name}: {message}")
                    } else {
                        format!("method.{key}: {message}")
                    })
                };
                match name.as_str() {
                    $($name => serde_path_to_error::deserialize(keys)
                        .map(Self::$variant)
                        .map_err(at_fault),)*
                    other => Err(E::unknown_variant(other, Self::NAMES)),
                }
            }

            /// The settings behind the name.
            pub fn settings(&self) -> &dyn MethodSettings {
                match self {
                    $(Self::$variant(settings) => settings,)*
                }
            }
        }
    };
}

// Every method: the one list a new method joins.
registry! {
    "simclr" => Simclr(simclr::SimclrSettings),
    "moco-v2" => MocoV2(moco::MocoSettings),
    "supcon" => Supcon(supcon::SupconSettings),
    "triplet" => Triplet(triplet::TripletSettings),
    "pairs" => Pairs(pairs::PairsSettings),
    "temporal" => Temporal(temporal::TemporalSettings),
    "byol" => Byol(byol::ByolSettings),
    "simsiam" => Simsiam(simsiam::SimsiamSettings),
    "barlow-twins" => BarlowTwins(barlow_twins::BarlowTwinsSettings),
    "vicreg" => Vicreg(vicreg::VicregSettings),
    "nnclr" => Nnclr(nnclr::NnclrSettings),
    "hypersphere" => Hypersphere(hypersphere::HypersphereSettings),
}

impl<'de> Deserialize<'de> for MethodConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        Self::from_table(table)
    }
}

impl MethodConfig {
    /// Checks the method's values against the rest of the run.
    pub fn check(&self, run: &RunFacts) -> Result<()> {
        self.settings().check(run)
    }

    /// The method, built.
    pub fn build(&self, setup: &Setup) -> Result<Box<dyn TrainMethod>> {
        self.settings().build(setup)
    }
}

/// What [`TrainMethod::attach`] built, or an error: the method was used before it.
pub(crate) fn attached<T>(part: &Option<T>) -> Result<&T> {
    part.as_ref().ok_or_else(|| {
        Error::Run("the method was used before attach() built its encoder or predictor".into())
    })
}

/// `saved[name]`, or an error naming the missing tensor.
pub(crate) fn saved<'a>(saved: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    saved
        .get(name)
        .ok_or_else(|| Error::Run(format!("the saved method state has no {name:?}")))
}

/// Copies `saved`'s tensors into the same-named variables of `vs` (prefixed `prefix`).
pub(crate) fn restore_store(
    vs: &VarStore,
    prefix: &str,
    state: &HashMap<String, Tensor>,
) -> Result<()> {
    contrastive_tensor::no_grad(|| {
        for (name, mut variable) in vs.variables() {
            variable.f_copy_(saved(state, &format!("{prefix}{name}"))?)?;
        }
        Ok(())
    })
}

/// Every variable of `vs`, named with `prefix`.
pub(crate) fn named(vs: &VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let mut all: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (format!("{prefix}{n}"), t))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}
