//! Temporal contrast for video: frames of one video at most `window` apart are positives
//! (multi-positive InfoNCE), frames of other videos negatives, and with a `gap`, frames of
//! the same video farther apart than it too.

use contrastive_losses::{InfoNce, InfoNceConfig};
use contrastive_tensor::{Kind, Tensor};

use serde::{Deserialize, Serialize};

use super::{MethodSettings, RunFacts, Sampling, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::error::{at_least, invalid, positive};

/// `[method]` of `name = "temporal"` (video datasets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemporalSettings {
    /// Softmax temperature.
    pub temperature: f64,
    /// Frames per video in a batch (the batch holds `data.batch_size` / this videos).
    pub per_video: usize,
    /// Frames at most this far apart in one video are positives.
    pub window: usize,
    /// Frames of one video farther apart than this are negatives too (larger than the
    /// window); absent: only other videos are negatives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<usize>,
}

impl Default for TemporalSettings {
    fn default() -> Self {
        Self {
            temperature: 0.2,
            per_video: 4,
            window: 4,
            gap: None,
        }
    }
}

impl MethodSettings for TemporalSettings {
    fn check(&self, run: &RunFacts) -> Result<()> {
        positive("method.temperature", self.temperature)?;
        if !run.video {
            return Err(invalid(
                "method.name",
                "temporal learns from video; set data.dataset to video or video-demo",
            ));
        }
        let (per_video, window) = (self.per_video, self.window);
        at_least("method.per_video", per_video, 2)?;
        if !run.batch_size.is_multiple_of(per_video) || run.batch_size / per_video < 2 {
            return Err(invalid(
                "method.per_video",
                format!(
                    "must divide data.batch_size ({}) into at least 2 videos",
                    run.batch_size
                ),
            ));
        }
        if window + 1 < per_video {
            return Err(invalid(
                "method.window",
                format!(
                    "{per_video} frames per video cannot all lie within {window} frames; \
                     use window >= {}",
                    per_video - 1
                ),
            ));
        }
        if let Some(gap) = self.gap.filter(|&g| g <= window) {
            return Err(invalid(
                "method.gap",
                format!("must be larger than the window ({window}), got {gap}"),
            ));
        }
        Ok(())
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(Temporal {
            loss: InfoNce::new(InfoNceConfig::new(self.temperature))?,
            per_video: self.per_video,
            window: self.window,
            gap: self.gap,
        }))
    }
}

#[derive(Debug)]
struct Temporal {
    /// The masked InfoNCE loss.
    loss: InfoNce,
    /// Frames of each video in a batch.
    per_video: usize,
    /// Largest distance, in frames, of a positive pair.
    window: usize,
    /// Smallest distance, in frames, beyond which frames of one video are negatives.
    gap: Option<usize>,
}

impl TrainMethod for Temporal {
    fn views(&self) -> usize {
        1
    }

    fn sampling(&self) -> Sampling {
        Sampling::VideoFrames {
            per_video: self.per_video,
            window: self.window,
        }
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let frames = step
            .batch
            .frames
            .as_ref()
            .expect("temporal batches carry frame indices");
        let (positive, negative) =
            temporal_masks(step.batch.labels(), frames, self.window, self.gap);
        let z = (step.embed)(step.model, step.batch.single())?;
        Ok(self.loss.masked(&z, &positive, &negative)?)
    }
}

/// The `[N, N]` positive and negative masks of a batch of frames of `videos` `[N]` at
/// `frames` `[N]`: positives are other frames of the same video at most `window` apart,
/// negatives frames of other videos and, with a `gap`, frames of the same video more than
/// `gap` apart (as `contrastive_samplers::temporal_relation` decides pair by pair).
pub fn temporal_masks(
    videos: &Tensor,
    frames: &Tensor,
    window: usize,
    gap: Option<usize>,
) -> (Tensor, Tensor) {
    let n = videos.size()[0];
    let same = videos.unsqueeze(1).eq_tensor(&videos.unsqueeze(0));
    let distance = (frames.unsqueeze(1) - frames.unsqueeze(0)).abs();
    let own = Tensor::eye(n, (Kind::Bool, videos.device()));
    let positive = same
        .logical_and(&distance.le(window as i64))
        .logical_and(&own.logical_not());
    let mut negative = same.logical_not();
    if let Some(gap) = gap {
        negative = negative.logical_or(&same.logical_and(&distance.gt(gap as i64)));
    }
    (positive, negative)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrastive_samplers::{FrameRef, Relation, temporal_relation};

    #[test]
    fn temporal_masks_agree_with_the_samplers_relation() {
        let refs: Vec<(usize, usize)> =
            vec![(0, 0), (0, 1), (0, 3), (0, 9), (1, 2), (1, 2), (1, 30)];
        let videos = Tensor::from_slice(&refs.iter().map(|r| r.0 as i64).collect::<Vec<_>>());
        let frames = Tensor::from_slice(&refs.iter().map(|r| r.1 as i64).collect::<Vec<_>>());
        for gap in [None, Some(5)] {
            let (pos, neg) = temporal_masks(&videos, &frames, 2, gap);
            for (a, &(va, fa)) in refs.iter().enumerate() {
                for (b, &(vb, fb)) in refs.iter().enumerate() {
                    let p = pos.int64_value(&[a as i64, b as i64]) == 1;
                    let q = neg.int64_value(&[a as i64, b as i64]) == 1;
                    let relation = temporal_relation(
                        FrameRef {
                            video: va,
                            frame: fa,
                        },
                        FrameRef {
                            video: vb,
                            frame: fb,
                        },
                        2,
                        gap,
                    );
                    // Two views of one frame (a != b, same frame) are positives here.
                    let expected = match relation {
                        Relation::Ignored if a != b && fa == fb && va == vb => (true, false),
                        Relation::Positive => (true, false),
                        Relation::Negative => (false, true),
                        Relation::Ignored => (false, false),
                    };
                    assert_eq!((p, q), expected, "{a} {b} gap {gap:?}");
                }
            }
        }
    }
}
