//! Temporal sampling for video: frames close in time within one video are positives, frames
//! of other videos negatives.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::error::invalid;
use crate::{Error, Result, epoch_rng};

/// A frame of a video dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRef {
    /// The video's index.
    pub video: usize,
    /// The frame's index within it.
    pub frame: usize,
}

/// How two frames of a batch relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Same video, at most `window` frames apart (and not the same frame).
    Positive,
    /// Another video, or (with a gap) the same video more than `gap` frames apart.
    Negative,
    /// Neither: the frame itself, or same-video frames between the window and the gap.
    Ignored,
}

/// The relation of frames `a` and `b` for a positive `window` and an optional same-video
/// negative `gap` (which must be larger than the window).
pub fn temporal_relation(a: FrameRef, b: FrameRef, window: usize, gap: Option<usize>) -> Relation {
    if a.video != b.video {
        return Relation::Negative;
    }
    let distance = a.frame.abs_diff(b.frame);
    match (distance, gap) {
        (0, _) => Relation::Ignored,
        (d, _) if d <= window => Relation::Positive,
        (d, Some(gap)) if d > gap => Relation::Negative,
        _ => Relation::Ignored,
    }
}

/// Batches of `frames_per_video` frames from each of `videos_per_batch` distinct videos. The
/// frames of one video are drawn from a random span of `window + 1` consecutive frames, so
/// every two of them are positives of each other.
#[derive(Debug, Clone)]
pub struct TemporalSampler {
    eligible: Vec<(usize, usize)>,
    skipped: Vec<usize>,
    videos_per_batch: usize,
    frames_per_video: usize,
    window: usize,
    batches: usize,
    seed: u64,
}

impl TemporalSampler {
    /// Over videos of `frame_counts[v]` frames. Videos shorter than `frames_per_video` are
    /// skipped and listed in
    /// [`TemporalSampler::skipped`]; an epoch has `total frames / batch size` batches.
    pub fn new(
        frame_counts: &[usize],
        videos_per_batch: usize,
        frames_per_video: usize,
        window: usize,
        seed: u64,
    ) -> Result<Self> {
        if videos_per_batch < 2 {
            return Err(invalid(
                "videos_per_batch",
                "needs at least 2 (negatives come from other videos)",
            ));
        }
        if frames_per_video < 2 {
            return Err(invalid(
                "frames_per_video",
                "needs at least 2 (positives come from the same video)",
            ));
        }
        if frames_per_video > window + 1 {
            return Err(invalid(
                "window",
                format!(
                    "{frames_per_video} distinct frames cannot all lie within {window} frames of each other"
                ),
            ));
        }
        // (video, frame count) of the videos long enough, and the indices of the others.
        let eligible: Vec<(usize, usize)> = frame_counts
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, n)| n >= frames_per_video)
            .collect();
        let skipped: Vec<usize> = (0..frame_counts.len())
            .filter(|&v| frame_counts[v] < frames_per_video)
            .collect();
        if eligible.len() < videos_per_batch {
            return Err(Error::NotEnoughData(format!(
                "{} video(s) have at least {frames_per_video} frames; a batch needs {videos_per_batch}",
                eligible.len()
            )));
        }
        let total: usize = eligible.iter().map(|&(_, n)| n).sum();
        let batches = (total / (videos_per_batch * frames_per_video)).max(1);
        Ok(Self {
            eligible,
            skipped,
            videos_per_batch,
            frames_per_video,
            window,
            batches,
            seed,
        })
    }

    /// Videos left out for being too short.
    pub fn skipped(&self) -> &[usize] {
        &self.skipped
    }

    /// Number of batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.batches
    }

    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<FrameRef>> {
        let mut rng = epoch_rng(self.seed, epoch);
        (0..self.batches)
            .map(|_| {
                let videos: Vec<&(usize, usize)> = self
                    .eligible
                    .choose_multiple(&mut rng, self.videos_per_batch)
                    .collect();
                videos
                    .into_iter()
                    .flat_map(|&(video, count)| {
                        let span = (self.window + 1).min(count);
                        let start = rng.gen_range(0..=count - span);
                        let frames: Vec<usize> = (start..start + span).collect();
                        frames
                            .choose_multiple(&mut rng, self.frames_per_video)
                            .map(|&frame| FrameRef { video, frame })
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .collect()
    }
}
