//! `contrastive train`: a run from a config, with a progress bar, Ctrl-C, SIGTERM and
//! SIGHUP handling (save, then exit) and a summary at the end.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use contrastive_tensor::dist::{DistEnv, InitOptions, ProcessGroup};
use contrastive_trainer::{
    Observer, Plan, Record, Report, TrainConfig, Trainer, checkpoint_path, parse_duration,
};
use indicatif::{ProgressBar, ProgressStyle};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Arguments of `contrastive train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The run config (TOML).
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (its config.toml is used;
    /// overrides apply on top, e.g. more --epochs).
    #[arg(long, conflicts_with = "config")]
    resume: Option<PathBuf>,
    /// Override run.epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override data.batch_size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override run.device (cpu, cuda, cuda:N, auto).
    #[arg(long)]
    device: Option<String>,
    /// Override run.precision (auto, fp32, bf16, fp16).
    #[arg(long)]
    precision: Option<String>,
    /// Override run.out (the run directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override optimizer.lr.
    #[arg(long)]
    lr: Option<f64>,
    /// Override run.seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override data.dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Start this many ranks of the run on this machine (data-parallel, as `torchrun
    /// --nproc-per-node N` would), each with an equal share of the CPU threads unless
    /// run.threads says otherwise.
    #[arg(long, default_value_t = 1, value_name = "N")]
    nproc_per_node: usize,
    /// Override any key: --set section.key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl TrainArgs {
    /// The overrides as `section.key=value` assignments.
    fn overrides(&self) -> Vec<String> {
        let quote = |s: &str| format!("{s:?}");
        let path = |p: &PathBuf| quote(&p.display().to_string());
        let mut out = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                out.push(format!("{key}={v}"));
            }
        };
        push("run.epochs", self.epochs.map(|v| v.to_string()));
        push("data.batch_size", self.batch_size.map(|v| v.to_string()));
        push("run.device", self.device.as_deref().map(quote));
        push("run.precision", self.precision.as_deref().map(quote));
        push("run.out", self.out.as_ref().map(path));
        push("optimizer.lr", self.lr.map(|v| format!("{v:?}")));
        push("run.seed", self.seed.map(|v| v.to_string()));
        push("data.dir", self.data_dir.as_ref().map(path));
        out.extend(self.set.iter().cloned());
        out
    }
}

/// Runs `contrastive train`; `quiet`: plain lines instead of a progress bar.
pub fn run(args: TrainArgs, quiet: bool) -> Result<()> {
    let mut overrides = args.overrides();
    let (config_path, resume) = match (&args.config, &args.resume) {
        (Some(config), None) => (config.clone(), false),
        (None, Some(dir)) => {
            if args.out.is_some() {
                bail!(
                    "--out cannot move a resumed run; it stays in {}",
                    dir.display()
                );
            }
            overrides.push(format!("run.out={:?}", dir.display().to_string()));
            (dir.join("config.toml"), true)
        }
        _ => bail!("give --config FILE or --resume RUN_DIR"),
    };
    let config = TrainConfig::load(&config_path, &overrides)
        .with_context(|| format!("reading {}", config_path.display()))?;
    if args.nproc_per_node > 1 && !crate::launch::is_rank() {
        let threads = match config.run.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()) / args.nproc_per_node,
            set => set,
        };
        return crate::launch::launch(args.nproc_per_node, threads.max(1));
    }
    // One process of a data-parallel launch (torchrun, srun, or the variables set by
    // hand), or alone.
    let timeout = parse_duration("run.dist_timeout", &config.run.dist_timeout)?;
    let options = InitOptions {
        timeout: std::time::Duration::from_secs_f64(timeout),
        ..InitOptions::default()
    };
    let group = ProcessGroup::from_env(&options).context("joining the data-parallel group")?;
    let main = group.is_main();
    // A launcher that restarts a failed job (`torchrun --max-restarts`, SLURM's requeue)
    // starts the same command again: it goes on from the last checkpoint.
    let restart = DistEnv::from_env()?.map_or(0, |env| env.restart);
    let resume = resume || (restart > 0 && checkpoint_path(&config.run.out).is_file());
    if restart > 0 && resume && main {
        eprintln!("restart {restart} of the job: resuming from the last checkpoint");
    }
    let started = std::time::Instant::now();
    let mut trainer = Trainer::new_in(config, resume, group).context("preparing the run")?;

    let stop = Arc::new(AtomicBool::new(false));
    let signal = stop_on_signals(&stop)?;

    // Rank 0 speaks for the run; the other ranks only report errors.
    let mut progress = Progress::new(quiet);
    let mut silent = ();
    let observer: &mut dyn Observer = if main { &mut progress } else { &mut silent };
    let report = trainer.run(observer, &stop);
    progress.finish();
    let report = report.context("training")?;
    if main {
        print_report(&report);
        println!(
            "wall time      {:.1} s (setup, training and evaluations)",
            started.elapsed().as_secs_f64()
        );
    }
    if report.interrupted {
        // 128 + the signal's number, as shells report a process it ended.
        std::process::exit(128 + signal.load(Ordering::SeqCst));
    }
    Ok(())
}

/// Sets `stop` at the first SIGINT (Ctrl-C), SIGTERM (`docker stop`, Kubernetes, SLURM) or
/// SIGHUP (a closed terminal), so the run saves its checkpoint after the current step;
/// a second signal leaves at once (the last checkpoint stays whole). Returns the number of
/// the signal that stopped the run.
fn stop_on_signals(stop: &Arc<AtomicBool>) -> Result<Arc<AtomicI32>> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing the signal handlers")?;
    let received = Arc::new(AtomicI32::new(SIGINT));
    let (flag, number) = (Arc::clone(stop), Arc::clone(&received));
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if flag.load(Ordering::SeqCst) {
                std::process::exit(128 + signal);
            }
            number.store(signal, Ordering::SeqCst);
            flag.store(true, Ordering::SeqCst);
            let name = match signal {
                SIGTERM => "SIGTERM",
                SIGHUP => "SIGHUP",
                _ => "Ctrl-C",
            };
            eprintln!("\n{name}: stopping after this step (Ctrl-C again to quit at once)...");
        }
    });
    Ok(received)
}

fn print_report(report: &Report) {
    println!("run            {}", report.run_dir.display());
    println!(
        "steps          {} ({} epochs)",
        report.steps, report.epochs_done
    );
    if let Some(plan) = &report.time_budget {
        println!("time budget    {plan}");
    }
    println!("training time  {:.1} s", report.train_s);
    println!("throughput     {:.0} views/s", report.views_per_s);
    if report.communication_s > 0.0 {
        println!(
            "communication  {:.1} s on rank 0 (gathers, gradient averaging)",
            report.communication_s
        );
    }
    if report.interrupted {
        println!(
            "interrupted: resume with `contrastive train --resume {}`",
            report.run_dir.display()
        );
        return;
    }
    crate::eval::print_evaluation(&report.evaluation, report.raw_pixels.as_ref());
    if let Some(seconds) = report.final_eval_s {
        println!("evaluation     {seconds:.1} s");
    }
    if let Some(model) = &report.model {
        println!("model          {}", model.display());
    }
}

/// A progress bar with loss, learning rate, throughput and ETA.
struct Progress {
    bar: Option<ProgressBar>,
    views_per_s: f64,
}

impl Progress {
    /// A bar on a terminal; plain lines when `quiet` or when stderr is not a terminal (a
    /// log file would get nothing from a bar).
    fn new(quiet: bool) -> Self {
        let bar = !quiet && std::io::stderr().is_terminal();
        Self {
            bar: bar.then(ProgressBar::hidden),
            views_per_s: 0.0,
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Observer for Progress {
    fn started(&mut self, plan: &Plan) {
        self.say(&format!(
            "training on {}: {} steps of {} views ({} per epoch){}",
            plan.setup,
            plan.total_steps,
            plan.views_per_step,
            plan.steps_per_epoch,
            if plan.done > 0 {
                format!(", resuming after step {}", plan.done)
            } else {
                String::new()
            }
        ));
        if let Some(bar) = &mut self.bar {
            *bar = ProgressBar::new(plan.total_steps).with_position(plan.done);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
                )
                .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(500));
        }
    }

    fn planned(&mut self, total_steps: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total_steps);
        }
    }

    fn record(&mut self, record: &Record) {
        match record {
            Record::Step {
                loss,
                lr,
                views_per_s,
                ..
            } => {
                // Smooth the per-step figure over the last ~20 steps.
                self.views_per_s = if self.views_per_s == 0.0 {
                    *views_per_s
                } else {
                    0.95 * self.views_per_s + 0.05 * views_per_s
                };
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    bar.set_message(format!(
                        "loss {loss:.4}  lr {lr:.4}  {:.0} views/s",
                        self.views_per_s
                    ));
                }
            }
            Record::Epoch {
                epochs_done,
                mean_loss,
                train_s,
                knn_top1,
                video_recall_at_1,
                eval_s,
                ..
            } => {
                let knn = match (knn_top1, video_recall_at_1, eval_s) {
                    (Some(k), _, Some(s)) => format!("  kNN top-1 {:.2} % ({s:.1} s)", k * 100.0),
                    (_, Some(r), Some(s)) => {
                        format!("  same-video recall@1 {:.2} % ({s:.1} s)", r * 100.0)
                    }
                    _ => String::new(),
                };
                self.say(&format!(
                    "epoch {epochs_done}: mean loss {mean_loss:.4}, {train_s:.1} s{knn}"
                ));
            }
        }
    }

    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_owned()),
            None => self.say(message),
        }
    }
}
