//! What one loaded split holds: images, labels and ids, and for video where each frame
//! comes from.

use std::path::PathBuf;
use std::sync::Arc;

use contrastive_augment::Image;

/// Length of the stretches a video without a scene table is cut into for evaluation, in
/// frames: a query's own stretch is left out of its search.
pub const STRETCH_WITHOUT_CUTS: usize = 32;

/// Images and labels of one split.
#[derive(Debug, Clone)]
pub struct SplitData {
    /// The images, `[H, W, C]` `u8`.
    pub images: Arc<Vec<Image>>,
    /// One label per image, when the dataset has labels.
    pub labels: Option<Vec<usize>>,
    /// One id per image: its file path, or `dataset:split:index`.
    pub ids: Vec<String>,
    /// For video: each frame's video, index, time and scene.
    pub video: Option<Arc<VideoIndex>>,
}

/// Where each frame of a video split comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoIndex {
    /// Each frame's video (an index into `names`).
    pub video: Vec<usize>,
    /// Each frame's index within its video.
    pub frame: Vec<usize>,
    /// Each frame's scene, numbered across the split: from the folder's `scenes.tsv` when
    /// it has one, else stretches of [`STRETCH_WITHOUT_CUTS`] frames.
    pub scene: Vec<usize>,
    /// The videos' names (file stems).
    pub names: Vec<String>,
    /// The video files.
    pub paths: Vec<PathBuf>,
    /// Frames per second of the decoded frames, when known.
    pub fps: Option<f64>,
    /// Frames of each video.
    pub counts: Vec<usize>,
    /// Each frame's file: its video file, or its own image in a folder of frames.
    pub sources: Vec<PathBuf>,
}

impl VideoIndex {
    /// The first frame of each video in the split's frame order.
    pub fn starts(&self) -> Vec<usize> {
        let mut starts = vec![0];
        for &count in &self.counts {
            starts.push(starts.last().copied().unwrap_or(0) + count);
        }
        starts.pop();
        starts
    }

    /// Seconds from the start of its video to frame `i` of the split, when the rate is known.
    pub fn time(&self, i: usize) -> Option<f64> {
        self.fps.map(|fps| self.frame[i] as f64 / fps)
    }
}
