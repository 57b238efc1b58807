//! What a recipe does, as pictures to lay out: images and their views side by side
//! (`contrastive_draw::view_grid` draws them).

use std::sync::Arc;

use crate::{Image, MultiViewPipeline, Result, Transform, resize};

/// One row per image of `sources`: the image itself (resized to its first view's side), then
/// `columns` views of it, view `v` by `transforms[v % transforms.len()]` (so a recipe's
/// different views take turns), drawn from `seed`.
///
/// ```
/// use std::sync::Arc;
/// use contrastive_augment::{Image, Transform, presets::ViewRecipe, view_rows};
/// let image = Image::from_shape_fn((28, 28, 1), |(y, x, _)| (y * 9 + x) as u8);
/// let view: Arc<dyn Transform> = Arc::new(ViewRecipe::w1().build()?);
/// let rows = view_rows(&[image.clone(), image], &[view], 2, 0)?;
/// // 2 rows of 3 pictures: the source, then 2 views.
/// assert_eq!((rows.len(), rows[0].len()), (2, 3));
/// # Ok::<(), contrastive_augment::Error>(())
/// ```
pub fn view_rows(
    sources: &[Image],
    transforms: &[Arc<dyn Transform>],
    columns: usize,
    seed: u64,
) -> Result<Vec<Vec<Image>>> {
    let transforms: Vec<_> = transforms.iter().cycle().take(columns).cloned().collect();
    let pipeline = MultiViewPipeline::new(transforms, seed);
    let items: Vec<usize> = (0..sources.len()).collect();
    let views = pipeline.apply(sources, &items, 0)?;
    sources
        .iter()
        .enumerate()
        .map(|(r, source)| {
            let (h, w, _) = source.dim();
            let side = views.first().map_or(h.min(w), |v| v[r].dim().0);
            std::iter::once(resize(source, side, side))
                .chain(views.iter().map(|v| Ok(v[r].clone())))
                .collect()
        })
        .collect()
}
