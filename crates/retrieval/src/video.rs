//! Frame retrieval in a set of videos: does a frame find its own video outside its own
//! scene, its own scene outside its own moment, and does a scene's clip find its video?

use contrastive_tensor::{Device, Kind, Tensor, no_grad};

use crate::search::normalize;
use crate::{Error, Result};

/// Where each frame of an embedded set comes from.
#[derive(Debug, Clone, Copy)]
pub struct FrameLabels<'a> {
    /// Each frame's video.
    pub video: &'a [usize],
    /// Each frame's scene (numbered across the set; a scene lies within one video).
    pub scene: &'a [usize],
    /// Each frame's index within its video.
    pub frame: &'a [usize],
}

/// Frame-retrieval figures of a set of videos searched against itself (cosine).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameRetrieval {
    /// `(k, fraction of queries with a frame of their own video among their k nearest)`,
    /// with the query's own scene left out of the search (its near-duplicates would answer
    /// it). Queries whose video has a single scene are not counted.
    pub video_recall_at_k: Vec<(usize, f64)>,
    /// Fraction of queries whose nearest frame is of their own scene, with the frames
    /// within `exclude` frames of the query left out. Queries whose scene has no frame
    /// outside that span are not counted.
    pub scene_recall_at_1: f64,
    /// Fraction of scenes whose clip embedding (the normalised mean of its normalised frame
    /// embeddings) has another clip of its own video as its nearest clip; `None` when no
    /// video has two scenes.
    pub clip_recall_at_1: Option<f64>,
}

/// Computes [`FrameRetrieval`] for `embeddings` `[N, D]` and the frames' `labels`, at each
/// `k` of `ks`, leaving frames within `exclude` of a query out of its scene search.
pub fn frame_retrieval(
    embeddings: &Tensor,
    labels: FrameLabels<'_>,
    ks: &[usize],
    exclude: usize,
) -> Result<FrameRetrieval> {
    let n = embeddings.size()[0];
    let lengths = [labels.video.len(), labels.scene.len(), labels.frame.len()];
    if embeddings.dim() != 2 || n < 2 || lengths.iter().any(|&l| l as i64 != n) {
        return Err(Error::Shape {
            op: "frame retrieval",
            message: format!(
                "expected embeddings [N >= 2, D] and N labels of each kind, got {:?} and {lengths:?}",
                embeddings.size()
            ),
        });
    }
    let cpu = |v: &[usize]| Tensor::from_slice(&v.iter().map(|&x| x as i64).collect::<Vec<_>>());
    let (video, scene, frame) = (cpu(labels.video), cpu(labels.scene), cpu(labels.frame));
    let max_k = ks
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .clamp(1, n as usize - 1) as i64;
    no_grad(|| {
        let z = normalize(&embeddings.to_kind(Kind::Float).to_device(Device::Cpu));
        let (mut video_hits, mut scene_hits) = (vec![0i64; ks.len()], 0i64);
        let (mut video_queries, mut scene_queries) = (0i64, 0i64);
        let chunk = (16 * 1024 * 1024 / n).clamp(1, 2048);
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let sim = z.narrow(0, start, len).matmul(&z.tr());
            let q_video = video.narrow(0, start, len).unsqueeze(1);
            let q_scene = scene.narrow(0, start, len).unsqueeze(1);
            let q_frame = frame.narrow(0, start, len).unsqueeze(1);
            let same_video = q_video.eq_tensor(&video.unsqueeze(0));
            let same_scene = q_scene.eq_tensor(&scene.unsqueeze(0));
            let near =
                same_video.logical_and(&(q_frame - frame.unsqueeze(0)).abs().le(exclude as i64));

            // Same video, own scene left out.
            let outside = same_scene.logical_not();
            let answerable = same_video.logical_and(&outside).any_dim(1, false);
            let masked = sim.masked_fill(&same_scene, f64::NEG_INFINITY);
            let top = masked.topk(max_k, 1, true, true).1;
            let found = same_video.gather(1, &top, false).to_kind(Kind::Int64);
            let hits = found.cumsum(1, Kind::Int64).gt(0);
            for (slot, &k) in ks.iter().enumerate() {
                let at = (k.clamp(1, max_k as usize) - 1) as i64;
                video_hits[slot] += hits
                    .select(1, at)
                    .logical_and(&answerable)
                    .sum(Kind::Int64)
                    .int64_value(&[]);
            }
            video_queries += answerable.sum(Kind::Int64).int64_value(&[]);

            // Same scene, the query's moment left out.
            let answerable = same_scene
                .logical_and(&near.logical_not())
                .any_dim(1, false);
            let nearest = sim.masked_fill(&near, f64::NEG_INFINITY).argmax(1, true);
            let hit = same_scene.gather(1, &nearest, false).squeeze_dim(1);
            scene_hits += hit
                .logical_and(&answerable)
                .sum(Kind::Int64)
                .int64_value(&[]);
            scene_queries += answerable.sum(Kind::Int64).int64_value(&[]);
            start += len;
        }
        let share = |hits: i64, of: i64| hits as f64 / of.max(1) as f64;
        Ok(FrameRetrieval {
            video_recall_at_k: ks
                .iter()
                .zip(&video_hits)
                .map(|(&k, &h)| (k, share(h, video_queries)))
                .collect(),
            scene_recall_at_1: share(scene_hits, scene_queries),
            clip_recall_at_1: clip_recall(&z, labels),
        })
    })
}

/// Top-1 same-video rate of scene clips (see [`FrameRetrieval::clip_recall_at_1`]).
fn clip_recall(z: &Tensor, labels: FrameLabels<'_>) -> Option<f64> {
    let scenes = labels.scene.iter().max().map_or(0, |&s| s + 1);
    let mut clip_video = vec![usize::MAX; scenes];
    for (&s, &v) in labels.scene.iter().zip(labels.video) {
        clip_video[s] = v;
    }
    let present: Vec<usize> = (0..scenes)
        .filter(|&s| clip_video[s] != usize::MAX)
        .collect();
    let scene_index = Tensor::from_slice(
        &labels
            .scene
            .iter()
            .map(|&s| present.binary_search(&s).expect("present") as i64)
            .collect::<Vec<_>>(),
    );
    let clips = present.len() as i64;
    let sums = Tensor::zeros([clips, z.size()[1]], (Kind::Float, Device::Cpu)).index_add(
        0,
        &scene_index,
        z,
    );
    let clip = normalize(&sums);
    let sim = clip
        .matmul(&clip.tr())
        .fill_diagonal_(f64::NEG_INFINITY, false);
    let nearest = Vec::<i64>::try_from(&sim.argmax(1, false)).ok()?;
    let videos: Vec<usize> = present.iter().map(|&s| clip_video[s]).collect();
    let (mut hits, mut queries) = (0, 0);
    for (c, &v) in videos.iter().enumerate() {
        if videos.iter().filter(|&&w| w == v).count() < 2 {
            continue;
        }
        queries += 1;
        hits += usize::from(videos[nearest[c] as usize] == v);
    }
    (queries > 0).then(|| hits as f64 / queries as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two videos of two scenes of three frames; each video's frames point one way, each
    /// scene adds its own offset.
    fn set() -> (Tensor, Vec<usize>, Vec<usize>, Vec<usize>) {
        let mut rows = Vec::new();
        let (mut video, mut scene, mut frame) = (Vec::new(), Vec::new(), Vec::new());
        for v in 0..2 {
            for s in 0..2 {
                for f in 0..3 {
                    let base = if v == 0 {
                        [1.0f32, 0.0, 0.0]
                    } else {
                        [0.0, 1.0, 0.0]
                    };
                    rows.extend([base[0], base[1], 0.3 * s as f32 + 0.01 * f as f32]);
                    video.push(v);
                    scene.push(v * 2 + s);
                    frame.push(s * 3 + f);
                }
            }
        }
        (Tensor::from_slice(&rows).view([12, 3]), video, scene, frame)
    }

    #[test]
    fn videos_that_point_their_own_way_are_found() {
        let (x, video, scene, frame) = set();
        let labels = FrameLabels {
            video: &video,
            scene: &scene,
            frame: &frame,
        };
        let r = frame_retrieval(&x, labels, &[1, 5], 0).unwrap();
        assert_eq!(r.video_recall_at_k, [(1, 1.0), (5, 1.0)]);
        assert_eq!(r.scene_recall_at_1, 1.0);
        assert_eq!(r.clip_recall_at_1, Some(1.0));
        // With every frame of a scene inside the excluded span, no scene query is answerable.
        let r = frame_retrieval(&x, labels, &[1], 5).unwrap();
        assert_eq!(r.scene_recall_at_1, 0.0);
    }

    #[test]
    fn crossed_labels_score_zero() {
        let (x, _, scene, frame) = set();
        // Scenes re-assigned across videos: each frame's nearest outside its scene is the
        // other scene of its true video, now labeled as another video.
        let crossed: Vec<usize> = scene.iter().map(|&s| [0, 1, 1, 0][s]).collect();
        let labels = FrameLabels {
            video: &crossed,
            scene: &scene,
            frame: &frame,
        };
        let r = frame_retrieval(&x, labels, &[1], 0).unwrap();
        assert_eq!(r.video_recall_at_k, [(1, 0.0)]);
        assert_eq!(r.clip_recall_at_1, Some(0.0));
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let (x, video, scene, frame) = set();
        let labels = FrameLabels {
            video: &video[..5],
            scene: &scene,
            frame: &frame,
        };
        let err = frame_retrieval(&x, labels, &[1], 0).unwrap_err();
        assert!(err.to_string().contains("frame retrieval"), "{err}");
    }
}
