//! The training loop: batches prepared ahead on other threads, mixed-precision steps,
//! checkpoints, the kNN monitor, and the final report.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use contrastive_augment::{
    BatchFormat, Image, MultiViewPipeline, Prefetcher, apply_plans, format_batch, to_batch,
};
use contrastive_models::{Backbone, EmbeddingModel, ModelConfig, save_model};
use contrastive_samplers::{MultiView, PkSampler, TemporalSampler, step_permutation};
use contrastive_tensor::dist::{ProcessGroup, Reduce};
use contrastive_tensor::{
    Device, Kind, ModuleT, Precision, Tensor, autocast, describe_device, device_for_rank,
    nn::VarStore, no_grad, seeded, set_threads, var_store_to_channels_last, write_atomically,
};
use serde::{Deserialize, Serialize};

use crate::baseline::PixelComparison;
use crate::budget::{
    BudgetInputs, BudgetPlan, CALIBRATION_STEPS, costs_from_monitor, costs_from_pass,
    parse_duration, plan_steps,
};
use crate::checkpoint::{self, Checkpoint, Position, checkpoint_path};
use crate::config::{TrainConfig, view_transforms};
use crate::data::{self, RunData};
use crate::error::invalid;
use crate::evaluation::{Evaluation, Features, Input, embed};
use crate::lock::RunLock;
use crate::memory::{self, parse_size};
use crate::methods::{Batch, Progress, Sampling, Setup, StepInputs, TrainMethod};
use crate::metrics::{MetricsLog, Record};
use crate::numerics::{Numerics, choose_numerics};
use crate::optim::{Optimizer, learning_rate};
use crate::plot::plot_run;
use crate::split::SplitData;
use crate::{Error, Result};

/// What a run is about to do; given to [`Observer::started`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Steps the run ends at.
    pub total_steps: u64,
    /// Steps already done (a resumed run starts past zero).
    pub done: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
    /// Views per step.
    pub views_per_step: u64,
    /// Device, precision and layout, in words.
    pub setup: String,
}

/// Receives the run's progress (a progress bar, a log, a test).
pub trait Observer {
    /// Before the first step.
    fn started(&mut self, _plan: &Plan) {}
    /// When a time budget has fixed the run's length: the steps it now ends at.
    fn planned(&mut self, _total_steps: u64) {}
    /// After each record is written to `metrics.jsonl`.
    fn record(&mut self, _record: &Record) {}
    /// A line of news ("evaluating", "checkpoint written").
    fn note(&mut self, _message: &str) {}
    /// Something the run left out or worked around (a skipped file, tight memory), before
    /// the first step. Each is also logged through `tracing` where it arises, which the
    /// `contrastive` binary prints.
    fn warning(&mut self, _message: &str) {}
}

impl Observer for () {}

/// The outcome of a run; also written to `report.json` and `report.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Steps done in all.
    pub steps: u64,
    /// Whole epochs done.
    pub epochs_done: u64,
    /// Stopped by request before the end (resume to continue).
    pub interrupted: bool,
    /// Training seconds (without evaluations), over every session of the run.
    pub train_s: f64,
    /// Mean views per second of training.
    pub views_per_s: f64,
    /// The final evaluation on the held-out split (empty when interrupted or unlabeled).
    pub evaluation: Evaluation,
    /// Seconds of the final evaluation, the raw pixels' figures included (absent without
    /// one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_eval_s: Option<f64>,
    /// The same evaluation of the raw pixels, and where the model does worse (absent for
    /// video, unlabeled data and runs without a final evaluation).
    #[serde(default)]
    pub raw_pixels: Option<PixelComparison>,
    /// The trained model (backbone and head, with its config), when the run finished.
    pub model: Option<PathBuf>,
    /// Of this session's training time, the seconds this rank spent in collectives outside
    /// backward (gathering embeddings, averaging gradients, agreeing to stop); 0 alone.
    /// The gather's own all-reduce in backward is not counted.
    #[serde(default)]
    pub communication_s: f64,
    /// What `run.time_budget` fixed: the steps, the epochs they make, the measured step
    /// time and the evaluations' estimated time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget: Option<BudgetPlan>,
}

/// How batches are drawn.
#[derive(Debug)]
enum Batches {
    /// Shuffled images (self-supervised methods).
    Shuffled(MultiView),
    /// P classes x K images (label-based methods).
    ClassBalanced(PkSampler),
    /// A few frames close in time from each of a few videos (temporal methods); `starts`
    /// maps a video's frames to dataset indices.
    Temporal {
        /// The sampler of (video, frame) pairs.
        sampler: TemporalSampler,
        /// The dataset index of each video's first frame.
        starts: Vec<usize>,
    },
}

impl Batches {
    fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        match self {
            Batches::Shuffled(s) => s.epoch(epoch),
            Batches::ClassBalanced(s) => s.epoch(epoch),
            Batches::Temporal { sampler, starts } => sampler
                .epoch(epoch)
                .into_iter()
                .map(|batch| batch.iter().map(|f| starts[f.video] + f.frame).collect())
                .collect(),
        }
    }

    fn per_epoch(&self) -> usize {
        match self {
            Batches::Shuffled(s) => s.batches_per_epoch(),
            Batches::ClassBalanced(s) => s.batches_per_epoch(),
            Batches::Temporal { sampler, .. } => sampler.batches_per_epoch(),
        }
    }
}

/// Splits view-major `views` (one entry per view) into runs of consecutive views whose
/// `size` is the same, in order: the batches the model takes one at a time.
fn size_groups<T>(views: Vec<T>, size: impl Fn(&T) -> Vec<i64>) -> Vec<Vec<T>> {
    let mut groups: Vec<(Vec<i64>, Vec<T>)> = Vec::new();
    for view in views {
        let key = size(&view);
        match groups.last_mut() {
            Some((last, group)) if *last == key => group.push(view),
            _ => groups.push((key, vec![view])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// A training run: built from a config, run to the end or until stopped.
pub struct Trainer {
    config: TrainConfig,
    run_dir: PathBuf,
    data: RunData,
    input: Input,
    vs: VarStore,
    model: EmbeddingModel,
    /// The method and its state (a `RefCell`: it updates itself while the step's helpers
    /// read the rest of the trainer).
    method: RefCell<Box<dyn TrainMethod>>,
    optimizer: Optimizer,
    batches: Batches,
    pipeline: Arc<MultiViewPipeline>,
    position: Position,
    warnings: Vec<String>,
    /// The data-parallel group this process trains in (one process: `single`).
    group: ProcessGroup,
    /// Seconds spent in collectives outside backward this session (see [`Report`]).
    communication_s: std::cell::Cell<f64>,
    /// How `auto` precision and layout were decided, for the run's output.
    numerics_note: Option<String>,
    /// Held for the trainer's life by rank 0, the one that writes: no other process trains
    /// in this run directory.
    _lock: Option<RunLock>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("run_dir", &self.run_dir)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// Prepares the run of `config`. A run directory that holds a checkpoint is resumed
    /// when `resume` is set and refused otherwise (nothing is overwritten); one that another
    /// process is training in is refused either way (see [`RunLock`]).
    pub fn new(config: TrainConfig, resume: bool) -> Result<Self> {
        Self::new_in(config, resume, ProcessGroup::single())
    }

    /// [`Trainer::new`] as one rank of a data-parallel `group`: each global batch of
    /// `data.batch_size` images is split evenly between the ranks, every loss sees the
    /// whole batch (embeddings gathered with gradients, so negatives are global),
    /// gradients are averaged, and the run computes what one process with the whole batch
    /// would (exactly so with `model.sync_bn`). Rank 0 alone writes the run directory;
    /// every rank starts from rank 0's weights, and on resume reads the same checkpoint.
    pub fn new_in(mut config: TrainConfig, resume: bool, group: ProcessGroup) -> Result<Self> {
        config.validate()?;
        same_config_everywhere(&config, &group)?;
        let world = group.world_size();
        if !config.data.batch_size.is_multiple_of(world) {
            return Err(invalid(
                "data.batch_size",
                format!(
                    "{} images do not split evenly between {world} processes",
                    config.data.batch_size
                ),
            ));
        }
        let run_dir = config.run.out.clone();
        let last = checkpoint_path(&run_dir);
        match (last.is_file(), resume) {
            (true, false) => {
                return Err(Error::Run(format!(
                    "{} already holds a run (checkpoint {}); resume it with --resume or choose \
                     another run.out",
                    run_dir.display(),
                    last.display()
                )));
            }
            (false, true) => {
                return Err(Error::Run(format!(
                    "nothing to resume: {} does not exist",
                    last.display()
                )));
            }
            _ => {}
        }
        if config.run.threads > 0 {
            set_threads(config.run.threads)?;
        }
        // Each rank on a machine with several takes its own GPU (`cuda:<local rank>`).
        let device = device_for_rank(
            &config.run.device,
            group.local_rank(),
            group.local_world_size(),
        )?;

        let data = data::load(&config.data)?;
        // The run directory's config.toml records the normalisation the data was given
        // (a folder's is measured from its images), so a later use of the run sees the same.
        config.data.mean = Some(data.mean.clone());
        config.data.std = Some(data.std.clone());
        let batch_size = config.data.batch_size;
        if data.train.images.len() < batch_size {
            return Err(invalid(
                "data.batch_size",
                format!(
                    "is larger than the training set ({} images)",
                    data.train.images.len()
                ),
            ));
        }
        let backbone = config.model.backbone;
        if backbone == Backbone::SmallCnn && data.size < 4 {
            return Err(invalid(
                "data.image_size",
                "the small CNN needs at least 4 pixels",
            ));
        }
        // What is drawn from libtorch's generators (the weights, MoCo's first queue) depends
        // on the seed alone, whatever other threads of the process build meanwhile.
        let (mut method, vs, model) = seeded(config.run.seed, || -> Result<_> {
            let setup = Setup {
                dim: config.model.head_out,
                batch_size,
                dataset_len: data.train.images.len(),
                device,
            };
            let mut method = config.method.build(&setup)?;
            let model_config = ModelConfig {
                backbone,
                in_channels: data.channels as i64,
                stem: config.model.stem,
                head: method.head(),
                head_hidden: config.model.head_hidden,
                head_out: config.model.head_out,
            };
            let vs = VarStore::new(device);
            let model = EmbeddingModel::new(&vs.root(), model_config);
            method.attach(&vs, model_config)?;
            Ok((method, vs, model))
        })?;
        // `auto` precision and layout: as the resumed run had them, else measured.
        let step_views = (method.views() * batch_size / world) as u64;
        let resumed = resume.then_some(last.as_path());
        let (numerics, numerics_note) = run_numerics(
            &config,
            device,
            model.config(),
            data.size as i64,
            step_views,
            resumed,
            &group,
        )?;
        let (precision, channels_last) = (numerics.precision, numerics.channels_last);
        config.run.set_numerics(precision, channels_last);
        if channels_last {
            var_store_to_channels_last(&vs)?;
            for encoder in method.encoders() {
                var_store_to_channels_last(encoder)?;
            }
        }
        let mut optimizer = Optimizer::new(&vs, method.trainable(), &config.optimizer);
        let seed = config.run.seed;
        let mut warnings = data.warnings.clone();
        if let Some(warning) = knn_k_warning(config.eval.knn_k, data.train.labels.as_deref()) {
            crate::error::warn(&mut warnings, warning);
        }
        let batches = match method.sampling() {
            Sampling::VideoFrames { per_video, window } => {
                let index = data.train.video.as_ref().ok_or_else(|| {
                    invalid(
                        "method.name",
                        format!(
                            "{} samples frames of videos; the data has none",
                            config.method.name()
                        ),
                    )
                })?;
                let sampler = TemporalSampler::new(
                    &index.counts,
                    batch_size / per_video,
                    per_video,
                    window,
                    seed,
                )?;
                for &v in sampler.skipped() {
                    let warning = format!(
                        "skipped video {}: {} frames, fewer than method.per_video ({per_video})",
                        index.names[v], index.counts[v]
                    );
                    crate::error::warn(&mut warnings, warning);
                }
                Batches::Temporal {
                    sampler,
                    starts: index.starts(),
                }
            }
            Sampling::ClassBalanced { per_class: k } => {
                let labels = data.train.labels.as_ref().ok_or_else(|| {
                    invalid(
                        "method.name",
                        format!(
                            "{} needs labels; this dataset has none",
                            config.method.name()
                        ),
                    )
                })?;
                let classes = labels
                    .iter()
                    .collect::<std::collections::HashSet<_>>()
                    .len();
                if batch_size / k > classes {
                    return Err(invalid(
                        "method.per_class",
                        format!(
                            "batches of {batch_size} with {k} per class need {} classes, the data \
                         has {classes}; use per_class >= {}",
                            batch_size / k,
                            batch_size.div_ceil(classes)
                        ),
                    ));
                }
                Batches::ClassBalanced(PkSampler::new(labels, batch_size / k, k, seed)?)
            }
            Sampling::Shuffled => Batches::Shuffled(MultiView::new(
                data.train.images.len(),
                batch_size,
                true,
                seed,
            )?),
        };
        let transforms = view_transforms(&config.data, &config.views, data.size, method.views())?;
        let pipeline = Arc::new(MultiViewPipeline::new(transforms, seed));
        let input = Input {
            device,
            precision,
            format: Input::format(&data.mean, &data.std, channels_last)?,
        };
        // Before anything is written: a batch that cannot fit is refused here, not by the
        // kernel's out-of-memory killer mid-step.
        let views_per_image = pipeline.view_count() as u64;
        let limit = config
            .run
            .memory_limit
            .as_deref()
            .map(parse_size)
            .transpose()?;
        let step = memory::measure_step_memory(
            model.config(),
            data.size as i64,
            device,
            precision,
            channels_last,
            views_per_image * (batch_size / world) as u64,
            limit,
        )?;
        if let Some(step) = step
            && let Some(warning) = step.check(batch_size, views_per_image)?
        {
            crate::error::warn(&mut warnings, warning);
        }

        // Nothing is written before the config, data and device have passed every check.
        let lock = if group.is_main() {
            std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
            let lock = RunLock::acquire(&run_dir)?;
            // A kill during a save leaves its temporary file; with the lock held, none is live.
            checkpoint::remove_stale_temporaries(&run_dir)?;
            Some(lock)
        } else {
            None
        };
        let mut position = Position::default();
        if resume {
            let saved = Checkpoint::read(&last)?;
            saved.restore("model.", &vs)?;
            optimizer.restore(&saved)?;
            let state = method
                .state()
                .iter()
                .map(|(name, like)| Ok((name.clone(), saved.tensor(name, like)?.shallow_clone())))
                .collect::<Result<HashMap<_, _>>>()?;
            method.restore(&state)?;
            position = saved.position;
        }
        // Every rank from rank 0's weights (and the method's state), whatever each drew or
        // read.
        group.broadcast_parameters(&in_name_order(&vs))?;
        if group.world_size() > 1 {
            let mut state = method.state();
            for (_, tensor) in &mut state {
                group.broadcast_(tensor, 0)?;
            }
            method.restore(&state.into_iter().collect())?;
        }
        let trainer = Self {
            config,
            run_dir,
            data,
            input,
            vs,
            model,
            method: RefCell::new(method),
            optimizer,
            batches,
            pipeline,
            position,
            warnings,
            group,
            communication_s: std::cell::Cell::new(0.0),
            numerics_note,
            _lock: lock,
        };
        trainer.check_position()?;
        Ok(trainer)
    }

    /// Refuses a resumed position that this run cannot continue from: one that does not
    /// add up with this data's steps per epoch, or one past the run's end.
    fn check_position(&self) -> Result<()> {
        let p = self.position;
        let per_epoch = self.batches.per_epoch() as u64;
        let total = self.total_steps();
        let fits = p.step_in_epoch <= per_epoch && p.step == p.epoch * per_epoch + p.step_in_epoch;
        if !fits {
            return Err(Error::Run(format!(
                "{}: the saved position (epoch {}, step {} of the epoch, {} in all) does not \
                 fit this run's {per_epoch} steps per epoch; was the data or batch size changed?",
                checkpoint_path(&self.run_dir).display(),
                p.epoch,
                p.step_in_epoch,
                p.step
            )));
        }
        if p.step > total {
            return Err(Error::Run(format!(
                "{}: the run has done {} steps, past this config's end at {total} (run.epochs \
                 {}, run.max_steps {}); resume with more epochs or steps",
                checkpoint_path(&self.run_dir).display(),
                p.step,
                self.config.run.epochs,
                self.config.run.max_steps
            )));
        }
        Ok(())
    }

    /// The model's variables (for tests and for exporting).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// Where the run stands.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Views in one step's batch, local views of multi-crop included.
    fn views_per_step(&self) -> u64 {
        (self.pipeline.view_count() * self.config.data.batch_size) as u64
    }

    /// The steps the learning-rate schedule spans: `run.epochs`' worth, or what the time
    /// budget fixed.
    fn schedule_steps(&self) -> u64 {
        let budget = self.position.budget.map(|plan| plan.steps);
        budget.unwrap_or((self.batches.per_epoch() * self.config.run.epochs) as u64)
    }

    fn total_steps(&self) -> u64 {
        let all = self.schedule_steps();
        match self.config.run.max_steps {
            0 => all,
            cap => all.min(cap as u64),
        }
    }

    /// Trains until the last epoch (or `run.max_steps`), or until `stop` is set: then the
    /// position is saved and the report says `interrupted`. A non-finite loss ends the run
    /// with [`Error::NonFiniteLoss`]; the checkpoint on disk is the last good one.
    pub fn run(&mut self, observer: &mut dyn Observer, stop: &AtomicBool) -> Result<Report> {
        let mut log = if self.group.is_main() {
            let config_path = self.run_dir.join("config.toml");
            write_atomically(&config_path, self.config.to_toml().as_bytes())?;
            Some(MetricsLog::open(
                &self.run_dir.join("metrics.jsonl"),
                self.position.step,
                self.position.epoch,
            )?)
        } else {
            None
        };
        let per_epoch = self.batches.per_epoch() as u64;
        let mut schedule_steps = self.schedule_steps();
        let warmup = (self.config.optimizer.warmup_epochs * per_epoch as f64).round() as u64;
        let mut total = self.total_steps();
        let views_per_step = self.views_per_step();
        // This session's step times, until a time budget has fixed the run's length.
        let mut calibration = Vec::new();
        observer.started(&Plan {
            total_steps: total,
            done: self.position.step,
            steps_per_epoch: per_epoch,
            views_per_step,
            setup: format!(
                "{}, {}, {}",
                describe_device(self.input.device),
                self.input.precision,
                if self.input.format.channels_last {
                    "channels-last"
                } else {
                    "NCHW"
                }
            ),
        });
        if let Some(note) = &self.numerics_note {
            observer.note(note);
        }
        for warning in &self.warnings {
            observer.warning(warning);
        }
        // The last kNN monitor's features and top-1, with the step they were taken at: the
        // final evaluation reuses them only when no step came after.
        let mut measured: Option<(u64, Features, f64)> = None;
        // An epoch whose last step is done but whose end is not yet recorded: a run stopped
        // (or killed after the checkpoint) right after that step.
        let epoch_end_pending = |p: &Position| p.step_in_epoch == per_epoch;
        while self.position.step < total || epoch_end_pending(&self.position) {
            let epoch = self.position.epoch;
            let skip = self.position.step_in_epoch as usize;
            let remaining = (per_epoch as usize - skip).min((total - self.position.step) as usize);
            if remaining > 0 {
                let order = self.batches.epoch(epoch);
                let world = self.group.world_size();
                if let Some(batch) = order.iter().find(|b| !b.len().is_multiple_of(world)) {
                    return Err(Error::Run(format!(
                        "a batch of {} images does not split evenly between {world} processes \
                         (choose data.batch_size and method.per_class or per_video to fit)",
                        batch.len()
                    )));
                }
                let mut batches = self.prefetch(order, skip, remaining, epoch);
                let mut tick = Instant::now();
                while let Some(batch) = batches.next() {
                    let batch = batch?;
                    let lr = learning_rate(
                        self.config.optimizer.lr,
                        self.position.step,
                        warmup,
                        schedule_steps,
                    );
                    let progress = Progress {
                        step: self.position.step,
                        total: schedule_steps,
                    };
                    let loss = self.step(&batch, lr, progress)?;
                    let dt = tick.elapsed().as_secs_f64();
                    tick = Instant::now();
                    self.position.step += 1;
                    self.position.step_in_epoch += 1;
                    self.position.elapsed_s += dt;
                    self.position.epoch_train_s += dt;
                    self.position.epoch_loss_sum += loss;
                    let record = Record::Step {
                        step: self.position.step,
                        epoch,
                        loss,
                        lr,
                        views_per_s: views_per_step as f64 / dt.max(1e-9),
                    };
                    if let Some(log) = &mut log {
                        log.write(&record)?;
                    }
                    observer.record(&record);
                    if let Some(plan) = self.calibrate(&mut calibration, dt)? {
                        (total, schedule_steps) = (self.total_steps(), plan.steps);
                        observer.planned(total);
                        observer.note(&format!(
                            "time budget {:.0} s: a step takes {:.3} s, so the run takes {} \
                             steps ({:.2} epochs) and about {:.0} s of evaluations",
                            plan.budget_s, plan.step_s, plan.steps, plan.epochs, plan.eval_s
                        ));
                    }
                    let every = self.config.run.checkpoint_every as u64;
                    if every > 0 && self.position.step.is_multiple_of(every) {
                        self.save_checkpoint()?;
                    }
                    if self.stop_agreed(stop)? {
                        drop(batches);
                        self.save_checkpoint()?;
                        observer.note("stopped; the checkpoint is saved, resume with --resume");
                        return Ok(self.report(true, Evaluation::default()));
                    }
                    if self.position.step >= total {
                        // The time budget ended the run within this epoch.
                        break;
                    }
                }
            }
            if epoch_end_pending(&self.position) {
                // Logged before the checkpoint that covers it: a kill in between leaves a
                // record the resumed run drops and writes again, never a lost one.
                let record = self.end_epoch(observer, &mut measured)?;
                if let Some(log) = &mut log {
                    log.write(&record)?;
                }
                observer.record(&record);
                let monitor_s = match record {
                    Record::Epoch { eval_s, .. } => eval_s,
                    Record::Step { .. } => None,
                };
                if let Some(plan) = self.revise_plan(monitor_s)?
                    && plan.steps != schedule_steps
                {
                    (total, schedule_steps) = (self.total_steps(), plan.steps);
                    observer.planned(total);
                    let monitor = match plan.monitor_s {
                        Some(seconds) if self.config.eval.every_epochs > 0 => {
                            format!(" and a monitor {seconds:.1} s")
                        }
                        _ => String::new(),
                    };
                    observer.note(&format!(
                        "time budget revised: a step took {:.3} s{monitor}, so the run takes \
                         {} steps ({:.2} epochs)",
                        plan.step_s, plan.steps, plan.epochs
                    ));
                }
                self.save_checkpoint()?;
                self.plot(observer);
            } else {
                break;
            }
        }
        self.save_checkpoint()?;
        self.plot(observer);
        let current = measured
            .filter(|(step, _, _)| *step == self.position.step)
            .map(|(_, features, knn)| (features, knn));
        self.finish(observer, current)
    }

    /// With a time budget the run has not planned by yet: keeps this session's step time
    /// `dt` and, from step [`CALIBRATION_STEPS`] on (with at least [`MIN_TIMED`] steps of
    /// this session), fixes the run's steps from their median (the session's first, a
    /// warm-up, left out): at step 20 unless the run was resumed at step 18 or 19. Rank 0
    /// decides, every rank gets its count.
    fn calibrate(&mut self, times: &mut Vec<f64>, dt: f64) -> Result<Option<BudgetPlan>> {
        let Some(budget) = &self.config.run.time_budget else {
            return Ok(None);
        };
        if self.position.budget.is_some() {
            return Ok(None);
        }
        times.push(dt);
        if self.position.step < CALIBRATION_STEPS || times.len() < MIN_TIMED {
            return Ok(None);
        }
        let mut timed = times[1..].to_vec();
        timed.sort_by(f64::total_cmp);
        let eval = &self.config.eval;
        let pass_s = match &self.data.test {
            Some(test) if eval.r#final || eval.every_epochs > 0 => {
                self.time_eval_pass(self.data.train.images.len() + test.images.len(), test)?
            }
            _ => 0.0,
        };
        let costs = costs_from_pass(pass_s, eval.r#final);
        let budget_s = parse_duration("run.time_budget", budget)?;
        let plan = plan_steps(self.budget_inputs(budget_s, timed[timed.len() / 2], costs));
        self.adopt_plan(plan).map(Some)
    }

    /// What [`plan_steps`] needs at this point of the run, given the budget, the seconds of
    /// a step and the `(monitor, final evaluation)` seconds to plan with.
    fn budget_inputs(
        &self,
        budget_s: f64,
        step_s: f64,
        (monitor_s, final_s): (f64, f64),
    ) -> BudgetInputs {
        let per_epoch = self.batches.per_epoch() as u64;
        BudgetInputs {
            budget_s,
            elapsed_s: self.position.elapsed_s,
            done: self.position.step,
            step_s,
            monitor_s,
            final_s,
            per_epoch,
            monitor_every: self.config.eval.every_epochs as u64,
            most: per_epoch * self.config.run.epochs as u64,
        }
    }

    /// At every epoch end after the plan, with steps still to go: plans again from the mean
    /// time of the run's steps so far and, where one ran, the monitor's measured time
    /// `monitor_s` (rank 0's; otherwise the last estimate), so a run that slows down or
    /// speeds up still ends within its budget.
    fn revise_plan(&mut self, monitor_s: Option<f64>) -> Result<Option<BudgetPlan>> {
        let Some(plan) = self.position.budget else {
            return Ok(None);
        };
        // Not at the step the plan was made at (an epoch ending at step 20), nor with no
        // steps to go (the plan's end or `run.max_steps`).
        if self.position.step <= plan.planned_at || self.position.step >= self.total_steps() {
            return Ok(None);
        }
        let costs = match (monitor_s, plan.monitor_s, plan.final_s) {
            (Some(seconds), ..) => costs_from_monitor(seconds, self.config.eval.r#final),
            (None, Some(monitor_s), Some(final_s)) => (monitor_s, final_s),
            (None, ..) => return Ok(None),
        };
        let mean_step_s = self.position.elapsed_s / self.position.step.max(1) as f64;
        let mut revised = plan_steps(self.budget_inputs(plan.budget_s, mean_step_s, costs));
        revised.planned_at = plan.planned_at;
        revised.revised_at = Some(self.position.step);
        self.adopt_plan(revised).map(Some)
    }

    /// Makes rank 0's `plan` every rank's (its step count broadcast) and the run's.
    fn adopt_plan(&mut self, mut plan: BudgetPlan) -> Result<BudgetPlan> {
        let mut steps = Tensor::from_slice(&[i64::try_from(plan.steps).unwrap_or(i64::MAX)]);
        if self.group.world_size() > 1 {
            self.group.broadcast_(&mut steps, 0)?;
        }
        plan.steps = u64::try_from(i64::try_from(&steps)?).unwrap_or(0);
        plan.epochs = plan.steps as f64 / self.batches.per_epoch().max(1) as f64;
        self.position.budget = Some(plan);
        Ok(plan)
    }

    /// The seconds an evaluation pass over `images` images takes: the time this rank (rank 0
    /// evaluates alone) embeds [`TIMED_IMAGES`] of the held-out `test` images, after a
    /// smaller warm-up batch, scaled. Evaluation embeds without gradients or augmentation,
    /// so the cost of a training step (one pass per view or several) says little about it.
    fn time_eval_pass(&self, images: usize, test: &SplitData) -> Result<f64> {
        let sample = &test.images[..test.images.len().min(TIMED_IMAGES)];
        if sample.is_empty() {
            return Ok(0.0);
        }
        let _warm = embed(&self.model, &sample[..sample.len().min(64)], &self.input)?;
        let start = Instant::now();
        let _timed = embed(&self.model, sample, &self.input)?;
        Ok(start.elapsed().as_secs_f64() * images as f64 / sample.len() as f64)
    }

    /// Closes the epoch whose last step is done: runs the monitor when it is due (keeping
    /// its features in `measured`), moves the position to the next epoch and returns the
    /// epoch's record, its mean loss and time taken from the position (so a resume in
    /// between changes neither).
    fn end_epoch(
        &mut self,
        observer: &mut dyn Observer,
        measured: &mut Option<(u64, Features, f64)>,
    ) -> Result<Record> {
        let steps = self.position.step_in_epoch;
        let (loss_sum, train_s) = (self.position.epoch_loss_sum, self.position.epoch_train_s);
        self.position.epoch += 1;
        self.position.step_in_epoch = 0;
        self.position.epoch_loss_sum = 0.0;
        self.position.epoch_train_s = 0.0;
        let done = self.position.epoch;
        let every = self.config.eval.every_epochs as u64;
        let last_epoch = done == self.config.run.epochs as u64;
        let due = (every > 0 && done.is_multiple_of(every)) || last_epoch;
        // Rank 0 monitors alone; the others wait for it at the next step's collectives.
        let (watched, eval_s) = if due && self.group.is_main() {
            observer.note("monitor");
            let start = Instant::now();
            let monitored = self.monitor()?;
            let value = monitored.as_ref().map(|(_, k)| *k);
            if let Some((features, k)) = monitored {
                *measured = Some((self.position.step, features, k));
            }
            (value, Some(start.elapsed().as_secs_f64()))
        } else {
            (None, None)
        };
        let (knn, video_recall) = self.split_monitored(watched);
        Ok(Record::Epoch {
            step: self.position.step,
            epochs_done: done,
            mean_loss: loss_sum / steps.max(1) as f64,
            train_s,
            knn_top1: knn,
            video_recall_at_1: video_recall,
            eval_s,
        })
    }

    /// Redraws the charts; a failure is reported, never fatal to the run.
    fn plot(&self, observer: &mut dyn Observer) {
        if !self.group.is_main() {
            return;
        }
        let drawn = crate::metrics::read(&self.run_dir.join("metrics.jsonl"))
            .and_then(|records| plot_run(&self.run_dir, &records));
        if let Err(e) = drawn {
            observer.note(&format!("could not draw the charts: {e}"));
        }
    }

    /// Batches `skip..skip + count` of `order`, prepared on a background thread.
    fn prefetch(
        &self,
        order: Vec<Vec<usize>>,
        skip: usize,
        count: usize,
        epoch: u64,
    ) -> Prefetcher<Batch> {
        let images: Arc<Vec<Image>> = Arc::clone(&self.data.train.images);
        let sampling = self.method.borrow().sampling();
        let labels = (sampling != Sampling::Shuffled)
            .then(|| self.data.train.labels.clone())
            .flatten();
        let frames = matches!(sampling, Sampling::VideoFrames { .. })
            .then(|| self.data.train.video.as_ref().map(Arc::clone))
            .flatten();
        let pipeline = Arc::clone(&self.pipeline);
        let input = self.input.clone();
        let on_device = self.config.data.augment_on == "device";
        let (rank, world) = (self.group.rank(), self.group.world_size());
        Prefetcher::new(count, 2, move |i| {
            // This rank's even share of the global batch (its views are drawn per image, so
            // they are the same whichever rank draws them).
            let global = &order[skip + i];
            let share = global.len() / world;
            let items = &global[rank * share..(rank + 1) * share];
            let sources: Vec<Image> = items.iter().map(|&j| images[j].clone()).collect();
            let groups = if on_device {
                // The sources go to the device as they are; the views are made there.
                let batch = to_batch(&sources, &BatchFormat::raw())?.to_device(input.device);
                let dims: Vec<_> = sources.iter().map(Image::dim).collect();
                let views = pipeline
                    .plans(&dims, items, epoch)?
                    .iter()
                    .map(|plans| apply_plans(&batch, plans))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                size_groups(views, |v| v.size()[2..].to_vec())
                    .into_iter()
                    .map(|group| format_batch(Tensor::cat(&group, 0), &input.format))
                    .collect::<std::result::Result<Vec<_>, _>>()?
            } else {
                let views = pipeline.apply(&sources, items, epoch)?;
                size_groups(views, |v| {
                    let (h, w, _) = v[0].dim();
                    vec![h as i64, w as i64]
                })
                .into_iter()
                .map(|group| {
                    let views: Vec<Image> = group.into_iter().flatten().collect();
                    to_batch(&views, &input.format).map(|b| b.to_device(input.device))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?
            };
            let per_view = |value: &dyn Fn(usize) -> usize| {
                let one: Vec<i64> = items.iter().map(|&j| value(j) as i64).collect();
                Tensor::from_slice(&one)
                    .repeat([pipeline.view_count() as i64])
                    .to_device(input.device)
            };
            Ok(Batch {
                groups,
                images: items.len() as i64,
                labels: labels.as_ref().map(|l| per_view(&|j| l[j])),
                frames: frames.as_ref().map(|v| per_view(&|j| v.frame[j])),
            })
        })
    }

    /// One optimisation step; returns the loss.
    fn step(&mut self, batch: &Batch, lr: f64, progress: Progress) -> Result<f64> {
        self.optimizer.zero_grad();
        self.method.get_mut().before_step(&self.vs, progress)?;
        let (device, precision) = (self.input.device, self.input.precision);
        // Diverged weights show first as non-finite embeddings, which the losses refuse.
        let embed = |model: &EmbeddingModel, x: &Tensor| -> Result<Tensor> {
            let z = {
                let _mixed = autocast(device, precision)?;
                model.forward_t(x, true).to_kind(Kind::Float)
            };
            if z.isfinite().all().int64_value(&[]) == 0 {
                return Err(self.diverged(f64::NAN));
            }
            Ok(z)
        };
        // Every rank's embeddings in the order one process would have them: the loss sees
        // the global batch.
        let gathered = |model: &EmbeddingModel, x: &Tensor| -> Result<Tensor> {
            self.gather_view_major(&embed(model, x)?, batch.images)
        };
        let encode = |model: &EmbeddingModel, x: &Tensor, shuffle: bool| -> Result<Tensor> {
            no_grad(|| {
                if shuffle && self.group.world_size() > 1 {
                    self.shuffled_keys(model, x, &embed)
                } else {
                    gathered(model, x)
                }
            })
        };
        let global = self.global_batch(batch)?;
        let inputs = StepInputs {
            batch: &global,
            model: &self.model,
            embed: &gathered,
            encode: &encode,
            sync_bn: self.config.model.sync_bn && self.group.world_size() > 1,
        };
        let loss_of = || self.method.borrow_mut().loss(&inputs);
        let loss = if self.config.model.sync_bn {
            self.group.synchronising(loss_of)?
        } else {
            loss_of()?
        };
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(self.diverged(value));
        }
        loss.f_backward()?;
        // Each rank's gradient is the world size times its share of the global loss's
        // (the gather's backward sums over ranks); their mean is the global gradient.
        let started = Instant::now();
        self.group
            .average_gradients(&self.optimizer.variables(), GRADIENT_BUCKET_BYTES)?;
        self.communicated(started);
        if let Some(max_norm) = self.config.optimizer.clip_grad_norm {
            self.optimizer.clip_grad_norm(max_norm);
        }
        self.optimizer.step(lr, self.position.step + 1);
        self.method.get_mut().after_step()?;
        Ok(value)
    }

    /// The key encoder's embeddings of every rank's `images` (one view, this rank's share
    /// of the global batch), in the global batch's order, with MoCo's shuffled batch-norm:
    /// the global batch is dealt out to the ranks in this step's own order
    /// ([`step_permutation`], the same on every rank), each rank embeds its deal, and the
    /// keys are gathered back into place. So a rank's batch-norm statistics for keys come
    /// mostly from other images than its queries' (about 1/W of its deal is its own).
    fn shuffled_keys(
        &self,
        key: &EmbeddingModel,
        images: &Tensor,
        embed: &dyn Fn(&EmbeddingModel, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let started = Instant::now();
        let all = self.group.all_gather(images)?;
        self.communicated(started);
        let (local, total) = (images.size()[0], all.size()[0]);
        let order = step_permutation(total as usize, self.config.run.seed, self.position.step);
        let order = Tensor::from_slice(&order.iter().map(|&i| i as i64).collect::<Vec<_>>())
            .to_device(images.device());
        let rank = self.group.rank() as i64;
        let dealt = all.index_select(0, &order.narrow(0, rank * local, local));
        let mine = embed(key, &dealt)?;
        let started = Instant::now();
        let keys = self.group.all_gather(&mine)?;
        self.communicated(started);
        // `keys[i]` belongs to image `order[i]`: put each back in its place.
        Ok(keys.zeros_like().index_copy(0, &order, &keys))
    }

    /// Counts the time since `started` as communication.
    fn communicated(&self, started: Instant) {
        if self.group.world_size() == 1 {
            return;
        }
        let spent = started.elapsed().as_secs_f64();
        self.communication_s.set(self.communication_s.get() + spent);
    }

    /// Whether `stop` is set here or on any other rank: all ranks stop after the same step
    /// (one collective a step when there are several).
    fn stop_agreed(&self, stop: &AtomicBool) -> Result<bool> {
        let here = stop.load(Ordering::SeqCst);
        if self.group.world_size() == 1 {
            return Ok(here);
        }
        let mut any = Tensor::from_slice(&[i64::from(here)]);
        let started = Instant::now();
        self.group.all_reduce_(&mut any, Reduce::Sum)?;
        self.communicated(started);
        Ok(any.int64_value(&[0]) > 0)
    }

    /// `batch` (this rank's share) as the global batch the loss sees: every rank's labels
    /// and frame indices gathered in view-major order; the views stay this rank's own (the
    /// loss gathers their embeddings).
    fn global_batch(&self, batch: &Batch) -> Result<Batch> {
        let gather = |t: &Option<Tensor>| {
            t.as_ref()
                .map(|t| self.gather_view_major(t, batch.images))
                .transpose()
        };
        Ok(Batch {
            groups: batch.groups.iter().map(Tensor::shallow_clone).collect(),
            images: batch.images * self.group.world_size() as i64,
            labels: gather(&batch.labels)?,
            frames: gather(&batch.frames)?,
        })
    }

    /// Every rank's `local` (`[V * B, ...]` view-major, `images` = B of this rank's images)
    /// in the view-major order of the global batch, gradients kept when `local` has them;
    /// `local` itself on one process.
    fn gather_view_major(&self, local: &Tensor, images: i64) -> Result<Tensor> {
        let world = self.group.world_size() as i64;
        if world == 1 {
            return Ok(local.shallow_clone());
        }
        let started = Instant::now();
        let all = self.group.all_gather_with_grad(local)?;
        self.communicated(started);
        Ok(view_major(&all, world, local.size()[0] / images, images))
    }

    /// The error of a step whose loss (or embeddings) became `value`.
    fn diverged(&self, value: f64) -> Error {
        Error::NonFiniteLoss {
            step: self.position.step + 1,
            value,
            checkpoint: checkpoint::last_good(&checkpoint_path(&self.run_dir)),
        }
    }

    /// Saves the run's whole state; a state holding NaN or infinity is refused
    /// ([`Error::NonFiniteState`]) and the checkpoint on disk stays the last finite one.
    fn save_checkpoint(&self) -> Result<()> {
        if !self.group.is_main() {
            return Ok(());
        }
        let mut tensors: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("model.{n}"), t))
            .collect();
        tensors.extend(self.method.borrow().state());
        tensors.extend(self.optimizer.state());
        checkpoint::save(
            &checkpoint_path(&self.run_dir),
            &tensors,
            &self.position,
            &self.config.to_toml(),
        )
    }

    fn features(&self) -> Result<Option<Features>> {
        match &self.data.test {
            Some(test) => Features::of(&self.model, &self.data.train, test, &self.input),
            None => Ok(None),
        }
    }

    /// A monitored figure as `(kNN top-1, same-video recall@1)`: the first for images, the
    /// second for video.
    fn split_monitored(&self, value: Option<f64>) -> (Option<f64>, Option<f64>) {
        if self.data.test.as_ref().is_some_and(|t| t.video.is_some()) {
            (None, value)
        } else {
            (value, None)
        }
    }

    /// The current backbone's features and the monitored figure (kNN top-1, or for video
    /// same-video recall@1), when the data has a labeled held-out split.
    fn monitor(&self) -> Result<Option<(Features, f64)>> {
        let Some(features) = self.features()? else {
            return Ok(None);
        };
        let value = features.monitor(&self.config.eval, self.data.classes.len())?;
        Ok(Some((features, value)))
    }

    /// Saves the model and runs the final evaluation; `current` holds the features and kNN
    /// the monitor took at this very step, when it did (they are not computed again).
    fn finish(
        &mut self,
        observer: &mut dyn Observer,
        current: Option<(Features, f64)>,
    ) -> Result<Report> {
        if !self.group.is_main() {
            return Ok(self.report(false, Evaluation::default()));
        }
        let model_path = self.run_dir.join("model.safetensors");
        save_model(&self.vs, &self.model.config(), &model_path)?;
        let started = Instant::now();
        let watched = current.as_ref().map(|(_, k)| *k);
        let (knn, video_recall) = self.split_monitored(watched);
        let mut results = Evaluation {
            knn_top1: knn,
            video_recall_at_1: video_recall,
            ..Default::default()
        };
        if self.config.eval.r#final {
            observer.note("final evaluation");
            let features = match current {
                Some((features, _)) => Some(features),
                None => self.features()?,
            };
            if let Some(features) = features {
                let classes = self.data.classes.len();
                let seed = self.config.run.seed;
                results = features.evaluate(&self.config.eval, classes, seed, knn)?;
            }
        }
        let raw_pixels = if self.config.eval.r#final {
            observer.note("the raw pixels' figures (cached per dataset)");
            PixelComparison::of(&self.config, &self.data, &results)?
        } else {
            None
        };
        if let Some(warning) = raw_pixels.as_ref().and_then(PixelComparison::warning) {
            observer.warning(&warning);
        }
        let mut report = self.report(false, results);
        report.raw_pixels = raw_pixels;
        report.model = Some(model_path);
        report.final_eval_s = self
            .config
            .eval
            .r#final
            .then(|| started.elapsed().as_secs_f64());
        write_report(&report)?;
        Ok(report)
    }

    fn report(&self, interrupted: bool, evaluation: Evaluation) -> Report {
        let views = (self.position.step * self.views_per_step()) as f64;
        Report {
            run_dir: self.run_dir.clone(),
            steps: self.position.step,
            epochs_done: self.position.epoch,
            interrupted,
            train_s: self.position.elapsed_s,
            views_per_s: views / self.position.elapsed_s.max(1e-9),
            evaluation,
            final_eval_s: None,
            raw_pixels: None,
            model: None,
            communication_s: self.communication_s.get(),
            time_budget: self.position.budget,
        }
    }
}

/// A warning when the kNN monitor's `k` exceeds the largest class of `labels`: every
/// vote then takes in items of other classes (scikit-learn and the papers keep k well
/// under the class size).
/// An error on every rank unless all ranks of `group` were given the same config (the
/// config as it will be written, overrides included).
fn same_config_everywhere(config: &TrainConfig, group: &ProcessGroup) -> Result<()> {
    if group.world_size() == 1 {
        return Ok(());
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(config.to_toml().as_bytes());
    let words: Vec<i64> = digest
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunks")))
        .collect();
    let all = Vec::<i64>::try_from(&group.all_gather(&Tensor::from_slice(&words))?)?;
    let hex = |w: &[i64]| -> String { w.iter().map(|v| format!("{:016x}", *v as u64)).collect() };
    let ranks: Vec<String> = all
        .chunks(words.len())
        .enumerate()
        .map(|(rank, w)| format!("rank {rank}: {}", &hex(w)[..12]))
        .collect();
    if all.chunks(words.len()).any(|w| w != words.as_slice()) {
        return Err(Error::Run(format!(
            "the ranks were started with different configs ({}); start every rank with the \
             same config file and overrides",
            ranks.join(", ")
        )));
    }
    Ok(())
}

/// The run's precision and layout: as the config sets them; where it says `auto`, as the
/// resumed checkpoint's run had them (a resumed run computes what the uninterrupted one
/// would), else rank 0's choice by measurement (see [`choose_numerics`]), sent to every
/// rank. Returns the line that says how an `auto` setting was decided.
fn run_numerics(
    config: &TrainConfig,
    device: Device,
    model: ModelConfig,
    side: i64,
    step_views: u64,
    resumed: Option<&Path>,
    group: &ProcessGroup,
) -> Result<(Numerics, Option<String>)> {
    let (precision, channels_last) = config.run.requested_precision_and_layout()?;
    if let (Some(precision), Some(channels_last)) = (precision, channels_last) {
        let explicit = Numerics {
            precision,
            channels_last,
        };
        return Ok((explicit, None));
    }
    if let Some(path) = resumed {
        // What the run recorded; for a checkpoint from before runs recorded their choice,
        // what `auto` meant then.
        let (saved_precision, saved_layout) =
            checkpoint::saved_run_config(path)?.requested_precision_and_layout()?;
        let numerics = Numerics {
            precision: precision
                .or(saved_precision)
                .unwrap_or_else(|| Precision::fastest_for(device)),
            channels_last: channels_last.or(saved_layout).unwrap_or(true),
        };
        let note = format!("numerics: {numerics} (as the run had them before it was resumed)");
        return Ok((numerics, Some(note)));
    }
    let choice = group
        .is_main()
        .then(|| choose_numerics(model, side, device, precision, channels_last, step_views));
    // Every rank learns rank 0's choice, or that it failed (-1), rather than waiting for it.
    let mut decided = Tensor::from_slice(&match &choice {
        Some(Ok(c)) => [
            i64::from(c.chosen.precision != Precision::Fp32),
            i64::from(c.chosen.channels_last),
        ],
        Some(Err(_)) => [-1, -1],
        None => [0, 0],
    });
    if group.world_size() > 1 {
        group.broadcast_(&mut decided, 0)?;
    }
    let choice = choice.transpose()?;
    let decided = Vec::<i64>::try_from(&decided)?;
    if decided[0] < 0 {
        return Err(Error::Run(
            "rank 0 could not measure the numerics (its error says why); set run.precision \
             and run.channels_last to skip the measurement"
                .into(),
        ));
    }
    let numerics = Numerics {
        precision: match (precision, decided[0]) {
            (Some(p), _) => p,
            (None, 0) => Precision::Fp32,
            (None, _) => Precision::Bf16,
        },
        channels_last: decided[1] == 1,
    };
    Ok((numerics, choice.map(|c| c.describe())))
}

/// Steps of a session a time budget's decision needs at least (the first is a warm-up).
const MIN_TIMED: usize = 3;

/// Held-out images a time budget's decision embeds to time an evaluation pass.
const TIMED_IMAGES: usize = 1024;

/// Gradients travel between ranks in buckets of at most this size (as DDP's default).
const GRADIENT_BUCKET_BYTES: usize = 25 << 20;

/// Every variable of `vs` in name order: the same on every rank.
fn in_name_order(vs: &VarStore) -> Vec<Tensor> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.into_iter().map(|(_, t)| t).collect()
}

/// Rows gathered rank after rank, each rank's `[V * B, ...]` view-major, reordered into one
/// view-major `[V * W * B, ...]`: view 0 of every rank's images, then view 1, ...
fn view_major(gathered: &Tensor, world: i64, views: i64, images: i64) -> Tensor {
    let size = gathered.size();
    let mut shape = vec![world, views, images];
    shape.extend_from_slice(&size[1..]);
    let mut flat = vec![world * views * images];
    flat.extend_from_slice(&size[1..]);
    gathered.view(&shape[..]).transpose(0, 1).reshape(&flat[..])
}

fn knn_k_warning(k: usize, labels: Option<&[usize]>) -> Option<String> {
    let mut counts = std::collections::HashMap::new();
    for &label in labels? {
        *counts.entry(label).or_insert(0usize) += 1;
    }
    let largest = counts.values().copied().max()?;
    (k > largest).then(|| {
        format!(
            "eval.knn_k = {k} is more than the largest class ({largest} images): every kNN \
             vote takes in other classes; set eval.knn_k to at most {largest}"
        )
    })
}

/// `report.json` and a short `report.md` in the run directory (the figures measured,
/// beside the raw pixels' where they were compared).
fn write_report(report: &Report) -> Result<()> {
    let json = serde_json::to_string_pretty(report).expect("a report serialises");
    write_atomically(report.run_dir.join("report.json"), json.as_bytes())?;
    let pixels = report.raw_pixels.as_ref().map(|c| figures(&c.raw_pixels));
    let mut md = format!(
        "# Run report\n\n| | |{}\n|---|---|{}\n| steps | {} |\n| epochs | {} |\n\
         | training time | {:.1} s |\n| throughput | {:.0} views/s |\n",
        if pixels.is_some() {
            " raw pixels |"
        } else {
            ""
        },
        if pixels.is_some() { "---|" } else { "" },
        report.steps,
        report.epochs_done,
        report.train_s,
        report.views_per_s,
    );
    if let Some(plan) = &report.time_budget {
        md.push_str(&format!("| time budget | {plan} |\n"));
    }
    if let Some(seconds) = report.final_eval_s {
        md.push_str(&format!("| final evaluation | {seconds:.1} s |\n"));
    }
    let shown = |value: Option<f64>, percent: bool| match value {
        Some(v) if percent => format!(" {:.2} % |", v * 100.0),
        Some(v) => format!(" {v:.4} |"),
        None => " n/a |".to_owned(),
    };
    for (i, (name, value, percent)) in figures(&report.evaluation).into_iter().enumerate() {
        if value.is_none() {
            continue;
        }
        md.push_str(&format!("| {name} |{}", shown(value, percent)));
        if let Some(pixels) = &pixels {
            md.push_str(&shown(pixels[i].1, percent));
        }
        md.push('\n');
    }
    if let Some(warning) = report
        .raw_pixels
        .as_ref()
        .and_then(PixelComparison::warning)
    {
        md.push_str(&format!("\n**Warning:** {warning}.\n"));
    }
    Ok(write_atomically(
        report.run_dir.join("report.md"),
        md.as_bytes(),
    )?)
}

/// Every figure of `e` as (name, value, shown as a percentage).
fn figures(e: &Evaluation) -> [(&'static str, Option<f64>, bool); 12] {
    [
        ("kNN top-1", e.knn_top1, true),
        ("linear-probe top-1", e.linear_probe_top1, true),
        ("precision@1", e.precision_at_1, true),
        ("MAP@R", e.map_at_r, false),
        ("k-means NMI", e.kmeans_nmi, false),
        ("k-means ARI", e.kmeans_ari, false),
        ("k-means accuracy", e.kmeans_accuracy, true),
        ("same-video recall@1", e.video_recall_at_1, true),
        ("same-video recall@10", e.video_recall_at_10, true),
        ("same-scene recall@1", e.scene_recall_at_1, true),
        ("clip-to-video recall@1", e.clip_recall_at_1, true),
        ("video k-means NMI", e.video_nmi, false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_knn_k_beyond_the_largest_class_is_warned_of() {
        let labels: Vec<usize> = (0..300).map(|i| i % 3).collect();
        let warning = knn_k_warning(200, Some(&labels)).unwrap();
        assert!(warning.contains("largest class (100 images)"), "{warning}");
        assert_eq!(knn_k_warning(100, Some(&labels)), None);
        assert_eq!(knn_k_warning(200, None), None);
    }
}
