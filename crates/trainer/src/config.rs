//! The run configuration: a TOML file whose every key is known, every value checked.

use std::path::PathBuf;

use contrastive_models::{Backbone, Stem};
use contrastive_tensor::{Device, Precision, parse_device};
use serde::{Deserialize, Serialize};

use crate::error::{area_range, at_least, in_range, invalid, positive};
use crate::methods::{MethodConfig, RunFacts};
use crate::views::{LocalViews, ViewsConfig, recipe_transforms};
use crate::{Error, Result};

/// A whole training run, as `configs/*.toml` spell it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Where the run goes, how long, on what.
    pub run: RunConfig,
    /// What it trains on.
    pub data: DataConfig,
    /// Changes to the view recipe `data.augment` names.
    #[serde(default)]
    pub views: ViewsConfig,
    /// The network.
    #[serde(default)]
    pub model: ModelSection,
    /// The learning method and its loss, with the keys of that method alone.
    pub method: MethodConfig,
    /// The optimiser and schedule.
    pub optimizer: OptimizerConfig,
    /// The evaluations during and after training.
    #[serde(default)]
    pub eval: EvalConfig,
}

/// `[run]`: the run directory, length, device and numerics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The run directory (config.toml, metrics.jsonl, checkpoints/, plots).
    pub out: PathBuf,
    /// Passes over the training set.
    pub epochs: usize,
    /// Seed of everything random: initialisation, batch order, augmentations.
    #[serde(default)]
    pub seed: u64,
    /// `auto`, `cpu`, `cuda`, `cuda:N`, `mps` (checked when the config loads; whether the
    /// machine has it, when the run starts).
    #[serde(default = "auto")]
    pub device: String,
    /// `auto` (the fastest of fp32 and bf16, measured on the run's own model; see
    /// [`choose_numerics`](crate::choose_numerics)), `fp32`, `bf16`, `fp16`. A run writes
    /// what it chose into its config.toml.
    #[serde(default = "auto")]
    pub precision: String,
    /// `auto` (measured, as `precision`), `on` or `off`: the channels-last memory layout.
    #[serde(default = "auto")]
    pub channels_last: String,
    /// CPU threads for libtorch and augmentation (0: libtorch's default).
    #[serde(default)]
    pub threads: usize,
    /// Write a checkpoint every this many steps (0: only at epoch ends).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Stop after this many steps in all (0: no limit); for smoke tests and benchmarks.
    #[serde(default)]
    pub max_steps: usize,
    /// The memory a step may use, such as `"12GiB"` (default: what the machine has free).
    /// A batch whose measured need exceeds it is refused before the run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    /// The time the run may take, evaluations included, such as `"12m"` or `"1h30m"`: the
    /// run times its first steps and then takes as many steps as fit (at most `epochs`'
    /// worth; see [`plan_steps`](crate::plan_steps)). Absent: `epochs` decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget: Option<String>,
    /// How long a data-parallel rank waits for its peers (joining, every collective) before
    /// it gives up with an error that names the lost ranks, such as `"5m"`.
    #[serde(default = "default_dist_timeout")]
    pub dist_timeout: String,
}

fn default_dist_timeout() -> String {
    "5m".into()
}

/// `[data]`: the dataset, its normalisation and the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// What the images are.
    pub dataset: DatasetName,
    /// The dataset's folder (default: where `cargo xtask download` puts it; required for
    /// `folder` and `video`). A video folder holds the videos, or `train/` and `test/`
    /// folders of them.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// For `folder`: a folder of held-out images for the kNN monitor (class sub-folders).
    #[serde(default)]
    pub test_dir: Option<PathBuf>,
    /// For `folder` and video: the side every image (frame) is resized to.
    #[serde(default)]
    pub image_size: Option<usize>,
    /// For video: frames per second taken from each video (default: every frame).
    #[serde(default)]
    pub fps: Option<f64>,
    /// Images per batch (each gives one view per view of the method).
    pub batch_size: usize,
    /// The view recipe: `w1`, `simclr`, `simclr-blur`, `moco-v2`, `byol` or `none`.
    pub augment: String,
    /// Small crops added to each image's views (multi-crop, Caron et al., SwAV, 2020):
    /// with simclr every view of an image is a positive of every other; with supcon they
    /// are more views of its label. Other methods take none (default 0).
    #[serde(default)]
    pub local_views: usize,
    /// Side of the local views (default: 3/7 of the image side, as SwAV's 96 of 224, and at
    /// least 4).
    #[serde(default)]
    pub local_size: Option<usize>,
    /// Area range `[min, max]` of the local crops (default SwAV's `[0.05, 0.14]`).
    #[serde(default)]
    pub local_scale: Option<[f64; 2]>,
    /// Where the views are made: `cpu` (image by image on the CPU's threads, ahead of the
    /// model; the default) or `device` (the whole batch as tensor operations on `run.device`,
    /// the same parameters; pays on a GPU). `device` needs images of one size.
    #[serde(default = "default_augment_on")]
    pub augment_on: String,
    /// Per-channel mean for normalisation (default: the dataset's published values, or
    /// measured from a folder's or video's images; the run directory's config.toml records
    /// the values used).
    #[serde(default)]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation (defaulted and recorded as `mean`).
    #[serde(default)]
    pub std: Option<Vec<f32>>,
    /// Folder datasets: the channels every image is brought to, 1 (gray) or 3 (colour).
    /// Default: what most of the folder's images have (announced when they differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Folder datasets: `skip` (the default) leaves out an unreadable image with a warning
    /// naming it; `fail` stops at the first one.
    #[serde(default = "default_on_bad_file")]
    pub on_bad_file: String,
}

/// `data.dataset`: a standard set, a folder of images, or videos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// Fashion-MNIST (found where `cargo xtask download` puts it, or in `data.dir`).
    FashionMnist,
    /// MNIST.
    Mnist,
    /// CIFAR-10.
    Cifar10,
    /// CIFAR-100 (fine labels).
    Cifar100,
    /// A folder of images (`data.dir`; class sub-folders give labels).
    Folder,
    /// A folder of video files (`data.dir`).
    Video,
    /// The generated demo videos, made on first use.
    VideoDemo,
}

impl DatasetName {
    /// The name configs give it (`fashion-mnist`...).
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Folder => "folder",
            DatasetName::Video => "video",
            DatasetName::VideoDemo => "video-demo",
        }
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[model]`: backbone and projection head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `small-cnn`, `resnet18`, `resnet34` or `resnet50`.
    #[serde(default = "default_backbone", with = "by_name")]
    pub backbone: Backbone,
    /// ResNet stem: `cifar` (3x3, no max-pool) or `imagenet`.
    #[serde(default = "default_stem")]
    pub stem: Stem,
    /// Hidden width of the projection head.
    #[serde(default = "default_head_hidden")]
    pub head_hidden: i64,
    /// Output width of the projection head (the embedding the loss sees).
    #[serde(default = "default_head_out")]
    pub head_out: i64,
    /// In a data-parallel run, batch-norm statistics over the global batch (every rank's
    /// images) instead of each rank's own, as `torch.nn.SyncBatchNorm`: the run then
    /// computes what one process with the whole batch would. No effect on one process.
    #[serde(default)]
    pub sync_bn: bool,
}

/// `[optimizer]`: optimiser, learning-rate schedule, clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// `sgd`, `lars` or `adamw`.
    pub name: OptimizerName,
    /// Peak learning rate.
    pub lr: f64,
    /// Momentum (sgd, lars) or beta1 (adamw).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Nesterov momentum (sgd).
    #[serde(default)]
    pub nesterov: bool,
    /// Weight decay (decoupled for adamw).
    #[serde(default)]
    pub weight_decay: f64,
    /// No weight decay (and no LARS scaling) for batch-norm parameters and biases.
    #[serde(default)]
    pub exclude_bn_bias: bool,
    /// Linear warm-up length in epochs (may be fractional).
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Clip the global gradient norm to this (none when absent).
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// LARS trust coefficient.
    #[serde(default = "default_trust")]
    pub trust_coefficient: f64,
}

/// `optimizer.name`: the update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// SGD with momentum (optionally Nesterov's).
    Sgd,
    /// LARS (You et al., 2017): SGD with a layer-wise trust ratio.
    Lars,
    /// AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay.
    Adamw,
}

/// Serde through a type's names (`Display` and `FromStr`): `resnet18` for a [`Backbone`].
mod by_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<T: std::fmt::Display, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(super) fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: std::str::FromStr<Err: std::fmt::Display>,
        D: Deserializer<'de>,
    {
        String::deserialize(deserializer)?
            .parse()
            .map_err(D::Error::custom)
    }
}

/// `[eval]`: the kNN monitor and the final report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Run the kNN monitor every this many epochs (0: only after the last).
    #[serde(default = "one")]
    pub every_epochs: usize,
    /// Neighbours that vote.
    #[serde(default = "default_knn_k")]
    pub knn_k: usize,
    /// Temperature of the vote weights.
    #[serde(default = "default_knn_t")]
    pub knn_temperature: f64,
    /// Epochs of the final linear probe (0: skip it).
    #[serde(default = "default_probe_epochs")]
    pub linear_probe_epochs: usize,
    /// Evaluate at the end (kNN unless the last epoch measured it, and the linear probe);
    /// `false` for throughput measurements.
    #[serde(default = "yes")]
    pub r#final: bool,
}

fn auto() -> String {
    "auto".into()
}
fn default_checkpoint_every() -> usize {
    500
}
fn default_on_bad_file() -> String {
    "skip".into()
}

fn default_augment_on() -> String {
    "cpu".into()
}
fn default_backbone() -> Backbone {
    Backbone::SmallCnn
}
fn default_stem() -> Stem {
    Stem::Cifar
}
fn default_head_hidden() -> i64 {
    256
}
fn default_head_out() -> i64 {
    128
}
fn default_momentum() -> f64 {
    0.9
}
fn default_trust() -> f64 {
    1e-3
}
fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn default_knn_k() -> usize {
    200
}
fn default_knn_t() -> f64 {
    0.1
}
fn default_probe_epochs() -> usize {
    30
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            backbone: default_backbone(),
            stem: default_stem(),
            head_hidden: default_head_hidden(),
            head_out: default_head_out(),
            sync_bn: false,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every_epochs: one(),
            knn_k: default_knn_k(),
            knn_temperature: default_knn_t(),
            linear_probe_epochs: default_probe_epochs(),
            r#final: yes(),
        }
    }
}

impl RunConfig {
    /// The device, the precision and whether to use the channels-last layout, for a model
    /// used outside training. A run records the precision and layout it measured to be
    /// fastest in its config.toml (see [`choose_numerics`](crate::choose_numerics)), and
    /// `auto` means those when `out` holds such a record; otherwise bf16 where the device
    /// computes it natively, and channels-last. An absent device is an error.
    pub fn numerics(&self) -> Result<(Device, Precision, bool)> {
        let (device, mut precision, mut channels_last) = self.requested_numerics()?;
        // `auto` for a run's model: what that run chose, as its directory records it.
        let recorded = std::fs::read_to_string(self.out.join("config.toml"))
            .ok()
            .and_then(|text| run_section(&text).ok());
        if let Some(recorded) = recorded
            && let Ok((p, c)) = recorded.requested_precision_and_layout()
        {
            precision = precision.or(p);
            channels_last = channels_last.or(c);
        }
        Ok((
            device,
            precision.unwrap_or_else(|| Precision::fastest_for(device)),
            channels_last.unwrap_or(true),
        ))
    }

    /// The device, and the precision and layout as the config sets them (`None`: `auto`).
    pub fn requested_numerics(&self) -> Result<(Device, Option<Precision>, Option<bool>)> {
        let device = parse_device(&self.device)?;
        let (precision, channels_last) = self.requested_precision_and_layout()?;
        Ok((device, precision, channels_last))
    }

    /// The precision and layout as the config sets them (`None`: `auto`).
    pub fn requested_precision_and_layout(&self) -> Result<(Option<Precision>, Option<bool>)> {
        let precision = match self.precision.as_str() {
            "auto" => None,
            p => Some(p.parse()?),
        };
        let channels_last = match self.channels_last.as_str() {
            "auto" => None,
            layout => Some(layout != "off"),
        };
        Ok((precision, channels_last))
    }

    /// Sets the precision and layout explicitly, as a run records what it chose.
    pub fn set_numerics(&mut self, precision: Precision, channels_last: bool) {
        self.precision = precision.to_string();
        self.channels_last = if channels_last { "on" } else { "off" }.into();
    }
}

/// The `[run]` section of a whole config's TOML text (other sections are not checked).
pub(crate) fn run_section(text: &str) -> std::result::Result<RunConfig, toml::de::Error> {
    #[derive(Deserialize)]
    struct WithRun {
        run: RunConfig,
    }
    toml::from_str::<WithRun>(text).map(|c| c.run)
}

/// The view transforms of a run on `size`-pixel images: `views` of the recipe
/// `data.augment` names (cycling through its own views: BYOL has two), changed by `changes`,
/// then `data.local_views` local views. `none` makes views that are the images themselves.
pub fn view_transforms(
    data: &DataConfig,
    changes: &ViewsConfig,
    size: usize,
    views: usize,
) -> Result<Vec<std::sync::Arc<dyn contrastive_augment::Transform>>> {
    let local = LocalViews {
        count: data.local_views,
        side: data.local_side(size),
        crop_scale: data.local_crop_scale(),
    };
    recipe_transforms(&data.augment, changes, size, views, local)
}

impl DataConfig {
    /// The side of the local views for images of side `size` (by default 3/7 of it, at
    /// least 4 pixels, the least the small CNN takes).
    pub fn local_side(&self, size: usize) -> usize {
        self.local_size
            .unwrap_or_else(|| ((size as f64 * 3.0 / 7.0).round() as usize).max(4))
    }

    /// The area range of the local crops.
    pub fn local_crop_scale(&self) -> (f64, f64) {
        self.local_scale
            .map_or(contrastive_augment::presets::LOCAL_SCALE, |[a, b]| (a, b))
    }

    /// Whether the dataset is made of videos (`video` or `video-demo`).
    pub fn is_video(&self) -> bool {
        matches!(self.dataset, DatasetName::Video | DatasetName::VideoDemo)
    }
}

/// The widest projection head accepted (`model.head_hidden`, `model.head_out`).
const MAX_HEAD_WIDTH: f64 = 65_536.0;
/// The most CPU threads accepted (`run.threads`).
const MAX_THREADS: f64 = 1024.0;

fn choice(field: &'static str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value:?} is not one of {}", allowed.join(", ")),
        ))
    }
}

/// Checks that `run.device` names a device (whether this machine has it is known only when
/// the run starts).
fn device_spec(device: &str) -> Result<()> {
    let spec = device.trim().to_ascii_lowercase();
    let gpu_index = spec.strip_prefix("cuda:").map(str::parse::<usize>);
    if ["auto", "cpu", "cuda", "mps"].contains(&spec.as_str()) || matches!(gpu_index, Some(Ok(_))) {
        Ok(())
    } else {
        Err(invalid(
            "run.device",
            format!("{device:?} is not one of auto, cpu, cuda, cuda:N, mps"),
        ))
    }
}

impl TrainConfig {
    /// Parses TOML text and checks every value. Unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and checks a TOML file, after applying `overrides` (`section.key=value`, the
    /// value in TOML syntax or a bare string). An error in the file names the file and the
    /// user's own line; one that an override brings names the override.
    pub fn load(path: &std::path::Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let in_file = |e: Error| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        };
        if overrides.is_empty() {
            return Self::from_toml(&text).map_err(in_file);
        }
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::Config(format!("{}: {e}", path.display())))?;
        let file_alone = toml::from_str::<Self>(&text);
        let mut culprit = None;
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
            if culprit.is_none()
                && file_alone.is_ok()
                && let Err(e) = toml::from_str::<Self>(&toml::to_string(&table).expect("prints"))
            {
                culprit = Some((assignment, e));
            }
        }
        match Self::from_toml(&toml::to_string(&table).expect("a parsed table prints")) {
            Err(Error::Config(message)) => Err(match (culprit, file_alone) {
                (Some((assignment, e)), _) => {
                    Error::Config(format!("override {assignment:?}: {}", e.message()))
                }
                (None, Err(e)) => in_file(Error::Config(e.to_string())),
                (None, Ok(_)) => in_file(Error::Config(message)),
            }),
            result => result,
        }
    }

    /// The configuration as TOML (what the run directory's `config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("every config value has a TOML form")
    }

    /// Checks every value; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        let (run, data, model, method, opt, eval) = (
            &self.run,
            &self.data,
            &self.model,
            &self.method,
            &self.optimizer,
            &self.eval,
        );
        at_least("run.epochs", run.epochs, 1)?;
        if let Some(limit) = &run.memory_limit {
            crate::memory::parse_size(limit)?;
        }
        if let Some(budget) = &run.time_budget {
            crate::budget::parse_duration("run.time_budget", budget)?;
        }
        if crate::budget::parse_duration("run.dist_timeout", &run.dist_timeout)? > 86_400.0 {
            return Err(invalid("run.dist_timeout", "is longer than a day"));
        }
        device_spec(&run.device)?;
        // More than any machine has cores (100000 made rayon panic, then crash).
        in_range("run.threads", run.threads as f64, 0.0, MAX_THREADS)?;
        choice(
            "run.channels_last",
            &run.channels_last,
            &["auto", "on", "off"],
        )?;
        if run.precision != "auto" {
            run.precision
                .parse::<contrastive_tensor::Precision>()
                .map_err(|_| {
                    invalid(
                        "run.precision",
                        format!("{:?} is not one of auto, fp32, bf16, fp16", run.precision),
                    )
                })?;
        }
        if matches!(data.dataset, DatasetName::Folder | DatasetName::Video) && data.dir.is_none() {
            return Err(invalid(
                "data.dir",
                format!("is required when data.dataset = \"{}\"", data.dataset),
            ));
        }
        if let Some(size) = data.image_size {
            at_least("data.image_size", size, 8)?;
        }
        if let Some(fps) = data.fps {
            positive("data.fps", fps)?;
            if !data.is_video() {
                return Err(invalid("data.fps", "applies to video datasets only"));
            }
        }
        at_least("data.batch_size", data.batch_size, 2)?;
        choice(
            "data.augment",
            &data.augment,
            &[contrastive_augment::presets::NAMES.as_slice(), &["none"]].concat(),
        )?;
        choice("data.augment_on", &data.augment_on, &["cpu", "device"])?;
        choice("data.on_bad_file", &data.on_bad_file, &["skip", "fail"])?;
        if let Some(c) = data.channels
            && c != 1
            && c != 3
        {
            return Err(invalid(
                "data.channels",
                format!("must be 1 (gray) or 3 (colour), got {c}"),
            ));
        }
        self.views.validate()?;
        if data.augment == "none" && !self.views.is_empty() {
            return Err(invalid(
                "views",
                "changes the recipe data.augment names, and data.augment is \"none\"",
            ));
        }
        if data.local_views > 0 && !method.settings().takes_local_views() {
            let takers: Vec<&str> = MethodConfig::NAMES
                .iter()
                .copied()
                .filter(|&name| {
                    MethodConfig::named(name).is_some_and(|m| m.settings().takes_local_views())
                })
                .collect();
            return Err(invalid(
                "data.local_views",
                format!("applies to {}, not {}", takers.join(" and "), method.name()),
            ));
        }
        if let Some(size) = data.local_size {
            at_least("data.local_size", size, 4)?;
        }
        area_range("data.local_scale", data.local_scale)?;
        if data.mean.is_some() != data.std.is_some() {
            return Err(invalid("data.mean", "data.mean and data.std go together"));
        }
        if let (Some(mean), Some(std)) = (&data.mean, &data.std) {
            if mean.len() != std.len() || mean.is_empty() {
                return Err(invalid(
                    "data.std",
                    format!(
                        "needs one value per channel like data.mean ({})",
                        mean.len()
                    ),
                ));
            }
            if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(invalid("data.std", "every value must be > 0"));
            }
        }
        // Wider than any published head (8192 for Barlow Twins and VICReg) by far; beyond,
        // allocating the head's weights fails inside libtorch.
        in_range(
            "model.head_hidden",
            model.head_hidden as f64,
            1.0,
            MAX_HEAD_WIDTH,
        )?;
        in_range("model.head_out", model.head_out as f64, 1.0, MAX_HEAD_WIDTH)?;

        method.check(&RunFacts {
            batch_size: data.batch_size,
            video: data.is_video(),
        })?;

        positive("optimizer.lr", opt.lr)?;
        in_range("optimizer.momentum", opt.momentum, 0.0, 0.999_999)?;
        in_range("optimizer.weight_decay", opt.weight_decay, 0.0, 1.0)?;
        in_range(
            "optimizer.warmup_epochs",
            opt.warmup_epochs,
            0.0,
            run.epochs as f64,
        )?;
        if let Some(c) = opt.clip_grad_norm {
            positive("optimizer.clip_grad_norm", c)?;
        }
        positive("optimizer.trust_coefficient", opt.trust_coefficient)?;
        if opt.nesterov && opt.name != OptimizerName::Sgd {
            return Err(invalid("optimizer.nesterov", "applies to sgd only"));
        }

        at_least("eval.knn_k", eval.knn_k, 1)?;
        positive("eval.knn_temperature", eval.knn_temperature)?;
        Ok(())
    }
}

/// Sets `section.key` in `table` from `section.key=value`.
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let bad = || {
        Error::Config(format!(
            "override {assignment:?} is not of the form section.key=value"
        ))
    };
    let (path, raw) = assignment.split_once('=').ok_or_else(bad)?;
    let (section, key) = path.trim().split_once('.').ok_or_else(bad)?;
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_owned()));
    let entry = table
        .entry(section.trim())
        .or_insert_with(|| toml::Value::Table(Default::default()));
    let toml::Value::Table(section_table) = entry else {
        return Err(Error::Config(format!("`{section}` is not a section")));
    };
    section_table.insert(key.trim().to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [run]
        out = "runs/x"
        epochs = 2
        [data]
        dataset = "fashion-mnist"
        batch_size = 64
        augment = "w1"
        [method]
        name = "simclr"
        temperature = 0.5
        [optimizer]
        name = "sgd"
        lr = 0.06
    "#;

    #[test]
    fn defaults_fill_what_is_left_out() {
        let config = TrainConfig::from_toml(MINIMAL).unwrap();
        assert_eq!(config.model.backbone, Backbone::SmallCnn);
        assert_eq!(config.eval.knn_k, 200);
        assert_eq!(config.run.device, "auto");
        // What is written to the run directory reads back the same.
        assert_eq!(TrainConfig::from_toml(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn every_method_writes_all_it_uses() {
        for &name in MethodConfig::NAMES {
            let text = MINIMAL
                .replace("\"simclr\"", &format!("{name:?}"))
                .replace("temperature = 0.5", "")
                .replace("\"fashion-mnist\"", "\"video-demo\"");
            let config = TrainConfig::from_toml(&text).unwrap();
            assert_eq!(config.method, MethodConfig::named(name).unwrap(), "{name}");
            // Every default is written out (SimSiam has none; temporal's `gap` is absent
            // when frames of one video are never negatives).
            let written = config.to_toml();
            let method: toml::Table = toml::from_str::<toml::Table>(&written).unwrap()["method"]
                .as_table()
                .unwrap()
                .clone();
            let settings = toml::Value::try_from(&config.method).unwrap();
            assert_eq!(toml::Value::Table(method.clone()), settings, "{name}");
            assert!(method.len() > 1 || name == "simsiam", "{name}: {method:?}");
            assert!(written.contains("backbone = \"small-cnn\"\nstem = \"cifar\""));
            assert_eq!(TrainConfig::from_toml(&written).unwrap(), config, "{name}");
        }
    }

    #[test]
    fn a_wrong_type_in_the_method_names_the_key() {
        let err =
            TrainConfig::from_toml(&MINIMAL.replace("temperature = 0.5", "temperature = \"x\""))
                .unwrap_err()
                .to_string();
        assert!(err.contains("temperature"), "{err}");
    }

    #[test]
    fn dataset_names_are_the_ones_serde_reads() {
        for name in [
            DatasetName::FashionMnist,
            DatasetName::Mnist,
            DatasetName::Cifar10,
            DatasetName::Cifar100,
            DatasetName::Folder,
            DatasetName::Video,
            DatasetName::VideoDemo,
        ] {
            let read: DatasetName = serde_json::from_value(name.as_str().into()).unwrap();
            assert_eq!(read, name);
        }
    }

    #[test]
    fn every_shipped_config_loads() {
        let configs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(configs).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let config = TrainConfig::load(&path, &[])
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(
                    TrainConfig::from_toml(&config.to_toml()).unwrap(),
                    config,
                    "{}",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 14, "{seen} configs");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = MINIMAL.replace("epochs = 2", "epochs = 2\nepoch = 3");
        let err = TrainConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field_and_range() {
        let cases = [
            ("lr = 0.06", "lr = -1.0", "optimizer.lr"),
            ("epochs = 2", "epochs = 0", "run.epochs"),
            ("augment = \"w1\"", "augment = \"w2\"", "data.augment"),
            (
                "temperature = 0.5",
                "temperature = 0.5\nqueue_size = 4096",
                "queue_size",
            ),
            (
                "name = \"sgd\"",
                "name = \"sgd\"\nmomentum = 1.5",
                "optimizer.momentum",
            ),
            // Each of these used to panic or crash inside libtorch or rayon.
            (
                "epochs = 2",
                "epochs = 2\nthreads = 100000",
                "run.threads: must be in [0, 1024], got 100000",
            ),
            (
                "[method]",
                "[model]\nhead_hidden = 4000000000\n[method]",
                "model.head_hidden: must be in [1, 65536], got 4000000000",
            ),
            (
                "[method]",
                "[model]\nhead_out = 0\n[method]",
                "model.head_out",
            ),
            (
                "epochs = 2",
                "epochs = 2\ndevice = \"gpu\"",
                "run.device: \"gpu\" is not one of auto, cpu, cuda, cuda:N, mps",
            ),
            (
                "epochs = 2",
                "epochs = 2\ndevice = \"cuda:x\"",
                "run.device",
            ),
        ];
        for (from, to, field) in cases {
            let err = TrainConfig::from_toml(&MINIMAL.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{to}: {err}");
        }
    }

    #[test]
    fn the_decoupled_loss_is_a_simclr_key() {
        let decoupled = MINIMAL.replace("temperature = 0.5", "temperature = 0.5\ndecoupled = true");
        let config = TrainConfig::from_toml(&decoupled).unwrap();
        assert!(matches!(
            config.method,
            MethodConfig::Simclr(crate::methods::SimclrSettings {
                decoupled: true,
                ..
            })
        ));
        let err = TrainConfig::from_toml(&decoupled.replace("\"simclr\"", "\"supcon\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field `decoupled`, expected `temperature` or `per_class`"),
            "{err}"
        );
    }

    #[test]
    fn names_outside_their_lists_are_errors_that_list_them() {
        for (from, to, expected) in [
            (
                "name = \"simclr\"",
                "name = \"simclr2\"",
                "unknown variant `simclr2`, expected one of `simclr`, `moco-v2`",
            ),
            (
                "dataset = \"fashion-mnist\"",
                "dataset = \"fashion\"",
                "unknown variant `fashion`, expected one of `fashion-mnist`",
            ),
            (
                "name = \"sgd\"",
                "name = \"adam\"",
                "unknown variant `adam`, expected one of `sgd`, `lars`, `adamw`",
            ),
            (
                "[method]",
                "[model]\nbackbone = \"resnet20\"\n[method]",
                "\"resnet20\" is not one of small-cnn, resnet18, resnet34, resnet50",
            ),
            (
                "[method]",
                "[model]\nstem = \"tiny\"\n[method]",
                "unknown variant `tiny`, expected `imagenet` or `cifar`",
            ),
            (
                "temperature = 0.5",
                "mining = \"hardest\"",
                "unknown variant `hardest`, expected one of `batch-all`, `batch-hard`, `semi-hard`",
            ),
        ] {
            let text = MINIMAL.replace(from, to);
            let text = if to.starts_with("mining") {
                text.replace("\"simclr\"", "\"triplet\"")
            } else {
                text
            };
            let err = TrainConfig::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{to}: {err}");
        }
    }

    #[test]
    fn local_views_are_checked() {
        let with = |lines: &str| {
            TrainConfig::from_toml(&MINIMAL.replace("augment = \"w1\"", lines)).map(|c| c.data)
        };
        let data = with("augment = \"w1\"\nlocal_views = 4").unwrap();
        assert_eq!((data.local_side(28), data.local_side(8)), (12, 4));
        assert_eq!(data.local_crop_scale(), (0.05, 0.14));
        let data =
            with("augment = \"w1\"\nlocal_views = 4\nlocal_size = 14\nlocal_scale = [0.1, 0.4]")
                .unwrap();
        assert_eq!(
            (data.local_side(28), data.local_crop_scale()),
            (14, (0.1, 0.4))
        );
        for (lines, field) in [
            ("local_scale = [0.5, 0.2]", "data.local_scale"),
            ("local_scale = [0.0, 0.2]", "data.local_scale"),
            ("local_size = 2", "data.local_size"),
        ] {
            let err = with(&format!("augment = \"w1\"\n{lines}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{lines}: {err}");
        }
        let moco = MINIMAL
            .replace("\"simclr\"", "\"moco-v2\"")
            .replace("augment = \"w1\"", "augment = \"w1\"\nlocal_views = 2");
        let err = TrainConfig::from_toml(&moco).unwrap_err().to_string();
        assert!(
            err.contains("data.local_views") && err.contains("moco-v2"),
            "{err}"
        );
    }

    #[test]
    fn a_moco_queue_holds_whole_steps_of_keys() {
        let moco = MINIMAL.replace("\"simclr\"", "\"moco-v2\"");
        let cases = [
            ("queue_size = 4160", None),
            (
                "queue_size = 4100",
                Some("multiple of data.batch_size (64)"),
            ),
            (
                "queue_size = 4160\nsymmetric = true",
                Some("multiple of 2 x data.batch_size (128)"),
            ),
            ("queue_size = 4096\nsymmetric = true", None),
        ];
        for (lines, error) in cases {
            let text = moco.replace("temperature = 0.5", lines);
            match (TrainConfig::from_toml(&text), error) {
                (Ok(_), None) => {}
                (Err(err), Some(expected)) => {
                    assert!(err.to_string().contains(expected), "{lines}: {err}")
                }
                (result, _) => panic!("{lines}: {result:?}"),
            }
        }
    }

    #[test]
    fn overrides_replace_values_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let config = TrainConfig::load(
            &path,
            &[
                "run.epochs=5".into(),
                "run.device=cpu".into(),
                "run.out=/tmp/y".into(),
            ],
        )
        .unwrap();
        assert_eq!((config.run.epochs, config.run.device.as_str()), (5, "cpu"));
        assert_eq!(config.run.out, PathBuf::from("/tmp/y"));
        let err = TrainConfig::load(&path, &["run.epochz=5".into()]).unwrap_err();
        let text = err.to_string();
        // Blamed on the override, not on a line of the file.
        assert!(
            text.contains("override \"run.epochz=5\"") && text.contains("epochz"),
            "{text}"
        );
        assert!(!text.contains("line"), "{text}");
        // An error in the file itself points at the user's own line (the 4th of MINIMAL).
        let wrong = MINIMAL.replace("epochs = 2", "epochs = 2\n        epoch = 3");
        std::fs::write(&path, &wrong).unwrap();
        for overrides in [vec![], vec!["run.device=cpu".to_string()]] {
            let text = TrainConfig::load(&path, &overrides)
                .unwrap_err()
                .to_string();
            assert!(
                text.contains("line 5") && text.contains("epoch = 3"),
                "{overrides:?}: {text}"
            );
        }
        assert!(TrainConfig::load(&path, &["epochs".into()]).is_err());
    }

    /// A SimCLR run with the views of `augment` changed by these `[views]` lines.
    fn with_views(augment: &str, views: &str) -> Result<TrainConfig> {
        TrainConfig::from_toml(&format!(
            "[run]\nout = \"runs/x\"\nepochs = 1\n\
             [data]\ndataset = \"fashion-mnist\"\nbatch_size = 8\naugment = \"{augment}\"\n\
             [views]\n{views}\n\
             [method]\nname = \"simclr\"\n[optimizer]\nname = \"sgd\"\nlr = 0.1\n"
        ))
    }

    #[test]
    fn bad_view_changes_name_the_key() {
        for (line, field) in [
            ("crop_scale = [0.5, 0.2]", "views.crop_scale"),
            ("crop_scale = [0.0, 1.0]", "views.crop_scale"),
            ("rotation = 200", "views.rotation"),
            ("rotation_p = -0.1", "views.rotation_p"),
            ("flip_p = 2", "views.flip_p"),
            ("jitter = [0.4, 0.4, 0.4, 0.6]", "views.jitter"),
            ("jitter = [-0.4, 0.4, 0.4, 0.1]", "views.jitter"),
            ("jitter_p = 1.5", "views.jitter_p"),
            ("grayscale_p = 1.5", "views.grayscale_p"),
            ("blur_p = nan", "views.blur_p"),
            ("solarize_p = 3", "views.solarize_p"),
            ("crop = [0.2, 1.0]", "unknown field `crop`"),
        ] {
            let err = with_views("simclr-blur", line).unwrap_err().to_string();
            assert!(err.contains(field), "{line}: {err}");
        }
        let err = with_views("none", "blur_p = 0.5").unwrap_err().to_string();
        assert!(err.contains("views") && err.contains("none"), "{err}");
    }
}
