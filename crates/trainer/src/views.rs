//! The view transforms of a run: the recipe `data.augment` names, changed by `[views]`, and
//! multi-crop's local views.

use std::sync::Arc;

use contrastive_augment::presets::{self, ViewRecipe};
use contrastive_augment::{Compose, Transform};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::config::{DataConfig, area_range, in_range};
use crate::error::invalid;

/// `[views]`: changes to the recipe `data.augment` names, each key optional (an absent key
/// keeps the recipe's value). They apply to every view the recipe makes and to multi-crop's
/// local views, except `crop_scale`, which the local views take from `data.local_scale`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewsConfig {
    /// Area range `[min, max]` of the random resized crop, as fractions of the image.
    #[serde(default)]
    pub crop_scale: Option<[f64; 2]>,
    /// Largest rotation about the centre, in degrees either way (uncovered pixels black).
    #[serde(default)]
    pub rotation: Option<f64>,
    /// Probability of the rotation (default 1 once `rotation` is set).
    #[serde(default)]
    pub rotation_p: Option<f64>,
    /// Probability of the horizontal flip.
    #[serde(default)]
    pub flip_p: Option<f64>,
    /// Colour jitter strengths `[brightness, contrast, saturation, hue]` (SimCLR's at
    /// strength `s`: `[0.8 s, 0.8 s, 0.8 s, 0.2 s]`).
    #[serde(default)]
    pub jitter: Option<[f64; 4]>,
    /// Probability of the colour jitter.
    #[serde(default)]
    pub jitter_p: Option<f64>,
    /// Probability of grayscale.
    #[serde(default)]
    pub grayscale_p: Option<f64>,
    /// Probability of the Gaussian blur.
    #[serde(default)]
    pub blur_p: Option<f64>,
    /// Probability of solarization.
    #[serde(default)]
    pub solarize_p: Option<f64>,
}

impl ViewsConfig {
    /// Whether any key is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks every value; the error names the key and its allowed range.
    pub fn validate(&self) -> Result<()> {
        area_range("views.crop_scale", self.crop_scale)?;
        if let Some(degrees) = self.rotation {
            in_range("views.rotation", degrees, 0.0, 180.0)?;
        }
        if let Some(jitter @ [b, c, s, h]) = self.jitter
            && !([b, c, s].iter().all(|v| v.is_finite() && *v >= 0.0) && (0.0..=0.5).contains(&h))
        {
            return Err(invalid(
                "views.jitter",
                format!(
                    "{jitter:?}: brightness, contrast and saturation must be >= 0, hue in \
                     [0, 0.5]"
                ),
            ));
        }
        let probabilities = [
            ("views.rotation_p", self.rotation_p),
            ("views.flip_p", self.flip_p),
            ("views.jitter_p", self.jitter_p),
            ("views.grayscale_p", self.grayscale_p),
            ("views.blur_p", self.blur_p),
            ("views.solarize_p", self.solarize_p),
        ];
        for (field, p) in probabilities {
            if let Some(p) = p {
                in_range(field, p, 0.0, 1.0)?;
            }
        }
        Ok(())
    }

    /// `recipe` with these changes; `local` views keep their own crop scale.
    pub fn apply(&self, recipe: ViewRecipe, local: bool) -> ViewRecipe {
        let crop_scale = match self.crop_scale {
            Some([min, max]) if !local => (min, max),
            _ => recipe.crop_scale,
        };
        let rotation_p = match (self.rotation_p, self.rotation) {
            (Some(p), _) => p,
            (None, Some(_)) => 1.0,
            (None, None) => recipe.rotation_p,
        };
        ViewRecipe {
            crop_scale,
            rotation_degrees: self.rotation.unwrap_or(recipe.rotation_degrees),
            rotation_p,
            flip_p: self.flip_p.unwrap_or(recipe.flip_p),
            jitter: self.jitter.unwrap_or(recipe.jitter),
            jitter_p: self.jitter_p.unwrap_or(recipe.jitter_p),
            grayscale_p: self.grayscale_p.unwrap_or(recipe.grayscale_p),
            blur_p: self.blur_p.unwrap_or(recipe.blur_p),
            solarize_p: self.solarize_p.unwrap_or(recipe.solarize_p),
            ..recipe
        }
    }
}

/// The view transforms of a run on `size`-pixel images: `views` of the recipe
/// `data.augment` names (cycling through its own views: BYOL has two), changed by `changes`,
/// then `data.local_views` local views. `none` makes views that are the images themselves.
pub fn view_transforms(
    data: &DataConfig,
    changes: &ViewsConfig,
    size: usize,
    views: usize,
) -> Result<Vec<Arc<dyn Transform>>> {
    let own: Vec<Compose> = match presets::named(&data.augment, size) {
        Some(recipes) => recipes
            .into_iter()
            .map(|r| changes.apply(r, false).build())
            .collect::<std::result::Result<_, _>>()?,
        None => vec![Compose(Vec::new())],
    };
    let mut transforms: Vec<Arc<dyn Transform>> = (0..views)
        .map(|v| Arc::new(own[v % own.len()].clone()) as Arc<dyn Transform>)
        .collect();
    if data.local_views > 0 {
        let local = ViewRecipe::local(data.local_side(size), data.local_crop_scale());
        let local: Arc<dyn Transform> = Arc::new(changes.apply(local, true).build()?);
        transforms.extend(std::iter::repeat_n(local, data.local_views));
    }
    Ok(transforms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use contrastive_augment::Image;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A SimCLR run with the views of `augment` and the given `[data]` and `[views]` lines.
    fn run_of(augment: &str, data: &str, views: &str) -> crate::Result<TrainConfig> {
        TrainConfig::from_toml(&format!(
            "[run]\nout = \"runs/x\"\nepochs = 1\n\
             [data]\ndataset = \"fashion-mnist\"\nbatch_size = 8\naugment = \"{augment}\"\n{data}\n\
             [views]\n{views}\n\
             [method]\nname = \"simclr\"\n[optimizer]\nname = \"sgd\"\nlr = 0.1\n"
        ))
    }

    fn config(data: &str, views: &str) -> crate::Result<TrainConfig> {
        run_of("simclr-blur", data, views)
    }

    #[test]
    fn every_key_reaches_the_views_and_local_views_keep_their_crops() {
        let changes = config(
            "",
            "crop_scale = [0.3, 0.9]\nrotation = 12\nflip_p = 0.1\njitter = [0.1, 0.2, 0.3, 0.04]\n\
             jitter_p = 0.5\ngrayscale_p = 0.6\nblur_p = 0.7\nsolarize_p = 0.8",
        )
        .unwrap()
        .views;
        let recipe = changes.apply(ViewRecipe::simclr(28, 1.0, true), false);
        let expected = ViewRecipe {
            size: 28,
            crop_scale: (0.3, 0.9),
            rotation_degrees: 12.0,
            rotation_p: 1.0,
            flip_p: 0.1,
            jitter: [0.1, 0.2, 0.3, 0.04],
            jitter_p: 0.5,
            grayscale_p: 0.6,
            blur_p: 0.7,
            solarize_p: 0.8,
        };
        assert_eq!(recipe, expected);
        let local = changes.apply(ViewRecipe::local(12, (0.1, 0.4)), true);
        assert_eq!(
            local,
            ViewRecipe {
                size: 12,
                crop_scale: (0.1, 0.4),
                ..expected
            }
        );
        let rotation_p = ViewsConfig {
            rotation: Some(5.0),
            rotation_p: Some(0.25),
            ..ViewsConfig::default()
        };
        assert_eq!(rotation_p.apply(recipe, false).rotation_p, 0.25);
        assert_eq!(ViewsConfig::default().apply(recipe, false), recipe);
    }

    #[test]
    fn views_with_every_step_turned_off_are_the_images() {
        let off = "crop_scale = [1.0, 1.0]\nflip_p = 0\njitter_p = 0\ngrayscale_p = 0\nblur_p = 0";
        let run = config("local_views = 2\nlocal_size = 12", off).unwrap();
        let transforms = view_transforms(&run.data, &run.views, 28, 2).unwrap();
        assert_eq!(transforms.len(), 4);
        let image = Image::from_shape_fn((28, 28, 1), |(y, x, _)| (y * 9 + x * 5) as u8);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for global in &transforms[..2] {
            assert_eq!(global.apply(&image, &mut rng).unwrap(), image);
        }
        for local in &transforms[2..] {
            assert_eq!(local.apply(&image, &mut rng).unwrap().dim(), (12, 12, 1));
        }
        // The recipe itself, unchanged, does change the images.
        let plain = config("", "").unwrap();
        let transforms = view_transforms(&plain.data, &plain.views, 28, 2).unwrap();
        let changed = (0..8)
            .filter(|_| transforms[0].apply(&image, &mut rng).unwrap() != image)
            .count();
        assert!(changed > 0);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (line, field) in [
            ("crop_scale = [0.5, 0.2]", "views.crop_scale"),
            ("crop_scale = [0.0, 1.0]", "views.crop_scale"),
            ("rotation = 200", "views.rotation"),
            ("rotation_p = -0.1", "views.rotation_p"),
            ("flip_p = 2", "views.flip_p"),
            ("jitter = [0.4, 0.4, 0.4, 0.6]", "views.jitter"),
            ("jitter = [-0.4, 0.4, 0.4, 0.1]", "views.jitter"),
            ("jitter_p = 1.5", "views.jitter_p"),
            ("grayscale_p = 1.5", "views.grayscale_p"),
            ("blur_p = nan", "views.blur_p"),
            ("solarize_p = 3", "views.solarize_p"),
            ("crop = [0.2, 1.0]", "unknown field `crop`"),
        ] {
            let err = config("", line).unwrap_err().to_string();
            assert!(err.contains(field), "{line}: {err}");
        }
        let err = run_of("none", "", "blur_p = 0.5").unwrap_err().to_string();
        assert!(err.contains("views") && err.contains("none"), "{err}");
    }
}
