//! Float-to-integer steps of the pixel loops without library calls or per-value branches.
//!
//! On x86-64's baseline instruction set (SSE2) `f32::round`, `f32::floor` and `%` are calls
//! into libm, one per value, and the saturating `as` conversions are compiled one value at a
//! time even where a loop is otherwise vectorised. These give the same results from
//! additions, comparisons and plain truncating conversions of values known to be in range.

/// `2^23`: adding and subtracting it rounds a float in `[0, 2^23)` to an integer (to nearest,
/// ties to even), as there are no fraction bits left at that magnitude.
const TWO_23: f32 = 8_388_608.0;

/// `x.clamp(0.0, 255.0) as u8` for every `x` (NaN gives 0): clamp, then truncate.
#[inline(always)]
pub(crate) fn truncate_to_u8(x: f32) -> u8 {
    // `max` returns the other operand for NaN, so the value is a number in 0-255 (`clamp`
    // would keep a NaN).
    #[allow(clippy::manual_clamp)]
    let x = x.max(0.0).min(255.0);
    // SAFETY: `x` is finite and within the range of `i32`.
    (unsafe { x.to_int_unchecked::<i32>() }) as u8
}

/// `x.round().clamp(0.0, 255.0) as u8` for every `x` (rounding half away from zero; NaN
/// gives 0).
///
/// Adding the largest float below one half and truncating rounds correctly: for a value
/// with a fraction below 0.5 the sum stays below the next integer, and at exactly 0.5 it
/// rounds up to it (the sum is a tie between the integer and the float just below, and the
/// integer is even in the last place). Negative values clamp to 0 either way.
#[inline(always)]
pub(crate) fn round_to_u8(x: f32) -> u8 {
    const BELOW_HALF: f32 = 0.499_999_97;
    truncate_to_u8(x + BELOW_HALF)
}

/// `x.floor()` for `0 <= x < 2^23`: rounded to the nearest integer, then one less where that
/// went up.
#[inline(always)]
pub(crate) fn floor_nonnegative(x: f32) -> f32 {
    let nearest = (x + TWO_23) - TWO_23;
    if nearest > x { nearest - 1.0 } else { nearest }
}

/// `x.rem_euclid(1.0)` for `|x| < 2^22`: the fraction in `[0, 1)`, `x - floor(x)`, which is
/// exact in that range (the floor computed as in [`floor_nonnegative`], shifted by `1.5 *
/// 2^23` so that negative values round too).
#[inline(always)]
pub(crate) fn fraction(x: f32) -> f32 {
    const SHIFT: f32 = 1.5 * TWO_23;
    let nearest = (x + SHIFT) - SHIFT;
    let floor = if nearest > x { nearest - 1.0 } else { nearest };
    x - floor
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every float between `from` and `to`, stepping `stride` representations at a time.
    fn floats(from: f32, to: f32, stride: u32) -> impl Iterator<Item = f32> {
        let mut x = from;
        std::iter::from_fn(move || {
            (x <= to).then(|| {
                let v = x;
                let bits = if x >= 0.0 {
                    x.to_bits() + stride
                } else if x.to_bits() & 0x7fff_ffff <= stride {
                    0
                } else {
                    x.to_bits() - stride
                };
                x = f32::from_bits(bits);
                v
            })
        })
    }

    #[test]
    fn rounding_to_u8_equals_round_then_clamp() {
        let edges = (0..=256).flat_map(|n| {
            let half = n as f32 + 0.5;
            [
                n as f32,
                half,
                f32::from_bits(half.to_bits() - 1),
                f32::from_bits(half.to_bits() + 1),
                -half,
            ]
        });
        let specials = [0.499_999_97, 0.5, -0.0, 1e9, -1e9, f32::INFINITY, f32::MIN];
        for x in floats(-3.0, 300.0, 97).chain(edges).chain(specials) {
            assert_eq!(
                round_to_u8(x),
                x.round().clamp(0.0, 255.0) as u8,
                "x = {x:e}"
            );
        }
        assert_eq!(round_to_u8(f32::NAN), 0);
        for x in floats(-3.0, 300.0, 97).chain(specials) {
            assert_eq!(truncate_to_u8(x), x.clamp(0.0, 255.0) as u8, "x = {x:e}");
        }
        assert_eq!(truncate_to_u8(f32::NAN), 0);
    }

    #[test]
    fn floor_and_fraction_equal_the_library_functions() {
        for x in floats(0.0, 300.0, 89) {
            assert_eq!(floor_nonnegative(x), x.floor(), "x = {x:e}");
        }
        for x in [1e6, 8_388_607.5, 0.499_999_97, 0.5, 2.5, 3.5] {
            assert_eq!(floor_nonnegative(x), x.floor(), "x = {x:e}");
        }
        for x in floats(-1.5, 2.5, 31).chain([-0.0, -1e-30, 1e-30, -0.5, 0.5, 2.5, -2.5]) {
            assert_eq!(fraction(x), x.rem_euclid(1.0), "x = {x:e}");
            assert_eq!(fraction(x / 6.0 + 1.0), (x / 6.0 + 1.0) % 1.0, "x = {x:e}");
        }
    }
}
