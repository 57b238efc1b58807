//! `cargo xtask preview`: a PNG grid of images and augmented views of them, for looking at
//! what a preset does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use contrastive_augment::{Compose, Image, Transform, presets, view_rows};
use contrastive_data::{Dataset, Split, fashion_mnist, hwc_from_image};
use contrastive_draw::view_grid;

/// Writes `out`: one row per source image (the first `rows` of Fashion-MNIST's test set, or
/// the given picture), the source first, then `views` views by `preset`.
pub fn run(
    preset: &str,
    image: Option<&Path>,
    rows: usize,
    views: usize,
    out: &Path,
    data_dir: Option<PathBuf>,
) -> Result<()> {
    let own: Vec<Compose> = match preset {
        "multi-crop" if views >= 2 => presets::multi_crop(96, 48, views - 2)?,
        "multi-crop" => {
            bail!("multi-crop shows 2 global views and the rest local: --views 2 or more")
        }
        name => match presets::named(name, 96) {
            Some(recipes) => recipes
                .iter()
                .map(|r| r.build())
                .collect::<Result<_, _>>()?,
            None => bail!(
                "unknown preset {name:?}: {} or multi-crop",
                presets::NAMES.join(", ")
            ),
        },
    };
    // BYOL's two views alternate; multi-crop has one transform per view.
    let transforms: Vec<Arc<dyn Transform>> = own
        .into_iter()
        .map(|view| Arc::new(view) as Arc<dyn Transform>)
        .collect();
    let sources: Vec<Image> = match image {
        Some(path) => {
            let picture = contrastive_data::read_image(path)?;
            vec![hwc_from_image(&picture.to_rgb8().into())]
        }
        None => {
            let dir = crate::download::run("fashion-mnist", data_dir)?;
            let test = fashion_mnist(&dir, Split::Test)?;
            (0..rows)
                .map(|i| test.get(i * 101).map(|s| s.image))
                .collect::<Result<_, _>>()?
        }
    };
    let rows_n = sources.len();
    view_grid(out, &view_rows(&sources, &transforms, views, 0)?)?;
    println!(
        "preview: wrote {} ({rows_n} images x {views} views, preset {preset})",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_has_one_row_per_image_and_a_column_per_view() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("in.png");
        image::RgbImage::from_fn(50, 40, |x, y| image::Rgb([x as u8 * 5, y as u8 * 6, 90]))
            .save(&source)
            .unwrap();
        let out = dir.path().join("grid.png");
        run("simclr-blur", Some(&source), 1, 3, &out, None).unwrap();
        let grid = image::open(&out).unwrap();
        // 4 columns (source + 3 views) of 96-pixel cells with 4-pixel gaps.
        assert_eq!((grid.width(), grid.height()), (4 * 100 + 4, 100 + 4));
        for preset in ["moco-v2", "byol", "multi-crop"] {
            run(preset, Some(&source), 1, 4, &out, None).unwrap();
            let grid = image::open(&out).unwrap();
            assert_eq!(
                (grid.width(), grid.height()),
                (5 * 100 + 4, 100 + 4),
                "{preset}"
            );
        }
        assert!(run("multi-crop", Some(&source), 1, 1, &out, None).is_err());
        assert!(run("swav", Some(&source), 1, 3, &out, None).is_err());
    }
}
