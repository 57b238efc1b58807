//! Video end to end: the temporal method trains on real video files (encoded and decoded by
//! ffmpeg), reports the video figures, skips bad videos with a note naming each, and the
//! trained model finds which video shows a frame, and when.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use contrastive_data::{DemoSpec, FrameOptions, FrameReader, Image, write_demo_videos};
use contrastive_trainer::{Observer, Record, TrainConfig, Trainer, VideoCollection, read_metrics};

/// Six distinct grayscale items (28 x 28): bars, a disc, a ring, a cross and a square.
fn items() -> Vec<Image> {
    let shape = |on: fn(f32, f32) -> bool| {
        Image::from_shape_fn((28, 28, 1), |(y, x, _)| {
            if on(x as f32 - 13.5, y as f32 - 13.5) {
                230
            } else {
                0
            }
        })
    };
    vec![
        shape(|x, y| x.abs() < 10.0 && y.abs() < 3.0),
        shape(|x, y| x.abs() < 3.0 && y.abs() < 10.0),
        shape(|x, y| x * x + y * y < 80.0),
        shape(|x, y| (x * x + y * y - 90.0).abs() < 30.0),
        shape(|x, y| (x.abs() < 2.5 || y.abs() < 2.5) && x.abs() < 11.0 && y.abs() < 11.0),
        shape(|x, y| x.abs() < 8.0 && y.abs() < 8.0 && (x.abs() > 5.0 || y.abs() > 5.0)),
    ]
}

/// The demo spec of these tests: 8 videos of two scenes, 32 x 32.
fn spec() -> DemoSpec {
    DemoSpec {
        videos: 8,
        scenes: 2,
        scene_frames: (10, 12),
        size: 32,
        cast: 2,
        fps: 10,
        seed: 1,
    }
}

/// A small demo set under `root`: `train/` (8 videos) and `test/` (4).
fn demo(root: &Path) {
    let spec = spec();
    write_demo_videos(&root.join("train"), &items(), &spec).unwrap();
    let test = DemoSpec {
        videos: 4,
        seed: 2,
        ..spec
    };
    write_demo_videos(&root.join("test"), &items(), &test).unwrap();
}

fn config(data: &Path, out: &Path, epochs: usize) -> TrainConfig {
    let text = format!(
        r#"
        [run]
        out = {out:?}
        epochs = {epochs}
        seed = 3
        threads = 2
        [data]
        dataset = "video"
        dir = {data:?}
        image_size = 32
        batch_size = 32
        augment = "none"
        [model]
        head_hidden = 64
        head_out = 32
        [method]
        name = "temporal"
        temperature = 0.2
        per_video = 4
        window = 4
        [optimizer]
        name = "sgd"
        lr = 0.1
        "#,
        out = out.display().to_string(),
        data = data.display().to_string(),
    );
    TrainConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Keeps the run's notes.
#[derive(Default)]
struct Notes(Vec<String>);

impl Observer for Notes {
    fn note(&mut self, message: &str) {
        self.0.push(message.to_owned());
    }

    fn warning(&mut self, message: &str) {
        self.0.push(message.to_owned());
    }
}

#[test]
fn temporal_training_learns_and_the_model_finds_frames_in_videos() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("videos");
    demo(&data);
    let out = dir.path().join("run");
    let mut trainer = Trainer::new(config(&data, &out, 8), false).unwrap();
    let report = trainer.run(&mut (), &AtomicBool::new(false)).unwrap();

    let losses: Vec<f64> = read_metrics(&out.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Step { loss, .. } => Some(loss),
            Record::Epoch { .. } => None,
        })
        .collect();
    let n = losses.len() / 3;
    let first = losses[..n].iter().sum::<f64>() / n as f64;
    let last = losses[losses.len() - n..].iter().sum::<f64>() / n as f64;
    assert!(last < first, "loss went from {first:.4} to {last:.4}");
    let e = &report.evaluation;
    for (name, value) in [
        ("video recall@1", e.video_recall_at_1),
        ("video recall@10", e.video_recall_at_10),
        ("scene recall@1", e.scene_recall_at_1),
        ("clip recall@1", e.clip_recall_at_1),
        ("video NMI", e.video_nmi),
    ] {
        let value = value.unwrap_or_else(|| panic!("{name} was not measured"));
        assert!((0.0..=1.0).contains(&value), "{name} = {value}");
    }
    assert!(
        e.video_recall_at_10 >= e.video_recall_at_1,
        "recall@10 below recall@1"
    );
    assert!(e.knn_top1.is_none(), "video runs report video figures");
    assert!(out.join("recall.png").is_file(), "the recall chart");

    // A frame taken out of a held-out video is found in that video at that moment.
    let config = TrainConfig::load(&out.join("config.toml"), &[]).unwrap();
    let collection = VideoCollection::embed(&config, &out.join("model.safetensors"), &[]).unwrap();
    let video = data.join("test").join("video_002.mp4");
    let options = FrameOptions {
        size: Some((32, 32)),
        ..Default::default()
    };
    let frame = FrameReader::open(&video, &options)
        .unwrap()
        .nth(7)
        .unwrap()
        .unwrap();
    let png = dir.path().join("query.png");
    contrastive_data::image_from_hwc(frame.view())
        .unwrap()
        .save(&png)
        .unwrap();
    let query = collection.embed_image(image::open(&png).unwrap()).unwrap();
    let hits = collection.search_frame(&query, 3).unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(
        (hits[0].name.as_str(), hits[0].frame),
        ("video_002", 7),
        "{:?}",
        hits[0].path
    );
    assert_eq!(hits[0].time, Some(0.7));
    assert!(hits[0].score > 0.99, "score {}", hits[0].score);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    // A whole video as the query finds itself first, and is shown by its middle frame.
    let (clip, middle) = collection.embed_clip(&video).unwrap();
    assert_eq!(middle.dim(), (32, 32, 3));
    let found = collection.search_clip(&clip, 2).unwrap();
    assert_eq!(found[0].path, video);
    assert!(found[0].score > 0.99, "score {}", found[0].score);

    // The frame store: written once, searched without reading the videos, brought up to
    // date by embedding only what changed.
    let model = out.join("model.safetensors");
    let frames = dir.path().join("frames.safetensors");
    let (written, update) =
        VideoCollection::update(&config, &model, &[], None, Some(&frames)).unwrap();
    let videos = written.videos().len();
    assert_eq!(update.embedded, videos);
    let opened = VideoCollection::open(&config, &model, &frames).unwrap();
    assert!(opened.warnings.is_empty(), "{:?}", opened.warnings);
    let from_store = opened.search_frame(&query, 3).unwrap();
    assert_eq!(
        from_store, hits,
        "the store answers as the fresh embedding does"
    );
    let from_store = opened.search_clip(&clip, 2).unwrap();
    assert_eq!(from_store, found);
    // A video rewritten (here: a copy of another) is found stale, then embedded alone.
    let changed = data.join("test").join("video_000.mp4");
    std::fs::copy(data.join("test").join("video_001.mp4"), &changed).unwrap();
    let stale = VideoCollection::open(&config, &model, &frames).unwrap();
    assert!(
        stale.warnings.iter().any(|w| w.contains("video_000.mp4")),
        "{:?}",
        stale.warnings
    );
    let previous = contrastive_retrieval::EmbeddingStore::load(&frames).unwrap();
    let (_, update) =
        VideoCollection::update(&config, &model, &[], Some(&previous), Some(&frames)).unwrap();
    assert_eq!(
        (update.embedded, update.reused),
        (1, videos - 1),
        "{update:?}"
    );
    let fresh = VideoCollection::open(&config, &model, &frames).unwrap();
    assert!(fresh.warnings.is_empty(), "{:?}", fresh.warnings);
    // A store of images is refused by name.
    let images = dir.path().join("images.safetensors");
    let mut info = previous.info().clone();
    info.videos = None;
    contrastive_retrieval::EmbeddingStore::new(previous.embeddings(), info)
        .unwrap()
        .save(&images)
        .unwrap();
    let err = VideoCollection::open(&config, &model, &images).unwrap_err();
    assert!(err.to_string().contains("not of video frames"), "{err}");
}

#[test]
fn corrupt_empty_and_short_videos_are_skipped_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("videos");
    demo(&data);
    let train = data.join("train");
    std::fs::write(train.join("corrupt.mp4"), b"not a video at all, only text").unwrap();
    std::fs::write(train.join("empty.mp4"), b"").unwrap();
    // A real video of two frames: shorter than the four frames a batch takes per video.
    let short = dir.path().join("short");
    let one = DemoSpec {
        videos: 1,
        scenes: 1,
        scene_frames: (2, 2),
        seed: 9,
        ..spec()
    };
    write_demo_videos(&short, &items(), &one).unwrap();
    std::fs::copy(short.join("video_000.mp4"), train.join("short.mp4")).unwrap();

    let out = dir.path().join("run");
    let mut notes = Notes::default();
    let mut trainer = Trainer::new(config(&data, &out, 1), false).unwrap();
    let report = trainer.run(&mut notes, &AtomicBool::new(false)).unwrap();
    assert!(report.steps > 0);
    for (file, why) in [
        ("corrupt.mp4", "decoding failed"),
        ("empty.mp4", "empty file"),
        ("short", "fewer than method.per_video"),
    ] {
        assert!(
            notes.0.iter().any(|n| n.contains(file) && n.contains(why)),
            "no note about {file} ({why}): {:?}",
            notes.0
        );
    }
}

#[test]
fn the_temporal_method_needs_video() {
    let text = r#"
        [run]
        out = "/tmp/never"
        epochs = 1
        [data]
        dataset = "fashion-mnist"
        batch_size = 32
        augment = "none"
        [method]
        name = "temporal"
        [optimizer]
        name = "sgd"
        lr = 0.1
    "#;
    let err = TrainConfig::from_toml(text).unwrap_err().to_string();
    assert!(err.contains("video"), "{err}");
    let window = text
        .replace("dataset = \"fashion-mnist\"", "dataset = \"video-demo\"")
        .replace(
            "name = \"temporal\"",
            "name = \"temporal\"\nper_video = 8\nwindow = 3",
        );
    let err = TrainConfig::from_toml(&window).unwrap_err().to_string();
    assert!(err.contains("method.window"), "{err}");
}

#[test]
fn folders_of_frame_images_train_like_video_files() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    demo(&videos);
    // The training videos as folders of PNG frames, one folder per video, and no held-out
    // folder: the figures are then measured on the training videos.
    let frames = dir.path().join("frames");
    let mut total = 0;
    for v in 0..8 {
        let name = format!("video_{v:03}");
        let out = frames.join(&name);
        std::fs::create_dir_all(&out).unwrap();
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(videos.join("train").join(format!("{name}.mp4")))
            .arg(out.join("f%d.png"))
            .status()
            .unwrap();
        assert!(status.success());
        total += std::fs::read_dir(&out).unwrap().count();
    }
    let out = dir.path().join("run");
    let mut trainer = Trainer::new(config(&frames, &out, 1), false).unwrap();
    let report = trainer.run(&mut (), &AtomicBool::new(false)).unwrap();
    assert!(report.evaluation.video_recall_at_1.is_some());
    assert!(report.evaluation.video_nmi.is_some());
    // Every frame of every video was read: the sampler's epoch covers them.
    assert_eq!(report.steps as usize, total / 32);
}
