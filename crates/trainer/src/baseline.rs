//! The raw-pixel baseline: the run's own evaluation with the normalised pixels as features,
//! cached per dataset, and the plain comparison a run's report makes with it.
//!
//! A learned embedding that does worse than the pixels it was given has learned nothing
//! useful for these labels; every report says so instead of leaving the user to find out.

use std::path::PathBuf;

use contrastive_augment::{Image, to_batch};
use contrastive_data::download::cache_root;
use contrastive_tensor::{Tensor, write_atomically};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Result;
use crate::config::TrainConfig;
use crate::data::RunData;
use crate::evaluation::{Evaluation, Features, Input};

/// The guide's section on what to do when the embedding loses.
pub const GUIDE_SECTION: &str = "When the embedding loses to pixels";

/// The evaluation of `data`'s raw pixels (normalised as the run normalises them, then
/// flattened) under `config.eval` and `config.run.seed`: the same figures a model gets.
/// `None` for video data and for data without a labeled held-out split.
///
/// The result is cached under the cache root (`baselines/<key>.json`), keyed by a SHA-256 of
/// every image, label, the normalisation and the evaluation settings, so a dataset's
/// baseline is measured once, however many runs use it; a damaged cache entry is measured
/// again.
pub fn raw_pixel_baseline(config: &TrainConfig, data: &RunData) -> Result<Option<Evaluation>> {
    let Some(test) = data.test.as_ref().filter(|t| t.labels.is_some()) else {
        return Ok(None);
    };
    if test.video.is_some() || data.train.labels.is_none() {
        return Ok(None);
    }
    let cached = cache_file(config, data)?;
    if let Some(path) = &cached
        && let Ok(text) = std::fs::read_to_string(path)
        && let Ok(evaluation) = serde_json::from_str::<Evaluation>(&text)
    {
        return Ok(Some(evaluation));
    }
    let format = Input::format(&data.mean, &data.std, false)?;
    let pixels = |images: &[Image]| -> Result<Tensor> {
        let parts = images
            .chunks(1024)
            .map(|chunk| Ok(to_batch(chunk, &format)?.flatten(1, -1)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0))
    };
    let features = Features::labeled(&data.train, test, &pixels)?;
    let evaluation = features.evaluate(&config.eval, data.classes.len(), config.run.seed, None)?;
    if let Some(path) = cached {
        let json = serde_json::to_string_pretty(&evaluation).expect("an evaluation serialises");
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|()| write_atomically(&path, json.as_bytes()).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!(
                "could not cache the raw-pixel baseline in {}: {e}",
                path.display()
            );
        }
    }
    Ok(Some(evaluation))
}

/// Where the baseline of `data` under `config` is cached (`None` without a cache root).
fn cache_file(config: &TrainConfig, data: &RunData) -> Result<Option<PathBuf>> {
    #[derive(Serialize)]
    struct Settings<'a> {
        eval: &'a crate::config::EvalConfig,
        seed: u64,
        classes: usize,
        mean: &'a [f32],
        std: &'a [f32],
    }
    let Some(root) = cache_root(&|k| std::env::var_os(k)) else {
        return Ok(None);
    };
    let mut hash = Sha256::new();
    hash.update(b"contrastive raw-pixel baseline 1\n");
    let settings = Settings {
        eval: &config.eval,
        seed: config.run.seed,
        classes: data.classes.len(),
        mean: &data.mean,
        std: &data.std,
    };
    let settings = serde_json::to_string(&settings).expect("the settings serialise");
    hash.update(settings.as_bytes());
    for split in std::iter::once(&data.train).chain(data.test.as_ref()) {
        hash.update((split.images.len() as u64).to_le_bytes());
        for image in split.images.iter() {
            let (h, w, c) = image.dim();
            for d in [h, w, c] {
                hash.update((d as u64).to_le_bytes());
            }
            match image.as_slice() {
                Some(bytes) => hash.update(bytes),
                None => hash.update(image.iter().copied().collect::<Vec<u8>>()),
            }
        }
        for &label in split.labels.iter().flatten() {
            hash.update((label as u64).to_le_bytes());
        }
    }
    let key: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(root.join("baselines").join(format!("{key}.json"))))
}

/// A model's figures held against those of the raw pixels of the same data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PixelComparison {
    /// The raw pixels' figures.
    pub raw_pixels: Evaluation,
    /// The figures on which the model does worse (see [`worse_than_pixels`]).
    pub worse_on: Vec<String>,
}

impl PixelComparison {
    /// `model` against the raw pixels of `data` (`None` where [`raw_pixel_baseline`] has
    /// none, or `model` has no figures).
    pub fn of(config: &TrainConfig, data: &RunData, model: &Evaluation) -> Result<Option<Self>> {
        if *model == Evaluation::default() {
            return Ok(None);
        }
        Ok(raw_pixel_baseline(config, data)?.map(|raw_pixels| Self {
            worse_on: worse_than_pixels(model, &raw_pixels),
            raw_pixels,
        }))
    }

    /// The warning to give, when the model loses anywhere.
    pub fn warning(&self) -> Option<String> {
        loses_to_pixels(&self.worse_on)
    }
}

/// The figures on which `model` does worse than `pixels` (kNN, linear probe, precision@1,
/// MAP@R, k-means NMI), by name; figures either lacks are left out.
pub fn worse_than_pixels(model: &Evaluation, pixels: &Evaluation) -> Vec<String> {
    [
        ("kNN", model.knn_top1, pixels.knn_top1),
        (
            "linear probe",
            model.linear_probe_top1,
            pixels.linear_probe_top1,
        ),
        ("precision@1", model.precision_at_1, pixels.precision_at_1),
        ("MAP@R", model.map_at_r, pixels.map_at_r),
        ("NMI", model.kmeans_nmi, pixels.kmeans_nmi),
    ]
    .into_iter()
    .filter(|(_, m, p)| matches!((m, p), (Some(m), Some(p)) if m < p))
    .map(|(name, _, _)| name.to_owned())
    .collect()
}

/// The sentence a report prints when the embedding loses on `figures` (none: `None`).
///
/// ```
/// let said = contrastive_trainer::loses_to_pixels(&["kNN".into(), "NMI".into()]);
/// assert!(said.unwrap().starts_with("the embedding is worse than raw pixels on kNN and NMI"));
/// ```
pub fn loses_to_pixels(figures: &[String]) -> Option<String> {
    let list = match figures {
        [] => return None,
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    Some(format!(
        "the embedding is worse than raw pixels on {list}; see the guide's \"{GUIDE_SECTION}\" \
         (docs/guide.md)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_figures_both_have_and_the_model_does_worse_on_are_named() {
        let model = Evaluation {
            knn_top1: Some(0.80),
            linear_probe_top1: Some(0.95),
            kmeans_nmi: Some(0.60),
            map_at_r: Some(0.5),
            ..Default::default()
        };
        let pixels = Evaluation {
            knn_top1: Some(0.85),
            linear_probe_top1: Some(0.90),
            kmeans_nmi: Some(0.70),
            ..Default::default()
        };
        let worse = worse_than_pixels(&model, &pixels);
        assert_eq!(worse, ["kNN", "NMI"]);
        let said = loses_to_pixels(&worse).unwrap();
        assert!(said.starts_with("the embedding is worse than raw pixels on kNN and NMI;"));
        assert_eq!(
            loses_to_pixels(&["a".into(), "b".into(), "c".into()]).unwrap()[..50],
            *"the embedding is worse than raw pixels on a, b and"
        );
        assert_eq!(loses_to_pixels(&[]), None);
        assert!(worse_than_pixels(&pixels, &pixels).is_empty());
    }
}
