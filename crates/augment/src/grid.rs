//! A picture of what a recipe does: images and their views side by side.

use std::sync::Arc;

use crate::error::invalid;
use crate::{Image, MultiViewPipeline, Result, Transform, resize};

/// One row per image of `sources`: the image itself (resized to the first view's side), then
/// `columns` views of it, view `v` by `transforms[v % transforms.len()]` (so a recipe's
/// different views take turns), drawn from `seed`. Every picture is scaled (nearest) to
/// fill a square cell of at least 96 pixels, cells 4 pixels apart on white. The sources must
/// share a channel count (else an error).
///
/// ```
/// use std::sync::Arc;
/// use contrastive_augment::{Image, Transform, presets::ViewRecipe, view_grid};
/// let image = Image::from_shape_fn((28, 28, 1), |(y, x, _)| (y * 9 + x) as u8);
/// let view: Arc<dyn Transform> = Arc::new(ViewRecipe::w1().build()?);
/// let grid = view_grid(&[image.clone(), image], &[view], 2, 0)?;
/// // 2 rows x 3 cells (the source, 2 views) of 96 pixels, 4-pixel gaps.
/// assert_eq!(grid.dim(), (2 * 100 + 4, 3 * 100 + 4, 1));
/// # Ok::<(), contrastive_augment::Error>(())
/// ```
pub fn view_grid(
    sources: &[Image],
    transforms: &[Arc<dyn Transform>],
    columns: usize,
    seed: u64,
) -> Result<Image> {
    if sources.windows(2).any(|w| w[0].dim().2 != w[1].dim().2) {
        return Err(invalid(
            "view_grid",
            "sources",
            "the images must have one channel count",
        ));
    }
    let transforms: Vec<_> = transforms.iter().cycle().take(columns).cloned().collect();
    let cols = transforms.len() + 1;
    let pipeline = MultiViewPipeline::new(transforms, seed);
    let items: Vec<usize> = (0..sources.len()).collect();
    let views = pipeline.apply(sources, &items, 0)?;
    let (side, channels) = match views.first().and_then(|v| v.first()) {
        Some(view) => (view.dim().0, view.dim().2),
        None => sources
            .first()
            .map_or((0, 1), |s| (s.dim().0.min(s.dim().1), s.dim().2)),
    };
    let cell = views
        .iter()
        .filter_map(|v| v.first().map(|view| view.dim().0))
        .chain([side, 96])
        .max()
        .unwrap_or(96);
    let pad = 4;
    let rows = sources.len();
    let mut grid = Image::from_elem(
        (
            rows * (cell + pad) + pad,
            cols * (cell + pad) + pad,
            channels,
        ),
        255,
    );
    for (r, source) in sources.iter().enumerate() {
        let row = std::iter::once(resize(source, side, side))
            .chain(views.iter().map(|v| Ok(v[r].clone())));
        for (col, picture) in row.enumerate() {
            let picture = picture?;
            let (top, left) = (pad + r * (cell + pad), pad + col * (cell + pad));
            let (ph, pw, _) = picture.dim();
            for y in 0..cell {
                for x in 0..cell {
                    for ch in 0..channels {
                        grid[[top + y, left + x, ch]] = picture[[y * ph / cell, x * pw / cell, ch]];
                    }
                }
            }
        }
    }
    Ok(grid)
}
