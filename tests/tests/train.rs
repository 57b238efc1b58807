//! The trainer end to end on generated image folders: every method learns, an interrupted
//! run resumes to the same parameters as an uninterrupted one, a killed process never
//! leaves a damaged checkpoint, and bad input is a clear error.

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

const METHODS: [(&str, &str); 5] = [
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
        // MoCo's loss first rises while real keys replace the random ones in its queue
        // (2 batches here), so its trend is read after that.
        let losses = if name == "moco-v2" {
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

#[test]
fn stopping_and_resuming_gives_the_same_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    // MoCo has the most state (key encoder, queue; symmetric: both views' keys queued);
    // triplet uses the P x K sampler.
    for name in ["moco-v2", "moco-v2-symmetric", "triplet"] {
        let method = method_lines(name);
        let whole = dir.path().join(format!("{name}-whole"));
        let (a, report) = run(config(&data, &whole, method, "max_steps = 9"), false);
        assert_eq!(report.steps, 9);

        // Stop after 5 steps (mid-epoch: 4 steps per epoch), then resume to 9.
        let parts = dir.path().join(format!("{name}-parts"));
        let cfg = config(&data, &parts, method, "max_steps = 9");
        let stop = AtomicBool::new(false);
        let mut first = Trainer::new(cfg.clone(), false).unwrap();
        let stopped = first
            .run(
                &mut StopAfter {
                    after: 5,
                    stop: &stop,
                },
                &stop,
            )
            .unwrap();
        assert!(stopped.interrupted && stopped.steps == 5, "{stopped:?}");
        drop(first);
        let (b, report) = run(cfg, true);
        assert_eq!(report.steps, 9);

        for ((name_a, ta), (name_b, tb)) in variables(&a).iter().zip(variables(&b).iter()) {
            assert_eq!(name_a, name_b);
            assert!(
                ta.equal(tb),
                "{name}: {name_a} differs by {}",
                (ta - tb).abs().max().double_value(&[])
            );
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
fn a_diverging_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(&dir.path().join("data"));
    let out = dir.path().join("run");
    let method = "[method]\nname = \"simclr\"\n[optimizer]\nname = \"sgd\"\nlr = 1e30";
    let mut trainer =
        Trainer::new(config(&data, &out, method, "checkpoint_every = 1"), false).unwrap();
    let err = trainer.run(&mut (), &AtomicBool::new(false)).unwrap_err();
    let Error::NonFiniteLoss {
        step, checkpoint, ..
    } = &err
    else {
        panic!("expected a non-finite loss, got {err}");
    };
    assert!(*step >= 2, "the first step's loss is finite: {err}");
    assert!(err.to_string().contains("optimizer.lr"), "{err}");
    // The checkpoint on disk is whole and from before the bad step.
    let saved = SafetensorsFile::read(checkpoint).unwrap();
    assert!(
        saved
            .tensors
            .values()
            .all(|t| t.isfinite().all().int64_value(&[]) == 1
                || t.kind() == contrastive_tensor::Kind::Int64)
    );
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
    cfg.data.dataset = "cifar10".into();
    cfg.data.dir = None;
    // SAFETY: tests in this file do not read the environment concurrently with this write
    // besides this test's own trainer.
    unsafe { std::env::set_var("CONTRASTIVE_DATA_DIR", dir.path().join("empty")) };
    let err = Trainer::new(cfg, false).unwrap_err().to_string();
    assert!(err.contains("cargo xtask download cifar10"), "{err}");
    // More classes per batch than the data has (4 shapes; 32 / 4 = 8 needed).
    let mut cfg = config(&data, &out, method_lines("supcon"), "");
    cfg.method.per_class = Some(4);
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

/// The child of [`killing_the_process_never_damages_a_checkpoint`]: trains until killed.
#[test]
#[ignore = "run by killing_the_process_never_damages_a_checkpoint"]
fn child_trains_until_killed() {
    let Some(out) = std::env::var_os("CONTRASTIVE_KILL_TEST_OUT") else {
        return;
    };
    let out = PathBuf::from(out);
    let data = out.parent().unwrap().join("data");
    let cfg = config(
        &data,
        &out,
        method_lines("moco-v2"),
        "checkpoint_every = 1\nepochs = 1000",
    );
    let resume = checkpoint_path(&out).is_file();
    let mut trainer = Trainer::new(cfg, resume).unwrap();
    trainer.run(&mut (), &AtomicBool::new(false)).unwrap();
}

#[test]
fn killing_the_process_never_damages_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    shapes(&dir.path().join("data"));
    let out = dir.path().join("run");
    let mut last_step = 0;
    let mut state = 7u64;
    for round in 0..6 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_trains_until_killed",
                "--ignored",
                "--nocapture",
            ])
            .env("CONTRASTIVE_KILL_TEST_OUT", &out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the child has saved past the last step, then kill it a random while
        // later (often in the middle of writing a checkpoint).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let step = contrastive_trainer::Checkpoint::read(&checkpoint_path(&out))
                .map_or(0, |c| c.position.step);
            if step > last_step {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no progress"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        std::thread::sleep(std::time::Duration::from_millis((state >> 33) % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let saved = contrastive_trainer::Checkpoint::read(&checkpoint_path(&out))
            .unwrap_or_else(|e| panic!("round {round}: damaged checkpoint: {e}"));
        assert!(saved.position.step > last_step, "round {round}");
        last_step = saved.position.step;
        // No temporary files pile up beside the checkpoint beyond the one being written.
        let leftovers = std::fs::read_dir(out.join("checkpoints")).unwrap().count();
        assert!(leftovers <= 2, "round {round}: {leftovers} files");
    }
}
