//! Temporal contrast for video: frames of one video at most `window` apart are positives
//! (multi-positive InfoNCE), frames of other videos negatives, and with a `gap`, frames of
//! the same video farther apart than it too.

use contrastive_losses::{InfoNce, InfoNceConfig};
use contrastive_tensor::{Kind, Tensor};

use super::{Registration, Sampling, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::config::{DEFAULT_WINDOW, MethodConfig};

pub(super) const REGISTRATION: Registration = Registration {
    name: "temporal",
    build,
};

fn build(config: &MethodConfig, _: &Setup) -> Result<Box<dyn TrainMethod>> {
    Ok(Box::new(Temporal {
        loss: InfoNce::new(InfoNceConfig::new(config.temperature.unwrap_or(0.2)))?,
        window: config.window.unwrap_or(DEFAULT_WINDOW),
        gap: config.gap,
    }))
}

#[derive(Debug)]
struct Temporal {
    /// The masked InfoNCE loss.
    loss: InfoNce,
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
        Sampling::VideoFrames
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
