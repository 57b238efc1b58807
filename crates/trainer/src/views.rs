//! The view transforms of a run: the recipe `data.augment` names, changed by `[views]`, and
//! multi-crop's local views.

use std::sync::Arc;

use contrastive_augment::presets::{self, ViewRecipe};
use contrastive_augment::{Compose, Transform};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::{area_range, in_range, invalid};

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

/// Multi-crop's local views: how many, their side and the area range of their crops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalViews {
    /// Local views per image (0: none).
    pub count: usize,
    /// Their side in pixels.
    pub side: usize,
    /// The area range of their crops.
    pub crop_scale: (f64, f64),
}

/// The view transforms on `size`-pixel images: `views` of the recipe `augment` names
/// (cycling through its own views: BYOL has two), changed by `changes`, then the `local`
/// views. `none` makes views that are the images themselves.
pub fn recipe_transforms(
    augment: &str,
    changes: &ViewsConfig,
    size: usize,
    views: usize,
    local: LocalViews,
) -> Result<Vec<Arc<dyn Transform>>> {
    let own: Vec<Compose> = match presets::named(augment, size) {
        Some(recipes) => recipes
            .into_iter()
            .map(|r| changes.apply(r, false).build())
            .collect::<std::result::Result<_, _>>()?,
        None => vec![Compose(Vec::new())],
    };
    let mut transforms: Vec<Arc<dyn Transform>> = (0..views)
        .map(|v| Arc::new(own[v % own.len()].clone()) as Arc<dyn Transform>)
        .collect();
    if local.count > 0 {
        let recipe = ViewRecipe::local(local.side, local.crop_scale);
        let recipe: Arc<dyn Transform> = Arc::new(changes.apply(recipe, true).build()?);
        transforms.extend(std::iter::repeat_n(recipe, local.count));
    }
    Ok(transforms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrastive_augment::Image;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The `[views]` section of these TOML lines, checked.
    fn changes(lines: &str) -> ViewsConfig {
        let views: ViewsConfig = toml::from_str(lines).unwrap();
        views.validate().unwrap();
        views
    }

    const NO_LOCAL: LocalViews = LocalViews {
        count: 0,
        side: 0,
        crop_scale: (0.0, 0.0),
    };

    #[test]
    fn every_key_reaches_the_views_and_local_views_keep_their_crops() {
        let changes = changes(
            "crop_scale = [0.3, 0.9]\nrotation = 12\nflip_p = 0.1\njitter = [0.1, 0.2, 0.3, 0.04]\n\
             jitter_p = 0.5\ngrayscale_p = 0.6\nblur_p = 0.7\nsolarize_p = 0.8",
        );
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
        let local = LocalViews {
            count: 2,
            side: 12,
            crop_scale: (0.05, 0.14),
        };
        let transforms = recipe_transforms("simclr-blur", &changes(off), 28, 2, local).unwrap();
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
        let plain = ViewsConfig::default();
        let transforms = recipe_transforms("simclr-blur", &plain, 28, 2, NO_LOCAL).unwrap();
        let changed = (0..8)
            .filter(|_| transforms[0].apply(&image, &mut rng).unwrap() != image)
            .count();
        assert!(changed > 0);
    }
}
