//! Video data of a run: folders of video files (or the generated demo set) decoded into
//! frames, with each frame's video, index, time and scene.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use contrastive_data::{
    Channels, Dataset, DemoSpec, FolderOptions, FrameFolders, FrameOptions, Resize, Source, Split,
    VideoChannels, VideoFiles, download, fashion_mnist, is_video_file, probe, read_scenes,
    write_demo_videos,
};

use crate::config::DataConfig;
use crate::error::warn;
use crate::split::{STRETCH_WITHOUT_CUTS, SplitData, VideoIndex};
use crate::standard::find_standard;
use crate::{Error, Result};

/// Frame side of the demo set.
pub const DEMO_SIZE: usize = 48;

/// The folders of the demo set under `root` (`train/`, `test/`), generated when absent:
/// 120 training videos and 20 held-out ones, whose items come from Fashion-MNIST's own
/// training and test images (found where `cargo xtask download` puts it).
pub fn ensure_demo(root: &Path) -> Result<()> {
    for (split, source, videos, seed) in [
        ("train", Split::Train, 120, 0),
        ("test", Split::Test, 20, 1),
    ] {
        let dir = root.join(split);
        if dir.join(contrastive_data::SCENES_FILE).is_file() {
            continue;
        }
        let items = fashion_mnist(find_standard("fashion-mnist")?, source)?;
        let images = (0..items.len().min(10_000))
            .map(|i| Ok(items.image_view(i)?.to_owned()))
            .collect::<Result<Vec<_>>>()?;
        let spec = DemoSpec {
            videos,
            seed,
            size: DEMO_SIZE as u32,
            ..DemoSpec::default()
        };
        write_demo_videos(&dir, &images, &spec)?;
    }
    Ok(())
}

/// Where the frames of the videos in `dir` are cached once decoded: `dir/.frames` when it
/// can be made, else `<cache root>/frames` (or the system's temporary folder).
fn frame_cache(dir: &Path) -> PathBuf {
    let beside = dir.join(".frames");
    if std::fs::create_dir_all(&beside).is_ok() {
        return beside;
    }
    download::cache_root(&|k| std::env::var_os(k))
        .unwrap_or_else(std::env::temp_dir)
        .join("frames")
}

/// The training and held-out folders of a video dataset: `dir/train` and `dir/test` when
/// `dir` has a `train` folder, else `dir` alone.
pub fn split_dirs(dir: &Path) -> (PathBuf, Option<PathBuf>) {
    let train = dir.join("train");
    if train.is_dir() {
        let test = dir.join("test");
        (train, test.is_dir().then_some(test))
    } else {
        (dir.to_path_buf(), None)
    }
}

/// Whether `dir` holds video files (else it is taken as folders of frame images).
fn holds_videos(dir: &Path) -> Result<bool> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .any(|e| is_video_file(&e.path())))
}

/// Decodes every video of `dir` into frames of `size` pixels (RGB) at `config.fps`, labeled
/// by video; videos that cannot be decoded are skipped, and each skip is added to
/// `warnings`. A `dir` without video files is read as folders of frame images, one per
/// video (frames in natural name order, at `config.fps` frames per second when given).
pub fn load_split(
    dir: &Path,
    config: &DataConfig,
    size: usize,
    split: &str,
    warnings: &mut Vec<String>,
) -> Result<SplitData> {
    if !dir.is_dir() {
        return Err(Error::MissingData {
            message: format!("video folder {} does not exist", dir.display()),
        });
    }
    let strict = config.on_bad_file == "fail";
    let (set, skipped, counts): (Box<dyn Dataset>, _, _) = if holds_videos(dir)? {
        let options = FrameOptions {
            fps: config.fps,
            size: Some((size as u32, size as u32)),
            channels: VideoChannels::Rgb,
        };
        let set = VideoFiles::open(dir, options, frame_cache(dir), strict)?;
        let (skipped, counts) = (set.skipped().to_vec(), set.frame_counts());
        (Box::new(set), skipped, counts)
    } else {
        let options = FolderOptions {
            channels: Channels::Rgb,
            resize: Resize::ShorterSideThenCenterCrop { size: size as u32 },
            strict,
            ..Default::default()
        };
        let set = FrameFolders::open(dir, options)?;
        let (skipped, counts) = (set.skipped().to_vec(), set.frame_counts());
        (Box::new(set), skipped, counts)
    };
    // The dataset logged each skip itself when it opened; the count is logged here.
    for skipped in &skipped {
        warnings.push(format!(
            "skipped {}: {}",
            skipped.path.display(),
            skipped.reason
        ));
    }
    if !skipped.is_empty() {
        let summary = format!(
            "skipped {} of {} videos in {} (data.on_bad_file = \"fail\" stops instead)",
            skipped.len(),
            skipped.len() + counts.len(),
            dir.display()
        );
        warn(warnings, summary);
    }
    let samples = set.get_many(&(0..set.len()).collect::<Vec<_>>())?;
    let names = set.class_names().to_vec();
    let mut paths = vec![PathBuf::new(); names.len()];
    let (mut video, mut frame, mut sources) = (Vec::new(), Vec::new(), Vec::new());
    let mut images = Vec::with_capacity(samples.len());
    for sample in samples {
        let Source::Frame {
            video: v,
            frame: f,
            path,
        } = sample.source
        else {
            unreachable!("video datasets yield frames");
        };
        // A video file, or the folder of a video's frame files.
        paths[v] = if path.is_dir() || is_video_file(&path) {
            path.to_path_buf()
        } else {
            path.parent().unwrap_or(&path).to_path_buf()
        };
        video.push(v);
        frame.push(f);
        sources.push(path.to_path_buf());
        images.push(sample.image);
    }
    let native_fps = paths
        .first()
        .and_then(|p| probe(p).ok())
        .and_then(|i| i.fps);
    let fps = config.fps.or(native_fps);
    let scenes = read_scenes(dir)?;
    let mut scene = Vec::with_capacity(video.len());
    let mut next_scene = 0;
    for (v, &count) in counts.iter().enumerate() {
        // Scene starts in the file's frames, moved to the decoded rate when it differs.
        let starts: Vec<usize> = match scenes.as_ref().and_then(|s| s.get(&names[v])) {
            Some(starts) => starts
                .iter()
                .map(|&s| match (config.fps, native_fps) {
                    (Some(to), Some(from)) => (s as f64 * to / from).round() as usize,
                    _ => s,
                })
                .collect(),
            None => (0..count).step_by(STRETCH_WITHOUT_CUTS).collect(),
        };
        for f in 0..count {
            scene.push(next_scene + starts.partition_point(|&s| s <= f).saturating_sub(1));
        }
        next_scene += starts.len().max(1);
    }
    let ids = (0..images.len())
        .map(|i| format!("{}:{split}:{i}", config.dataset))
        .collect();
    Ok(SplitData {
        images: Arc::new(images),
        labels: Some(video.clone()),
        ids,
        video: Some(Arc::new(VideoIndex {
            video,
            frame,
            scene,
            names,
            paths,
            fps,
            counts,
            sources,
        })),
    })
}
