//! ndarray and image conversions: exact round trips, and errors that name the problem.

use contrastive_tensor::{
    Device, Error, Kind, Normalize, Tensor, array_from_tensor, array_from_tensor_dim,
    hwc_from_tensor, stack_hwc, stack_hwc_u8, tensor_from_array, tensor_from_hwc, unstack_to_hwc,
};
use ndarray::{Array, Array3, ArrayD, Ix2, Ix3, IxDyn, s};

/// Deterministic pseudo-random bytes (a fixed LCG), so failures reproduce.
fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn f32_arrays_round_trip_exactly_in_any_layout() {
    let values: Vec<f32> = bytes(2 * 3 * 5, 1)
        .iter()
        .map(|&b| f32::from(b) * 0.37 - 40.0)
        .collect();
    let array = Array::from_shape_vec((2, 3, 5), values).unwrap();
    let tensor = tensor_from_array(&array);
    assert_eq!(tensor.size(), [2, 3, 5]);
    assert_eq!(tensor.kind(), Kind::Float);
    assert_eq!(array_from_tensor_dim::<f32, Ix3>(&tensor).unwrap(), array);

    // A transposed, strided view goes through the element-by-element path.
    let view = array.slice(s![.., ..;2, ..]).reversed_axes();
    let back = array_from_tensor::<f32>(&tensor_from_array(&view)).unwrap();
    assert_eq!(back, view.into_dyn());

    // And a non-contiguous tensor comes back in its logical order.
    let transposed = tensor.transpose(0, 2);
    let expected = array.view().permuted_axes([2, 1, 0]).to_owned().into_dyn();
    assert_eq!(array_from_tensor::<f32>(&transposed).unwrap(), expected);
}

#[test]
fn u8_arrays_round_trip_exactly() {
    let array = ArrayD::from_shape_vec(IxDyn(&[4, 7, 3]), bytes(84, 2)).unwrap();
    let tensor = tensor_from_array(&array);
    assert_eq!(tensor.kind(), Kind::Uint8);
    assert_eq!(array_from_tensor::<u8>(&tensor).unwrap(), array);
}

#[test]
fn wrong_kind_and_wrong_rank_are_errors() {
    let floats = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
    match array_from_tensor::<u8>(&floats) {
        Err(Error::KindMismatch {
            expected: Kind::Uint8,
            actual: Kind::Float,
            ..
        }) => {}
        other => panic!("expected a kind mismatch, got {other:?}"),
    }
    let cube = Tensor::zeros([2, 2, 2], (Kind::Float, Device::Cpu));
    let err = array_from_tensor_dim::<f32, Ix2>(&cube).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { actual, .. } if actual == &[2, 2, 2]),
        "{err}"
    );
    assert!(err.to_string().contains("rank 2"), "{err}");
}

#[test]
fn every_u8_level_survives_image_to_tensor_and_back() {
    // 256 levels x 3 channels: every byte value appears in every channel.
    let levels: Vec<u8> = (0..=255u8)
        .flat_map(|v| [v, 255 - v, v.wrapping_mul(7)])
        .collect();
    let image = Array3::from_shape_vec((16, 16, 3), levels).unwrap();
    let tensor = tensor_from_hwc(image.view());
    assert_eq!(tensor.size(), [3, 16, 16]);
    assert_eq!(tensor.kind(), Kind::Float);
    // Channel-first: element (c, y, x) is image (y, x, c) / 255.
    let expected = f64::from(image[[5, 9, 2]]) / 255.0;
    assert!((tensor.double_value(&[2, 5, 9]) - expected).abs() < 1e-7);
    assert_eq!(hwc_from_tensor(&tensor).unwrap(), image);
}

#[test]
fn hwc_from_tensor_rounds_and_clamps() {
    let t = Tensor::from_slice(&[-0.5f32, 0.0, 0.5, 1.0, 1.7, 0.5 / 255.0 + 1e-4]).view([1, 1, 6]);
    let img = hwc_from_tensor(&t).unwrap();
    assert_eq!(img.as_slice().unwrap(), &[0, 0, 128, 255, 255, 1]);
    let err = hwc_from_tensor(&Tensor::zeros([5, 2, 2], (Kind::Float, Device::Cpu))).unwrap_err();
    assert!(err.to_string().contains("hwc_from_tensor"), "{err}");
}

#[test]
fn batches_stack_and_unstack_exactly() {
    let images: Vec<Array3<u8>> = (0..5)
        .map(|i| Array3::from_shape_vec((6, 4, 3), bytes(72, 10 + i)).unwrap())
        .collect();
    let views: Vec<_> = images.iter().map(|i| i.view()).collect();
    let batch_u8 = stack_hwc_u8(&views).unwrap();
    assert_eq!(
        (batch_u8.size(), batch_u8.kind()),
        (vec![5, 3, 6, 4], Kind::Uint8)
    );
    let batch = stack_hwc(&views).unwrap();
    assert_eq!(batch.size(), [5, 3, 6, 4]);
    assert!(
        batch
            .get(3)
            .allclose(&tensor_from_hwc(images[3].view()), 0.0, 0.0, false)
    );
    assert_eq!(unstack_to_hwc(&batch).unwrap(), images);
}

#[test]
fn stacking_mismatched_or_no_images_is_an_error() {
    let a = Array3::<u8>::zeros((4, 4, 3));
    let b = Array3::<u8>::zeros((4, 5, 3));
    let err = stack_hwc(&[a.view(), b.view()]).unwrap_err();
    assert!(err.to_string().contains("image 1"), "{err}");
    assert!(stack_hwc(&[]).is_err());
    let five_channels = Array3::<u8>::zeros((2, 2, 5));
    assert!(stack_hwc(&[five_channels.view()]).is_err());
}

#[test]
fn normalize_matches_the_formula_and_inverts() {
    let norm = Normalize::new(vec![0.2, 0.5, 0.9], vec![0.1, 0.25, 2.0]).unwrap();
    let x = Tensor::rand([2, 3, 4, 4], (Kind::Float, Device::Cpu));
    let y = norm.apply(&x).unwrap();
    let (c, n) = (2i64, 1i64);
    let expected = (x.double_value(&[n, c, 1, 3]) - 0.9) / 2.0;
    assert!((y.double_value(&[n, c, 1, 3]) - expected).abs() < 1e-6);
    assert!(norm.invert(&y).unwrap().allclose(&x, 1e-6, 1e-6, false));
    // A single image [C, H, W] works too.
    assert!(
        norm.apply(&x.get(0))
            .unwrap()
            .allclose(&y.get(0), 0.0, 0.0, false)
    );
}

#[test]
fn normalize_rejects_bad_parameters_and_channel_counts() {
    assert!(Normalize::new(vec![0.5, 0.5], vec![0.5]).is_err());
    assert!(Normalize::new(vec![], vec![]).is_err());
    assert!(Normalize::new(vec![0.5], vec![-1.0]).is_err());
    assert!(Normalize::new(vec![f32::NAN], vec![1.0]).is_err());
    let gray = Normalize::new(vec![0.2860], vec![0.3530]).unwrap();
    let rgb = Tensor::zeros([3, 8, 8], (Kind::Float, Device::Cpu));
    let err = gray.apply(&rgb).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { actual, .. } if actual == &[3, 8, 8]),
        "{err}"
    );
}
