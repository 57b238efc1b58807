//! Vectorised pixel loops: a run-time switch to AVX2, and the three loop shapes the
//! operations share — a weighted sum of rows (separable filters), values changed one by one,
//! and blocks of planar RGB values (per-pixel colour arithmetic, and sums of it).
//!
//! Everything here computes with separate multiplies and adds (never fused), so results are
//! the same bit for bit with and without AVX2.

use crate::float::truncate_to_u8;

/// Pixels handled together by [`map_rgb`]: small enough for the planar copies to stay in the
/// first-level cache.
const BLOCK: usize = 64;

/// Outputs summed together in registers by [`weighted_rows`]: eight AVX2 registers, enough
/// independent sums to hide the latency of the additions.
const LANES: usize = 64;

/// A loop worth compiling twice: as it is, and for AVX2 (eight floats per register instead
/// of four), chosen at run time by [`run`]. `run` and everything it calls must be
/// `#[inline(always)]` so that it is compiled into the AVX2 copy.
pub(crate) trait Vectorised {
    /// What the loop returns.
    type Output;
    /// The loop itself.
    fn run(self) -> Self::Output;
}

/// Runs `work` compiled for AVX2 where the CPU has it (x86-64), otherwise as it is.
pub(crate) fn run<V: Vectorised>(work: V) -> V::Output {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just seen to have AVX2.
        return unsafe { run_with_avx2(work) };
    }
    work.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_with_avx2<V: Vectorised>(work: V) -> V::Output {
    work.run()
}

/// `out[i] = sum_k weights[k] * rows[k][i]` for `i < out.len()`, adding the taps in kernel
/// order, [`LANES`] outputs at a time in registers. Each row must be at least as long as `out`.
pub(crate) fn weighted_rows<T>(weights: &[f32], rows: &[&[T]], out: &mut [f32])
where
    T: Copy,
    f32: From<T>,
{
    assert_eq!(
        weights.len(),
        rows.len(),
        "weighted_rows: {} weights for {} rows",
        weights.len(),
        rows.len()
    );
    assert!(
        rows.iter().all(|r| r.len() >= out.len()),
        "weighted_rows: a row is shorter than the {} outputs",
        out.len()
    );
    run(WeightedRows { weights, rows, out });
}

struct WeightedRows<'a, 'r, T> {
    weights: &'a [f32],
    rows: &'a [&'r [T]],
    out: &'a mut [f32],
}

impl<T> Vectorised for WeightedRows<'_, '_, T>
where
    T: Copy,
    f32: From<T>,
{
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Self { weights, rows, out } = self;
        let mut start = 0;
        while start + LANES <= out.len() {
            sum_block::<LANES, T>(weights, rows, start, &mut out[start..start + LANES]);
            start += LANES;
        }
        // The rest eight at a time (one AVX2 register), then one by one.
        while start + 8 <= out.len() {
            sum_block::<8, T>(weights, rows, start, &mut out[start..start + 8]);
            start += 8;
        }
        for (i, o) in out.iter_mut().enumerate().skip(start) {
            sum_block::<1, T>(weights, rows, i, std::slice::from_mut(o));
        }
    }
}

/// `out[lane] = sum_k weights[k] * rows[k][start + lane]` for `N` lanes summed together.
#[inline(always)]
fn sum_block<const N: usize, T>(weights: &[f32], rows: &[&[T]], start: usize, out: &mut [f32])
where
    T: Copy,
    f32: From<T>,
{
    let mut acc = [0.0f32; N];
    for (&weight, row) in weights.iter().zip(rows) {
        let values = &row[start..start + N];
        for lane in 0..N {
            acc[lane] += weight * f32::from(values[lane]);
        }
    }
    out.copy_from_slice(&acc);
}

/// Arithmetic on each value alone; `apply` must be `#[inline(always)]` (see [`Vectorised`]).
pub(crate) trait ValueKernel {
    /// The new value of `v` (0-255 as a float), before clamping and truncation.
    fn apply(&self, v: f32) -> f32;
}

/// Rewrites every value: `kernel`'s result clamped to 0-255 and truncated to `u8`.
pub(crate) fn map_values(values: &mut [u8], kernel: impl ValueKernel) {
    run(MapValues { values, kernel });
}

struct MapValues<'a, K> {
    values: &'a mut [u8],
    kernel: K,
}

impl<K: ValueKernel> Vectorised for MapValues<'_, K> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for v in self.values {
            *v = truncate_to_u8(self.kernel.apply(f32::from(*v)));
        }
    }
}

/// Planar values of up to [`BLOCK`] pixels: red, green and blue.
pub(crate) type Planes = [[f32; BLOCK]; 3];

/// Per-pixel colour arithmetic on planar blocks; `apply` must be `#[inline(always)]` (see
/// [`Vectorised`]).
pub(crate) trait RgbKernel {
    /// Rewrites the block's values in place.
    fn apply(&self, planes: &mut Planes);
}

/// Rewrites interleaved RGB `pixels` block by block: each block's values (0-255 as floats)
/// go through `kernel` as three planes, and what it leaves there is truncated back to `u8`
/// after clamping to 0-255. Unused lanes of a short last block hold zeros.
pub(crate) fn map_rgb(pixels: &mut [u8], kernel: impl RgbKernel) {
    assert_eq!(
        pixels.len() % 3,
        0,
        "map_rgb: {} values are not whole RGB pixels",
        pixels.len()
    );
    run(MapRgb { pixels, kernel });
}

struct MapRgb<'a, K> {
    pixels: &'a mut [u8],
    kernel: K,
}

impl<K: RgbKernel> Vectorised for MapRgb<'_, K> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let mut planes: Planes = [[0.0; BLOCK]; 3];
        for block in self.pixels.chunks_mut(3 * BLOCK) {
            load_block(block, &mut planes);
            self.kernel.apply(&mut planes);
            for (i, pixel) in block.chunks_exact_mut(3).enumerate() {
                for ch in 0..3 {
                    pixel[ch] = truncate_to_u8(planes[ch][i]);
                }
            }
        }
    }
}

/// The sum over all pixels of what `kernel` leaves in the red plane for each, added in f64
/// (exact for integer values, in any order).
pub(crate) fn sum_rgb(pixels: &[u8], kernel: impl RgbKernel) -> f64 {
    assert_eq!(
        pixels.len() % 3,
        0,
        "sum_rgb: {} values are not whole RGB pixels",
        pixels.len()
    );
    run(SumRgb { pixels, kernel })
}

struct SumRgb<'a, K> {
    pixels: &'a [u8],
    kernel: K,
}

impl<K: RgbKernel> Vectorised for SumRgb<'_, K> {
    type Output = f64;

    #[inline(always)]
    fn run(self) -> f64 {
        let mut planes: Planes = [[0.0; BLOCK]; 3];
        let mut total = 0.0f64;
        for block in self.pixels.chunks(3 * BLOCK) {
            load_block(block, &mut planes);
            self.kernel.apply(&mut planes);
            total += planes[0][..block.len() / 3]
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>();
        }
        total
    }
}

/// Spreads a block of interleaved RGB values over the planes (zeros after a short block).
#[inline(always)]
fn load_block(block: &[u8], planes: &mut Planes) {
    for plane in planes.iter_mut() {
        plane.fill(0.0);
    }
    for (i, pixel) in block.chunks_exact(3).enumerate() {
        for ch in 0..3 {
            planes[ch][i] = f32::from(pixel[ch]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_rows_equal_the_plain_loop_bit_for_bit_at_any_length() {
        for len in [0, 1, 15, 16, 17, 100, 672] {
            let rows: Vec<Vec<u8>> = (0..5)
                .map(|k| {
                    (0..len + 3)
                        .map(|i| ((i * 37 + k * 11) % 256) as u8)
                        .collect()
                })
                .collect();
            let refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
            let weights = [0.1f32, 0.2, 0.33, 0.2, 0.17];
            let mut out = vec![f32::NAN; len];
            weighted_rows(&weights, &refs, &mut out);
            for (i, &o) in out.iter().enumerate() {
                let mut plain = 0.0f32;
                for (w, row) in weights.iter().zip(&rows) {
                    plain += w * f32::from(row[i]);
                }
                assert_eq!(o.to_bits(), plain.to_bits(), "len {len}, i {i}");
            }
        }
    }

    /// Moves channels round and changes them a little, to see each value land where it
    /// should.
    struct Rotate;

    impl RgbKernel for Rotate {
        fn apply(&self, [r, g, b]: &mut Planes) {
            for i in 0..BLOCK {
                (r[i], g[i], b[i]) = (b[i] + 0.9, r[i] * 2.0, g[i] - 1.0);
            }
        }
    }

    #[test]
    fn map_rgb_visits_every_pixel_once_in_its_channels() {
        for pixels in [1, 63, 64, 65, 200] {
            let values: Vec<u8> = (0..pixels * 3).map(|i| (i % 200) as u8).collect();
            let mut mapped = values.clone();
            map_rgb(&mut mapped, Rotate);
            for (old, new) in values.chunks_exact(3).zip(mapped.chunks_exact(3)) {
                let expected = [
                    old[2],
                    (f32::from(old[0]) * 2.0).min(255.0) as u8,
                    old[1].saturating_sub(1),
                ];
                assert_eq!(new, expected);
            }
        }
    }
}
