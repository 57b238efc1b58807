//! The trainer end to end on generated image folders: every method learns, an interrupted
//! run resumes to the same parameters as an uninterrupted one, a run killed at random
//! moments ends as an uninterrupted one, a diverging run never saves a poisoned
//! checkpoint, and bad input is a clear error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use contrastive_e2e::write_shapes;
use contrastive_retrieval::Metric;
use contrastive_tensor::Device;
use contrastive_tensor::{SafetensorsFile, Tensor};
use contrastive_trainer::{
    Error, Observer, Record, Report, TrainConfig, Trainer, checkpoint_path, embed_dataset,
    embed_query, evaluate_saved, read_metrics,
};

/// A folder dataset of the four shapes (24 x 24): `train/` and `test/`.
fn shapes(root: &Path) -> PathBuf {
    write_shapes(&root.join("train"), 32, 24, 1);
    write_shapes(&root.join("test"), 8, 24, 2);
    root.to_path_buf()
}

/// A config training `method` (its `[method]` and `[optimizer]` lines) on `data` into `out`
/// for 6 epochs of 4 steps, with `extra` lines in `[run]`.
fn config(data: &Path, out: &Path, method: &str, extra: &str) -> TrainConfig {
    let epochs = if extra.contains("epochs") {
        ""
    } else {
        "epochs = 6"
    };
    let extra = format!("{epochs}\n{extra}");
    let text = format!(
        r#"
        [run]
        out = {out:?}
        seed = 5
        threads = 2
        {extra}
        [data]
        dataset = "folder"
        dir = {train:?}
        test_dir = {test:?}
        batch_size = 32
        augment = "simclr"
        [model]
        head_hidden = 64
        head_out = 32
        [eval]
        every_epochs = 0
        knn_k = 10
        linear_probe_epochs = 0
        {method}
        "#,
        out = out.display().to_string(),
        train = data.join("train").display().to_string(),
        test = data.join("test").display().to_string(),
    );
    TrainConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const METHODS: [(&str, &str); 11] = [
    (
        "simclr",
        "[method]\nname = \"simclr\"\ntemperature = 0.5\n[optimizer]\nname = \"sgd\"\nlr = 0.1",
    ),
    (
        "moco-v2",
        "[method]\nname = \"moco-v2\"\nqueue_size = 64\nmomentum = 0.9\n[optimizer]\nname = \"sgd\"\nlr = 0.1",
    ),
    (
        "supcon",
        "[method]\nname = \"supcon\"\nper_class = 8\n[optimizer]\nname = \"adamw\"\nlr = 0.003",
    ),
    (
        "triplet",
        "[method]\nname = \"triplet\"\nmining = \"batch-hard\"\nper_class = 8\n[optimizer]\nname = \"lars\"\nlr = 1.0\nexclude_bn_bias = true",
    ),
    (
        "pairs",
        "[method]\nname = \"pairs\"\nmargin = 0.5\nper_class = 8\n[optimizer]\nname = \"sgd\"\nlr = 0.05\nnesterov = true",
    ),
    (
        "byol",
        "[method]\nname = \"byol\"\nmomentum = 0.9\n[optimizer]\nname = \"sgd\"\nlr = 0.1",
    ),
    (
        "simsiam",
        "[method]\nname = \"simsiam\"\n[optimizer]\nname = \"sgd\"\nlr = 0.05",
    ),
    (
        "barlow-twins",
        "[method]\nname = \"barlow-twins\"\n[optimizer]\nname = \"sgd\"\nlr = 0.05",
    ),
    (
        "vicreg",
        "[method]\nname = \"vicreg\"\n[optimizer]\nname = \"sgd\"\nlr = 0.01",
    ),
    (
        "nnclr",
        "[method]\nname = \"nnclr\"\nsupport_size = 64\ntemperature = 0.5\n[optimizer]\nname = \"sgd\"\nlr = 0.05",
    ),
    (
        "hypersphere",
        "[method]\nname = \"hypersphere\"\n[optimizer]\nname = \"sgd\"\nlr = 0.1",
    ),
];

/// MoCo with both views as queries and keys: its state (two views' keys queued per step)
/// is checked by the resume test.
const MOCO_SYMMETRIC: (&str, &str) = (
    "moco-v2-symmetric",
    "[method]\nname = \"moco-v2\"\nqueue_size = 64\nmomentum = 0.9\nsymmetric = true\n[optimizer]\nname = \"sgd\"\nlr = 0.1",
);

/// The `[method]` and `[optimizer]` lines of `name` in [`METHODS`] or [`MOCO_SYMMETRIC`].
fn method_lines(name: &str) -> &'static str {
    METHODS
        .iter()
        .chain([&MOCO_SYMMETRIC])
        .find(|(n, _)| *n == name)
        .map(|(_, lines)| *lines)
        .unwrap_or_else(|| panic!("no method {name}"))
}

/// Stops the run after `after` steps.
struct StopAfter<'a> {
    after: u64,
    stop: &'a AtomicBool,
}

impl Observer for StopAfter<'_> {
    fn record(&mut self, record: &Record) {
        if let Record::Step { step, .. } = record
            && *step >= self.after
        {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

fn run(config: TrainConfig, resume: bool) -> (Trainer, Report) {
    let mut trainer = Trainer::new(config, resume).unwrap();
    let report = trainer.run(&mut (), &AtomicBool::new(false)).unwrap();
    (trainer, report)
}

fn losses(run_dir: &Path) -> Vec<f64> {
    read_metrics(&run_dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Step { loss, .. } => Some(loss),
            Record::Epoch { .. } => None,
        })
        .collect()
}

/// The mean loss of the first and of the last third of `losses`.
fn first_and_last_thirds(losses: &[f64]) -> (f64, f64) {
    let n = losses.len() / 3;
    let mean = |part: &[f64]| part.iter().sum::<f64>() / n as f64;
    (mean(&losses[..n]), mean(&losses[losses.len() - n..]))
}

#[test]
fn every_method_lowers_its_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    for (name, method) in METHODS {
        let out = dir.path().join(name);
        let (_, report) = run(config(&data, &out, method, ""), false);
        let losses = losses(&out);
        assert_eq!(losses.len() as u64, report.steps, "{name}");
        // MoCo's (NNCLR's) loss first rises while real embeddings replace the random ones
        // in its queue (support set; 2 batches here), so its trend is read after that.
        let losses = if name == "moco-v2" || name == "nnclr" {
            &losses[2..]
        } else {
            &losses[..]
        };
        let (first, last) = first_and_last_thirds(losses);
        assert!(
            last < first,
            "{name}: loss went from {first:.4} to {last:.4}"
        );
        assert!(
            report.evaluation.knn_top1.is_some(),
            "{name}: the final kNN ran"
        );
        assert!(
            report.evaluation.kmeans_nmi.is_some(),
            "{name}: k-means ran"
        );
        assert!(out.join("model.safetensors").is_file(), "{name}");
        assert!(out.join("report.json").is_file(), "{name}");
        assert!(out.join("loss.png").is_file(), "{name}: the loss chart");
    }
}

#[test]
fn views_made_on_the_device_train_as_those_made_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    // Two views per image, then multi-crop: two more of 12 pixels, and every view turned by
    // up to 15 degrees half the time (a `[views]` change).
    for local_views in [0, 2] {
        let mut runs = Vec::new();
        for place in ["cpu", "device"] {
            let out = dir.path().join(format!("{place}-{local_views}"));
            let mut config = config(&data, &out, method_lines("simclr"), "epochs = 3");
            config.data.augment_on = place.into();
            config.data.local_views = local_views;
            if local_views > 0 {
                config.views.rotation = Some(15.0);
                config.views.rotation_p = Some(0.5);
            }
            let (_, report) = run(config, false);
            let views = report.views_per_s * report.train_s / report.steps as f64;
            assert!(
                (views - 32.0 * (2 + local_views) as f64).abs() < 1e-6,
                "{place}: {views} views a step"
            );
            runs.push(losses(&out));
        }
        let (cpu, device) = (&runs[0], &runs[1]);
        assert_eq!(cpu.len(), device.len());
        // The same parameters make the same views (but for a rare rounding of a tie between
        // two levels), so the first losses agree closely; later ones drift apart slowly.
        assert!(
            (cpu[0] - device[0]).abs() < 1e-3 * cpu[0],
            "{local_views} local views: first loss {} on the CPU, {} on the device",
            cpu[0],
            device[0]
        );
        for (place, losses) in [("cpu", cpu), ("device", device)] {
            let (first, last) = first_and_last_thirds(losses);
            assert!(
                last < first,
                "{place}, {local_views} local views: loss went from {first:.4} to {last:.4}"
            );
        }
    }
}

#[test]
fn supcon_learns_from_local_views_too() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let out = dir.path().join("supcon-multi-crop");
    let mut config = config(&data, &out, method_lines("supcon"), "epochs = 4");
    config.data.local_views = 2;
    let (_, report) = run(config, false);
    let losses = losses(&out);
    assert_eq!(losses.len() as u64, report.steps);
    let (first, last) = first_and_last_thirds(&losses);
    assert!(last < first, "loss went from {first:.4} to {last:.4}");
}

fn variables(trainer: &Trainer) -> Vec<(String, Tensor)> {
    let mut vars: Vec<_> = trainer.var_store().variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Runs `config` from the start until it is stopped after `after` steps.
fn run_stopped_after(config: &TrainConfig, after: u64) -> Report {
    let stop = AtomicBool::new(false);
    let mut trainer = Trainer::new(config.clone(), false).unwrap();
    trainer
        .run(&mut StopAfter { after, stop: &stop }, &stop)
        .unwrap()
}

/// Fails unless `a` and `b` hold the same parameters, bit for bit.
fn assert_same_parameters(a: &Trainer, b: &Trainer, what: &str) {
    for ((name_a, ta), (name_b, tb)) in variables(a).iter().zip(variables(b).iter()) {
        assert_eq!(name_a, name_b);
        assert!(
            ta.equal(tb),
            "{what}: {name_a} differs by {}",
            (ta - tb).abs().max().double_value(&[])
        );
    }
}

#[test]
fn stopping_and_resuming_gives_the_same_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    // MoCo has the most state (key encoder, queue; symmetric: both views' keys queued);
    // triplet uses the P x K sampler; BYOL keeps a target network on a cosine momentum
    // schedule and a predictor, SimSiam a predictor, NNCLR a predictor and a support set;
    // Barlow Twins, VICReg and hypersphere keep nothing but the model and the optimiser.
    for name in [
        "moco-v2",
        "moco-v2-symmetric",
        "triplet",
        "byol",
        "simsiam",
        "nnclr",
        "barlow-twins",
        "vicreg",
        "hypersphere",
    ] {
        let method = method_lines(name);
        let whole = dir.path().join(format!("{name}-whole"));
        let (a, report) = run(config(&data, &whole, method, "max_steps = 9"), false);
        assert_eq!(report.steps, 9);

        // Stop after 5 steps (mid-epoch: 4 steps per epoch), then resume to 9.
        let parts = dir.path().join(format!("{name}-parts"));
        let cfg = config(&data, &parts, method, "max_steps = 9");
        let stopped = run_stopped_after(&cfg, 5);
        assert!(stopped.interrupted && stopped.steps == 5, "{stopped:?}");
        let (b, report) = run(cfg, true);
        assert_eq!(report.steps, 9);
        assert_same_parameters(&a, &b, name);
        // And the same method and optimiser state: every tensor of the last checkpoint.
        let (saved_a, saved_b) = (
            tensors_of(&checkpoint_path(&whole)),
            tensors_of(&checkpoint_path(&parts)),
        );
        assert_eq!(saved_a.len(), saved_b.len(), "{name}");
        for ((name_a, ta), (name_b, tb)) in saved_a.iter().zip(&saved_b) {
            assert_eq!(name_a, name_b);
            assert!(ta.equal(tb), "{name}: {name_a} differs in the checkpoint");
        }
        // The log has each step once.
        let steps: Vec<u64> = read_metrics(&parts.join("metrics.jsonl"))
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Record::Step { step, .. } => Some(step),
                Record::Epoch { .. } => None,
            })
            .collect();
        assert_eq!(steps, (1..=9).collect::<Vec<_>>(), "{name}");
    }
}

/// Keeps the run's notes and stops it after `after` steps.
struct Notes<'a> {
    notes: Vec<String>,
    after: u64,
    stop: &'a AtomicBool,
}

impl Observer for Notes<'_> {
    fn note(&mut self, message: &str) {
        self.notes.push(message.to_owned());
    }

    fn record(&mut self, record: &Record) {
        StopAfter {
            after: self.after,
            stop: self.stop,
        }
        .record(record);
    }
}

/// The `numerics: ...` note of a run of `config` stopped after `after` steps (resumed
/// when `resume`), and the precision and layout its directory's config.toml records.
fn numerics_of(config: &TrainConfig, after: u64, resume: bool) -> (Option<String>, String) {
    let stop = AtomicBool::new(false);
    let mut observer = Notes {
        notes: Vec::new(),
        after,
        stop: &stop,
    };
    let mut trainer = Trainer::new(config.clone(), resume).unwrap();
    trainer.run(&mut observer, &stop).unwrap();
    let note = observer
        .notes
        .into_iter()
        .find(|n| n.starts_with("numerics: "));
    let recorded = TrainConfig::load(&config.run.out.join("config.toml"), &[]).unwrap();
    // The normalisation the data was given is recorded too (measured from these gray
    // images).
    let (mean, std) = (recorded.data.mean.unwrap(), recorded.data.std.unwrap());
    assert!(mean.len() == 1 && std[0] > 0.0, "{mean:?} {std:?}");
    let layout = if recorded.run.channels_last == "on" {
        "channels-last"
    } else {
        "NCHW"
    };
    (note, format!("{} {layout}", recorded.run.precision))
}

#[test]
fn auto_numerics_are_measured_once_recorded_and_kept_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let method = method_lines("simclr");
    let first = config(&data, &dir.path().join("a"), method, "max_steps = 4");
    let (note, recorded) = numerics_of(&first, 4, false);
    let note = note.expect("an auto run says how it chose");
    assert!(
        note.starts_with(&format!("numerics: {recorded} (")),
        "{note} / {recorded}"
    );
    assert!(
        ["fp32", "bf16"].iter().all(|p| note.contains(p)) && note.contains("views/s"),
        "every candidate's rate: {note}"
    );
    // The same model, input and machine: the decision comes from the cache.
    let second = config(&data, &dir.path().join("b"), method, "max_steps = 4");
    let (note, again) = numerics_of(&second, 2, false);
    let note = note.unwrap();
    assert_eq!(again, recorded);
    let cached = note
        .split_once("cached in ")
        .map(|(_, path)| path.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("not from the cache: {note}"));
    let entry: serde_json::Value = serde_json::from_slice(&std::fs::read(cached).unwrap()).unwrap();
    assert_eq!(entry["precision"], recorded.split(' ').next().unwrap());
    // Resumed, the run keeps what it had, whatever the cache says meanwhile.
    let (note, resumed) = numerics_of(&second, 4, true);
    assert_eq!(resumed, recorded);
    assert!(
        note.unwrap()
            .contains("as the run had them before it was resumed"),
        "resumed"
    );
    // Explicit settings are obeyed and nothing is measured.
    let explicit = config(
        &data,
        &dir.path().join("c"),
        method,
        "max_steps = 1\nprecision = \"fp32\"\nchannels_last = \"off\"",
    );
    let (note, recorded) = numerics_of(&explicit, 1, false);
    assert_eq!((note, recorded.as_str()), (None, "fp32 NCHW"));
}

#[test]
fn a_time_budget_fixes_the_steps_revises_them_each_epoch_and_a_resumed_run_ends_where_it_would_have()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let method = method_lines("simclr");
    // 128 images in batches of 40: 3 steps per epoch, 30 in 10 epochs.
    let budgeted = |name: &str, budget: &str| {
        let mut cfg = config(
            &data,
            &dir.path().join(name),
            method,
            &format!("epochs = 10\ntime_budget = {budget:?}"),
        );
        cfg.data.batch_size = 40;
        cfg
    };
    let steps_of = |report: &Report| report.time_budget.map(|plan| plan.steps);
    // Spent before it is measured: the run stops at the step it decides at, mid-epoch.
    let (a, tight) = run(budgeted("tight", "0.001s"), false);
    assert_eq!((tight.steps, steps_of(&tight)), (20, Some(20)), "{tight:?}");
    assert!((tight.time_budget.unwrap().epochs - 20.0 / 3.0).abs() < 1e-9);
    // Interrupted before the decision and resumed: the same decision at the same step,
    // the same parameters.
    let cfg = budgeted("tight-resumed", "0.001s");
    let stopped = run_stopped_after(&cfg, 12);
    assert_eq!((stopped.steps, steps_of(&stopped)), (12, None));
    let (b, resumed) = run(cfg, true);
    assert_eq!((resumed.steps, steps_of(&resumed)), (20, Some(20)));
    assert_same_parameters(&a, &b, "tight");
    // Room for every epoch: run.epochs bound it. Stopped after the decision, the resumed
    // run keeps the saved plan and ends with the uninterrupted run's parameters.
    let (whole, roomy) = run(budgeted("roomy", "1h"), false);
    assert_eq!((roomy.steps, steps_of(&roomy)), (30, Some(30)));
    // Its final evaluation is planned from an embedding pass it timed; the plan is
    // revised at each epoch end after step 20 with steps to go (21, 24 and 27).
    let plan = roomy.time_budget.unwrap();
    assert!(plan.eval_s > 0.0 && plan.eval_s.is_finite(), "{roomy:?}");
    assert_eq!(plan.revised_at, Some(27), "{roomy:?}");
    // Stopped between the plan and its first revision, or between two revisions: the
    // resumed run makes the rest at the same steps and ends with the uninterrupted run's
    // parameters.
    for (after, revised) in [(20, None), (25, Some(24))] {
        let cfg = budgeted(&format!("roomy-resumed-{after}"), "1h");
        let stopped = run_stopped_after(&cfg, after);
        assert_eq!((stopped.steps, steps_of(&stopped)), (after, Some(30)));
        let at = stopped.time_budget.and_then(|plan| plan.revised_at);
        assert_eq!(at, revised, "{stopped:?}");
        let (parts, resumed) = run(cfg, true);
        assert_eq!(resumed.steps, 30);
        assert_eq!(resumed.time_budget.unwrap().revised_at, Some(27));
        assert_same_parameters(&whole, &parts, &format!("roomy, stopped after {after}"));
    }
    let report = std::fs::read_to_string(dir.path().join("roomy").join("report.md")).unwrap();
    assert!(
        report.contains("| time budget | 3600 s: 30 steps (10.00 epochs)"),
        "{report}"
    );
}

/// The epoch records of a run directory's log, with their mean losses as bits.
fn epoch_records(run_dir: &Path) -> Vec<(u64, u64, u64)> {
    read_metrics(&run_dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Epoch {
                step,
                epochs_done,
                mean_loss,
                ..
            } => Some((step, epochs_done, mean_loss.to_bits())),
            Record::Step { .. } => None,
        })
        .collect()
}

#[test]
fn a_run_stopped_at_an_epoch_end_resumes_with_whole_epoch_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let method = method_lines("simclr");
    let whole = dir.path().join("whole");
    let (_, whole_report) = run(config(&data, &whole, method, "epochs = 3"), false);
    let expected = epoch_records(&whole);
    assert_eq!(expected.len(), 3);
    // Stopped after the last step of epoch 1 (4 steps per epoch), then again after a step
    // in epoch 3, then after the run's very last step (step == total, epoch end pending).
    let parts = dir.path().join("parts");
    let cfg = config(&data, &parts, method, "epochs = 3");
    for (stop_after, resume) in [(4, false), (9, true), (12, true)] {
        let stop = AtomicBool::new(false);
        let mut trainer = Trainer::new(cfg.clone(), resume).unwrap();
        let mut observer = StopAfter {
            after: stop_after,
            stop: &stop,
        };
        let report = trainer.run(&mut observer, &stop).unwrap();
        assert!(
            report.interrupted && report.steps == stop_after,
            "{report:?}"
        );
    }
    let (_, report) = run(cfg, true);
    assert_eq!(report.epochs_done, 3, "{report:?}");
    assert!(report.model.is_some(), "{report:?}");
    assert_eq!(report.evaluation.knn_top1, whole_report.evaluation.knn_top1);
    // Each epoch once, at its step, with the same mean loss to the bit.
    assert_eq!(epoch_records(&parts), expected);
}

#[test]
fn a_saved_model_evaluates_as_the_run_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let out = dir.path().join("run");
    let cfg = config(&data, &out, method_lines("simclr"), "max_steps = 6");
    let (_, report) = run(cfg.clone(), false);
    let again = evaluate_saved(&cfg, &out.join("model.safetensors")).unwrap();
    assert_eq!(again.knn_top1, report.evaluation.knn_top1);
    assert_eq!(again.precision_at_1, report.evaluation.precision_at_1);
    assert!(again.kmeans_nmi.is_some_and(|v| (0.0..=1.0).contains(&v)));

    // An embedding store of the training images. A training image as the query, in colour,
    // finds itself; saved twice as large, an image of its class (it is prepared as the
    // store's images were: gray, 24 x 24).
    let model = out.join("model.safetensors");
    let store = embed_dataset(&cfg, &model).unwrap();
    assert_eq!(store.len(), 128);
    let id = &store.info().ids[37];
    let top = |image: image::DynamicImage| {
        let query = embed_query(&model, &store, image, Device::Cpu).unwrap();
        let found = store.search(&query, 3, Metric::Cosine).unwrap();
        store.info().ids[found.indices.int64_value(&[0, 0]) as usize].clone()
    };
    let colour = image::DynamicImage::ImageRgb8(image::open(id).unwrap().to_rgb8());
    assert_eq!(&top(colour), id);
    let larger =
        image::open(id)
            .unwrap()
            .resize_exact(48, 48, image::imageops::FilterType::Nearest);
    let class = |path: &str| std::path::Path::new(path).parent().unwrap().to_path_buf();
    assert_eq!(class(&top(larger)), class(id));
    // A store made by another model is refused.
    let other = dir.path().join("other.safetensors");
    std::fs::copy(&model, &other).unwrap();
    let (vs, _) = contrastive_models::load_model(&other, Device::Cpu).unwrap();
    contrastive_tensor::no_grad(|| {
        for (_, mut t) in vs.variables() {
            let _ = t.f_add_scalar_(0.5).unwrap();
        }
    });
    let config = contrastive_models::load_model(&model, Device::Cpu)
        .unwrap()
        .1
        .config();
    contrastive_models::save_model(&vs, &config, &other).unwrap();
    let image = image::open(id).unwrap();
    let err = embed_query(&other, &store, image, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("the store was made by model"), "{err}");
}

#[test]
fn the_final_knn_is_of_the_final_weights() {
    // The monitor measures after epoch 1 (step 4); two more steps follow, so the report must
    // not carry that measurement as the final one.
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let out = dir.path().join("run");
    let mut cfg = config(&data, &out, method_lines("simclr"), "max_steps = 6");
    cfg.eval.every_epochs = 1;
    let (_, report) = run(cfg.clone(), false);
    let again = evaluate_saved(&cfg, &out.join("model.safetensors")).unwrap();
    assert_eq!(report.evaluation.knn_top1, again.knn_top1);
}

#[test]
fn a_run_directory_is_never_overwritten_or_resumed_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let out = dir.path().join("run");
    let cfg = config(&data, &out, method_lines("simclr"), "max_steps = 2");
    let err = Trainer::new(cfg.clone(), true).unwrap_err().to_string();
    assert!(err.contains("nothing to resume"), "{err}");
    run(cfg.clone(), false);
    let err = Trainer::new(cfg, false).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn a_diverging_run_never_saves_a_poisoned_checkpoint() {
    // At lr 1e8 a batch-norm statistic overflows (step 9 here) while the loss is still
    // finite: a check of the loss alone used to save (and resume) that inf / NaN state.
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let out = dir.path().join("run");
    let method = "[method]\nname = \"simclr\"\n[optimizer]\nname = \"sgd\"\nlr = 1e8";
    let cfg = config(&data, &out, method, "checkpoint_every = 1");
    let mut trainer = Trainer::new(cfg.clone(), false).unwrap();
    let err = trainer.run(&mut (), &AtomicBool::new(false)).unwrap_err();
    drop(trainer);
    let Error::NonFiniteState {
        checkpoint, tensor, ..
    } = &err
    else {
        panic!("expected a non-finite state, got {err}");
    };
    assert!(tensor.starts_with("model."), "{err}");
    assert!(err.to_string().contains("optimizer.lr"), "{err}");
    // The checkpoint on disk is whole and finite (reading checks every tensor), so the run
    // resumes from it.
    let saved = contrastive_trainer::Checkpoint::read(checkpoint.as_ref())
        .unwrap_or_else(|e| panic!("{err}: the kept checkpoint is refused: {e}"));
    assert!(saved.position.step >= 1, "{err}");
    let resumed = Trainer::new(cfg.clone(), true).unwrap();
    assert_eq!(resumed.position(), saved.position);
    drop(resumed);

    // A checkpoint poisoned by hand (one NaN in a batch-norm statistic) is refused at
    // resume with the tensor named, before any step.
    let path = checkpoint_path(&out);
    let mut file = SafetensorsFile::read(&path).unwrap();
    let name = file
        .tensors
        .keys()
        .find(|n| n.ends_with("running_var"))
        .unwrap()
        .clone();
    let _ = file.tensors.get_mut(&name).unwrap().get(0).fill_(f64::NAN);
    let named: Vec<(&str, &Tensor)> = file.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    contrastive_tensor::save_safetensors(&path, &named, &file.metadata).unwrap();
    let err = Trainer::new(cfg, true).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("non-finite"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let out = dir.path().join("run");
    let method = method_lines("simclr");
    // A device this machine does not have.
    let mut cfg = config(&data, &out, method, "");
    cfg.run.device = "cuda:7".into();
    let err = Trainer::new(cfg, false).unwrap_err().to_string();
    assert!(err.contains("cuda:7"), "{err}");
    // A missing image folder.
    let mut cfg = config(&data, &out, method, "");
    cfg.data.dir = Some(dir.path().join("nowhere"));
    let err = Trainer::new(cfg, false).unwrap_err().to_string();
    assert!(
        err.contains("nowhere") && err.contains("does not exist"),
        "{err}"
    );
    // A standard dataset that is not downloaded names the download command.
    let mut cfg = config(&data, &out, method, "");
    cfg.data.dataset = contrastive_trainer::DatasetName::Cifar10;
    cfg.data.dir = None;
    // SAFETY: tests in this file do not read the environment concurrently with this write
    // besides this test's own trainer.
    unsafe { std::env::set_var("CONTRASTIVE_DATA_DIR", dir.path().join("empty")) };
    let err = Trainer::new(cfg, false).unwrap_err().to_string();
    assert!(err.contains("cargo xtask download cifar10"), "{err}");
    // A batch whose measured step does not fit in the memory the run may use: refused
    // before anything is written, with the batch that would fit.
    let mut cfg = config(&data, &dir.path().join("tight"), method, "");
    // (1 KiB: under what even the inputs of one step take, whatever else this test process
    // allocates while the trial steps are measured.)
    cfg.run.memory_limit = Some("1KiB".into());
    let err = Trainer::new(cfg, false).unwrap_err().to_string();
    assert!(
        err.contains("data.batch_size") && err.contains("GiB is available"),
        "{err}"
    );
    assert!(!dir.path().join("tight").exists());
    // More classes per batch than the data has (4 shapes; 32 / 4 = 8 needed).
    let mut cfg = config(&data, &out, method_lines("supcon"), "");
    let contrastive_trainer::MethodConfig::Supcon(supcon) = &mut cfg.method else {
        panic!("a supcon config")
    };
    supcon.per_class = 4;
    let err = Trainer::new(cfg, false).unwrap_err().to_string();
    assert!(err.contains("per_class >= 8"), "{err}");
    // Labeled methods on unlabeled data.
    let flat = dir.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for entry in std::fs::read_dir(data.join("train").join("ring")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, flat.join(path.file_name().unwrap())).unwrap();
    }
    let mut cfg = config(&data, &out, method_lines("supcon"), "");
    cfg.data.dir = Some(flat);
    cfg.data.test_dir = None;
    let err = Trainer::new(cfg, false).unwrap_err().to_string();
    assert!(err.contains("needs labels"), "{err}");
}

/// The methods the kill test runs: those with the most state (MoCo's key encoder and
/// queue, BYOL's target network and predictor, NNCLR's support set and predictor).
const KILLED: [&str; 3] = ["moco-v2", "byol", "nnclr"];

/// The config of the kill test's child: `method`, a checkpoint every step.
fn kill_test_config(data: &Path, out: &Path, method: &str) -> TrainConfig {
    config(
        data,
        out,
        method_lines(method),
        "checkpoint_every = 1\nepochs = 5",
    )
}

/// The child of [`killed_at_random_moments_a_run_ends_as_an_uninterrupted_one`]: starts or
/// resumes the run and trains it to the end, unless killed first.
#[test]
#[ignore = "run by killed_at_random_moments_a_run_ends_as_an_uninterrupted_one"]
fn child_trains_until_killed() {
    let Some(out) = std::env::var_os("CONTRASTIVE_KILL_TEST_OUT") else {
        return;
    };
    let out = PathBuf::from(out);
    let method = std::env::var("CONTRASTIVE_KILL_TEST_METHOD").unwrap();
    let data = out.parent().unwrap().join("data");
    let resume = checkpoint_path(&out).is_file();
    let mut trainer = Trainer::new(kill_test_config(&data, &out, &method), resume).unwrap();
    trainer.run(&mut (), &AtomicBool::new(false)).unwrap();
}

/// Every tensor of a `.safetensors` file, sorted by name.
fn tensors_of(path: &Path) -> Vec<(String, Tensor)> {
    SafetensorsFile::read(path)
        .unwrap()
        .tensors
        .into_iter()
        .collect()
}

#[test]
fn killed_at_random_moments_a_run_ends_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    for method in KILLED {
        killed_run_ends_as_uninterrupted(dir.path(), &data, method);
    }
}

/// Kills runs of `method` in `dir` (its data in `data`) at random moments until one ends,
/// and compares that end with an uninterrupted run's.
fn killed_run_ends_as_uninterrupted(dir: &Path, data: &Path, method: &str) {
    let whole = dir.join(format!("{method}-whole"));
    run(kill_test_config(data, &whole, method), false);

    // SIGKILL the child again and again: half the rounds at a random moment after it
    // starts (opening the run, writing config.toml, the first steps), half a random while
    // after a checkpoint (often while writing the next one, or the log, or at an epoch's
    // end), until a child finishes the run.
    let out = dir.join(format!("{method}-run"));
    let mut state = 7u64;
    let mut random = move |m: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) % m
    };
    let mut kills = 0;
    let finished = loop {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_trains_until_killed",
                "--ignored",
                "--nocapture",
            ])
            .env("CONTRASTIVE_KILL_TEST_OUT", &out)
            .env("CONTRASTIVE_KILL_TEST_METHOD", method)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let saved_step = || {
            contrastive_trainer::Checkpoint::read(&checkpoint_path(&out))
                .map_or(0, |c| c.position.step)
        };
        let before = saved_step();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        if kills % 2 == 1 {
            while saved_step() == before && child.try_wait().unwrap().is_none() {
                assert!(std::time::Instant::now() < deadline, "no progress");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(random(
            if kills % 2 == 1 { 300 } else { 1500 },
        )));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if kills == 16 {
            // Enough faults: let this child finish.
            break child.wait().unwrap();
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        // The checkpoint is whole at every kill, whatever it interrupted.
        if checkpoint_path(&out).is_file() {
            contrastive_trainer::Checkpoint::read(&checkpoint_path(&out))
                .unwrap_or_else(|e| panic!("kill {kills}: damaged checkpoint: {e}"));
        }
        let leftovers = std::fs::read_dir(out.join("checkpoints")).map_or(0, |d| d.count());
        assert!(leftovers <= 2, "kill {kills}: {leftovers} files");
    };
    assert!(
        finished.success(),
        "{method}: the last child failed: {finished}"
    );
    assert!(
        kills >= 6,
        "{method}: only {kills} kills landed before the run ended"
    );

    // The same weights to the bit, each step and epoch logged once with the same losses.
    let (a, b) = (
        tensors_of(&whole.join("model.safetensors")),
        tensors_of(&out.join("model.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((name_a, ta), (name_b, tb)) in a.iter().zip(&b) {
        assert_eq!(name_a, name_b);
        assert!(
            ta.equal(tb),
            "{method}: {name_a} differs after {kills} kills"
        );
    }
    let step_losses = |run_dir: &Path| -> Vec<(u64, u64)> {
        read_metrics(&run_dir.join("metrics.jsonl"))
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Record::Step { step, loss, .. } => Some((step, loss.to_bits())),
                Record::Epoch { .. } => None,
            })
            .collect()
    };
    let steps = step_losses(&out);
    assert_eq!(
        steps.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert_eq!(steps, step_losses(&whole));
    assert_eq!(epoch_records(&out), epoch_records(&whole));
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!((report.steps, report.epochs_done), (20, 5));
    // The method's state too (key or target network, queue or support set, predictor).
    let (a, b) = (
        tensors_of(&checkpoint_path(&whole)),
        tensors_of(&checkpoint_path(&out)),
    );
    assert_eq!(a.len(), b.len());
    for ((name_a, ta), (_, tb)) in a.iter().zip(&b) {
        assert!(
            ta.equal(tb),
            "{method}: {name_a} differs after {kills} kills"
        );
    }
}
