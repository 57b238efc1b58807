//! Video: clips encoded here with ffmpeg, read back frame by frame; frame folders; cached
//! video datasets; and every bad-input case.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use contrastive_data::{
    Dataset, Error, FolderOptions, FrameFolders, FrameOptions, FrameReader, Source, VideoChannels,
    VideoFiles, probe,
};

/// Encodes ffmpeg's test pattern: `seconds` long at `rate` fps, `width` x `height`.
fn encode_clip(path: &Path, seconds: u32, rate: u32, width: u32, height: u32) {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={width}x{height}:rate={rate}"))
        .args([
            "-t",
            &seconds.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "mpeg4",
        ])
        .arg(path)
        .status()
        .expect("ffmpeg runs (.ci/run installs it)");
    assert!(status.success());
}

fn clip(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    encode_clip(&path, 2, 10, 64, 48);
    path
}

#[test]
fn a_clip_is_read_back_with_the_right_count_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = clip(dir.path(), "clip.mp4");
    let info = probe(&path).unwrap();
    assert_eq!((info.width, info.height), (64, 48));
    assert!((info.duration.unwrap() - 2.0).abs() < 0.2, "{info:?}");

    let frames: Vec<_> = FrameReader::open(&path, &FrameOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(frames.len(), 20);
    assert!(frames.iter().all(|f| f.dim() == (48, 64, 3)));
    assert_ne!(frames[0], frames[19], "the test pattern moves");

    let options = FrameOptions {
        fps: Some(5.0),
        size: Some((24, 32)),
        channels: VideoChannels::Gray,
    };
    let reader = FrameReader::open(&path, &options).unwrap();
    assert_eq!(reader.frame_shape(), (24, 32, 1));
    let sampled: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(sampled.len(), 10);
    assert!(sampled.iter().all(|f| f.dim() == (24, 32, 1)));
}

#[test]
fn empty_corrupt_and_missing_videos_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.mp4");
    fs::write(&empty, b"").unwrap();
    let err = FrameReader::open(&empty, &FrameOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Video { path, message } if path == &empty && message.contains("0 bytes")),
        "{err}"
    );

    let corrupt = dir.path().join("corrupt.mp4");
    fs::write(&corrupt, vec![0x42u8; 4096]).unwrap();
    let err = probe(&corrupt).unwrap_err();
    assert!(
        matches!(&err, Error::Video { path, .. } if path == &corrupt),
        "{err}"
    );
    // With a size given there is no probe: the error comes from decoding instead.
    let sized = FrameOptions {
        size: Some((8, 8)),
        ..Default::default()
    };
    let result: Result<Vec<_>, _> = FrameReader::open(&corrupt, &sized).unwrap().collect();
    assert!(matches!(result, Err(Error::Video { .. })), "{result:?}");

    let absent = FrameReader::open(dir.path().join("absent.mp4"), &FrameOptions::default())
        .err()
        .unwrap();
    assert!(matches!(absent, Error::Io { .. }), "{absent}");
    let bad_fps = FrameOptions {
        fps: Some(0.0),
        ..Default::default()
    };
    assert!(matches!(
        FrameReader::open(&empty, &bad_fps),
        Err(Error::InvalidOption(_))
    ));
}

const CHILD_ENV: &str = "CONTRASTIVE_TEST_NO_FFMPEG";

#[test]
fn a_missing_ffmpeg_is_explained() {
    if let Some(video) = std::env::var_os(CHILD_ENV) {
        // In the child, PATH is empty: ffmpeg cannot be found.
        let sized = FrameOptions {
            size: Some((8, 8)),
            ..Default::default()
        };
        let err = FrameReader::open(PathBuf::from(video), &sized)
            .err()
            .unwrap();
        #[allow(clippy::print_stdout)]
        {
            println!("CHILD-ERROR {err}");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("some.mp4");
    fs::write(&path, b"something").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_missing_ffmpeg_is_explained",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .env("PATH", "")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Read to the end (the child finishes by itself), then reap it.
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(child.wait().unwrap().success());
    let line = lines
        .iter()
        .find_map(|l| l.split_once("CHILD-ERROR ").map(|(_, e)| e.to_owned()))
        .expect("the child reported its error");
    assert!(
        line.contains("ffmpeg") && line.contains("apt-get install ffmpeg"),
        "{line}"
    );
}

#[test]
fn frame_folders_index_frames_by_video() {
    let dir = tempfile::tempdir().unwrap();
    for (video, count) in [("walk", 3), ("run", 12)] {
        let folder = dir.path().join(video);
        fs::create_dir_all(&folder).unwrap();
        for i in 0..count {
            let img = image::RgbImage::from_pixel(8, 6, image::Rgb([i as u8, 0, 0]));
            img.save(folder.join(format!("frame{i}.png"))).unwrap();
        }
    }
    let frames = FrameFolders::open(dir.path(), FolderOptions::default()).unwrap();
    assert_eq!(frames.class_names(), ["run", "walk"]);
    assert_eq!(frames.frame_counts(), [12, 3]);
    assert_eq!(frames.len(), 15);
    let s = frames.get(10).unwrap();
    assert_eq!(s.label, Some(0));
    assert!(matches!(
        s.source,
        Source::Frame {
            video: 0,
            frame: 10,
            ..
        }
    ));
    assert_eq!(s.image[[0, 0, 0]], 10, "frame10.png comes after frame9.png");
    let s = frames.get(13).unwrap();
    assert!(
        matches!(
            s.source,
            Source::Frame {
                video: 1,
                frame: 1,
                ..
            }
        ),
        "{:?}",
        s.source
    );
}

#[test]
fn video_files_are_decoded_once_into_a_cache_and_bad_ones_counted() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    fs::create_dir_all(&videos).unwrap();
    encode_clip(&videos.join("a.mp4"), 1, 10, 32, 32);
    encode_clip(&videos.join("b.mkv"), 2, 10, 48, 32);
    fs::write(videos.join("broken.avi"), vec![7u8; 2048]).unwrap();
    fs::write(videos.join("zero.mp4"), b"").unwrap();
    let cache = dir.path().join("cache");
    let options = FrameOptions {
        fps: Some(5.0),
        size: Some((16, 16)),
        channels: VideoChannels::Rgb,
    };

    let set = VideoFiles::open(&videos, options, &cache, false).unwrap();
    assert_eq!(set.class_names(), ["a", "b"]);
    assert_eq!(set.frame_counts(), [5, 10]);
    assert_eq!(set.skipped().len(), 2);
    let s = set.get(7).unwrap();
    assert_eq!((s.label, s.image.dim()), (Some(1), (16, 16, 3)));
    assert!(matches!(
        s.source,
        Source::Frame {
            video: 1,
            frame: 2,
            ..
        }
    ));

    // A second open reads the cache (the same frames) without decoding again.
    let cached_files = fs::read_dir(&cache).unwrap().count();
    let again = VideoFiles::open(&videos, options, &cache, false).unwrap();
    assert_eq!(again.get(7).unwrap().image, s.image);
    assert_eq!(fs::read_dir(&cache).unwrap().count(), cached_files);

    let err = VideoFiles::open(&videos, options, &cache, true).unwrap_err();
    assert!(
        matches!(&err, Error::Video { path, .. } if path.ends_with("broken.avi")),
        "{err}"
    );
    let no_size = FrameOptions {
        size: None,
        ..options
    };
    assert!(matches!(
        VideoFiles::open(&videos, no_size, &cache, false),
        Err(Error::InvalidOption(_))
    ));
    let empty = dir.path().join("no-videos");
    fs::create_dir_all(&empty).unwrap();
    assert!(matches!(
        VideoFiles::open(&empty, options, &cache, false),
        Err(Error::Empty { what: "videos", .. })
    ));
}
