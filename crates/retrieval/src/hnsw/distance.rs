//! Distances between two rows, the inner loop of graph search: sixteen independent sums so
//! the compiler keeps them in vector registers, and an AVX2 + FMA build of the same loop
//! chosen at run time where the CPU has it.

/// A distance between two equally long rows; smaller is closer.
pub(crate) type DistanceFn = fn(&[f32], &[f32]) -> f32;

/// Lanes summed independently (two AVX registers).
const LANES: usize = 16;

/// `sum_i u_i v_i` where `(u_i, v_i) = pair(a_i, b_i)`, in [`LANES`] independent sums
/// (fused multiply-adds when `FMA`).
#[inline(always)]
fn sum_of_products<const FMA: bool>(
    a: &[f32],
    b: &[f32],
    pair: impl Fn(f32, f32) -> (f32, f32),
) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| {
            let (u, v) = pair(x, y);
            u * v
        })
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let (u, v) = pair(x[i], y[i]);
            acc[i] = if FMA {
                u.mul_add(v, acc[i])
            } else {
                acc[i] + u * v
            };
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `1 - a.b`: the distance of normalised rows under cosine or inner product.
#[inline(always)]
fn one_minus_dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    1.0 - sum_of_products::<FMA>(a, b, |x, y| (x, y))
}

/// `|a - b|^2`.
#[inline(always)]
fn squared_l2<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    sum_of_products::<FMA>(a, b, |x, y| (x - y, x - y))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    fn one_minus_dot(a: &[f32], b: &[f32]) -> f32 {
        super::one_minus_dot::<true>(a, b)
    }

    #[target_feature(enable = "avx2,fma")]
    fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
        super::squared_l2::<true>(a, b)
    }

    /// Safe entry points, handed out only after the CPU was seen to have AVX2 and FMA.
    pub(super) fn one_minus_dot_entry(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `kernel` returns this function only when AVX2 and FMA are detected.
        unsafe { one_minus_dot(a, b) }
    }

    pub(super) fn squared_l2_entry(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { squared_l2(a, b) }
    }
}

/// The fastest distance this CPU runs: `1 - a.b` (`l2 == false`) or `|a - b|^2`.
pub(crate) fn kernel(l2: bool) -> DistanceFn {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return if l2 {
            avx2::squared_l2_entry
        } else {
            avx2::one_minus_dot_entry
        };
    }
    if l2 {
        squared_l2::<false>
    } else {
        one_minus_dot::<false>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_plain_sums_at_any_width() {
        for dim in [1, 7, 16, 33, 128] {
            let a: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.11).cos()).collect();
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).sum();
            let l2: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| ((x - y) * (x - y)) as f64)
                .sum();
            for f in [kernel(false), one_minus_dot::<false>] {
                assert!((f(&a, &b) as f64 - (1.0 - dot)).abs() < 1e-4, "dim {dim}");
            }
            for f in [kernel(true), squared_l2::<false>] {
                assert!((f(&a, &b) as f64 - l2).abs() < 1e-4, "dim {dim}");
            }
        }
    }
}
