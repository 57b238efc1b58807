//! What every loss shares: input checks, label masks and distances.

use contrastive_tensor::{Kind, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Below this squared distance, Euclidean distances are clamped (their square root has no
/// gradient at 0).
const MIN_SQUARED_DISTANCE: f64 = 1e-12;

/// The distance margin losses compare embeddings with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    /// `|a - b|`.
    #[default]
    Euclidean,
    /// `1 - cos(a, b)`.
    Cosine,
}

/// Serde default for flags that are on unless a config says otherwise.
pub(crate) fn default_true() -> bool {
    true
}

/// Embeddings in a precision fit for the loss: bf16 and fp16 inputs are computed in fp32.
pub(crate) fn working_precision(x: &Tensor) -> Tensor {
    match x.kind() {
        Kind::BFloat16 | Kind::Half => x.to_kind(Kind::Float),
        _ => x.shallow_clone(),
    }
}

/// Checks that `x` is `[N, D]` with N >= 1 and finite, and returns it in working precision.
pub(crate) fn embeddings(op: &'static str, what: &'static str, x: &Tensor) -> Result<Tensor> {
    let size = x.size();
    if size.len() != 2 || size[0] < 1 || size[1] < 1 {
        return Err(Error::Shape {
            op,
            message: format!("{what} must be [N, D], got {size:?}"),
        });
    }
    if !matches!(
        x.kind(),
        Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half
    ) {
        return Err(Error::Shape {
            op,
            message: format!("{what} must be floating point, got {:?}", x.kind()),
        });
    }
    if !bool::try_from(x.isfinite().all())? {
        return Err(Error::NonFinite { op, what });
    }
    Ok(working_precision(x))
}

/// Checks that `labels` is `[n]` of integers, and returns it as int64 on `x`'s device.
pub(crate) fn labels(op: &'static str, labels: &Tensor, x: &Tensor) -> Result<Tensor> {
    let n = x.size()[0];
    if labels.size() != [n] {
        return Err(Error::Shape {
            op,
            message: format!(
                "labels must be [{n}] (one per embedding), got {:?}",
                labels.size()
            ),
        });
    }
    if !matches!(
        labels.kind(),
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
    ) {
        return Err(Error::Shape {
            op,
            message: format!("labels must be integers, got {:?}", labels.kind()),
        });
    }
    Ok(labels.to_kind(Kind::Int64).to_device(x.device()))
}

/// `(positive, negative)` masks `[N, N]` from labels: same label (not the item itself), and
/// different label.
pub(crate) fn label_masks(labels: &Tensor) -> (Tensor, Tensor) {
    let same = labels.unsqueeze(0).eq_tensor(&labels.unsqueeze(1));
    let n = labels.size()[0];
    let eye = Tensor::eye(n, (Kind::Bool, labels.device()));
    (same.logical_and(&eye.logical_not()), same.logical_not())
}

/// L2-normalises rows (as `torch.nn.functional.normalize`, eps 1e-12).
pub(crate) fn normalize(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12);
    x / norm
}

/// All pairwise distances `[N, N]`.
pub(crate) fn pairwise(x: &Tensor, distance: Distance, normalize_first: bool) -> Tensor {
    let x = if normalize_first {
        normalize(x)
    } else {
        x.shallow_clone()
    };
    match distance {
        Distance::Cosine => {
            let z = normalize(&x);
            z.matmul(&z.tr()).neg() + 1.0
        }
        Distance::Euclidean => {
            let sq = x.pow_tensor_scalar(2).sum_dim_intlist(1, true, x.kind());
            let d2 = &sq + sq.tr() - x.matmul(&x.tr()) * 2.0;
            d2.clamp_min(MIN_SQUARED_DISTANCE).sqrt()
        }
    }
}

/// Row-by-row distances between `a` and `b` (both `[P, D]`), `[P]`.
pub(crate) fn paired(a: &Tensor, b: &Tensor, distance: Distance, normalize_first: bool) -> Tensor {
    let (a, b) = if normalize_first {
        (normalize(a), normalize(b))
    } else {
        (a.shallow_clone(), b.shallow_clone())
    };
    match distance {
        Distance::Cosine => {
            (normalize(&a) * normalize(&b))
                .sum_dim_intlist(1, false, a.kind())
                .neg()
                + 1.0
        }
        Distance::Euclidean => {
            let d2 = (a - b)
                .pow_tensor_scalar(2)
                .sum_dim_intlist(1, false, None::<Kind>);
            d2.clamp_min(MIN_SQUARED_DISTANCE).sqrt()
        }
    }
}

/// Checks that several `[P, D]` inputs have one shape.
pub(crate) fn same_shapes(
    op: &'static str,
    inputs: &[(&'static str, &Tensor)],
) -> Result<Vec<Tensor>> {
    let first = inputs[0].1.size();
    inputs
        .iter()
        .map(|(what, t)| {
            if t.size() != first {
                return Err(Error::Shape {
                    op,
                    message: format!(
                        "{what} has shape {:?}, {} has {first:?}",
                        t.size(),
                        inputs[0].0
                    ),
                });
            }
            embeddings(op, what, t)
        })
        .collect()
}

pub(crate) fn check_temperature(temperature: f64) -> Result<()> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(())
    } else {
        Err(crate::error::invalid(
            "temperature",
            format!("must be > 0, got {temperature}"),
        ))
    }
}

pub(crate) fn check_margin(field: &'static str, margin: f64) -> Result<()> {
    if margin.is_finite() && margin >= 0.0 {
        Ok(())
    } else {
        Err(crate::error::invalid(
            field,
            format!("must be >= 0, got {margin}"),
        ))
    }
}
