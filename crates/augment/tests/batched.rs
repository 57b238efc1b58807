//! Plans run on a whole batch as tensor operations (`apply_plans`) against the same plans run
//! image by image on the CPU.

use std::sync::Arc;

use contrastive_augment::{
    BatchFormat, Image, Interpolation, MultiViewPipeline, Sampling, Step, Transform, apply_plan,
    apply_plans, presets, to_batch,
};
use contrastive_tensor::{Device, Kind, Tensor};

/// `n` images of `h` x `w` x `c` with smooth content plus texture (so crops, blur and colour
/// changes all matter).
fn images(n: usize, h: usize, w: usize, c: usize) -> Vec<Image> {
    (0..n)
        .map(|i| {
            Image::from_shape_fn((h, w, c), |(y, x, ch)| {
                let smooth = (y * 7 + x * 5 + ch * 60 + i * 29) % 200;
                let texture = (y * 131 + x * 71 + ch * 17 + i * 7) % 56;
                (smooth + texture) as u8
            })
        })
        .collect()
}

/// The images as a `u8` `[N, C, H, W]` tensor.
fn batch_of(images: &[Image]) -> Tensor {
    to_batch(images, &BatchFormat::raw()).unwrap()
}

/// Largest difference and share of values that differ between the batched views and the CPU
/// views of the same plans.
fn compare(images: &[Image], plans: &[Vec<Step>]) -> (u8, f64) {
    let batched = apply_plans(&batch_of(images), plans).unwrap();
    let cpu: Vec<Image> = images
        .iter()
        .zip(plans)
        .map(|(img, plan)| apply_plan(img, plan).unwrap())
        .collect();
    let expected = batch_of(&cpu);
    assert_eq!(batched.size(), expected.size());
    assert_eq!(batched.kind(), Kind::Uint8);
    let diff = (batched.to_kind(Kind::Int16) - expected.to_kind(Kind::Int16)).abs();
    let max = diff.max().int64_value(&[]) as u8;
    let share = diff
        .gt(0)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    (max, share)
}

/// A test case: name, the step for image `i`, the largest allowed difference in levels.
type Case = (&'static str, Box<dyn Fn(usize) -> Step>, u8);

#[test]
fn every_step_on_a_batch_matches_the_cpu_operation() {
    let rgb = images(6, 20, 24, 3);
    let gray = images(4, 20, 24, 1);
    let per_image = |f: &dyn Fn(usize) -> Step, n: usize| -> Vec<Vec<Step>> {
        (0..n).map(|i| vec![f(i)]).collect()
    };
    // Differences of a level
    // come from float sums that round a tie between two levels the other way (on this CPU:
    // 0.06-0.09 % of the crops' values, none elsewhere); other devices round differently.
    let cases: Vec<Case> = vec![
        (
            "enlarging crop",
            Box::new(|i| Step::ResizedCrop {
                window: (i, 2 * i, 10 + i, 12 - i),
                size: (16, 18),
                interpolation: Interpolation::Bilinear,
            }),
            1,
        ),
        ("hflip", Box::new(|_| Step::HorizontalFlip), 0),
        ("vflip", Box::new(|_| Step::VerticalFlip), 0),
        (
            "brightness",
            Box::new(|i| Step::Brightness(0.3 + 0.3 * i as f32)),
            1,
        ),
        (
            "contrast",
            Box::new(|i| Step::Contrast(0.2 + 0.35 * i as f32)),
            1,
        ),
        (
            "saturation",
            Box::new(|i| Step::Saturation(0.1 * i as f32 * 4.0)),
            1,
        ),
        ("hue", Box::new(|i| Step::Hue(-0.45 + 0.17 * i as f32)), 1),
        ("grayscale", Box::new(|_| Step::Grayscale), 1),
        (
            "blur",
            Box::new(|i| Step::Blur {
                kernel_size: 7,
                sigma: 0.3 + 0.4 * i as f32,
            }),
            1,
        ),
        ("solarize", Box::new(|_| Step::Solarize(128)), 0),
        (
            "rotate nearest",
            Box::new(|i| Step::Rotate {
                angle: -40.0 + 17.0 * i as f64,
                fill: vec![9],
                sampling: Sampling::Nearest,
            }),
            0,
        ),
        (
            "affine bilinear",
            Box::new(|i| Step::Affine {
                angle: 10.0 * i as f64,
                translate: (2.0, -1.0),
                scale: 0.8 + 0.1 * i as f64,
                shear: (5.0, 0.0),
                fill: vec![3, 200, 40],
                sampling: Sampling::Bilinear,
            }),
            1,
        ),
    ];
    for (name, step, tolerance) in &cases {
        for batch in [&rgb, &gray] {
            let mut plans = per_image(step.as_ref(), batch.len());
            // One fill value per channel, or one for all.
            if batch[0].dim().2 == 1 {
                for plan in &mut plans {
                    if let Step::Affine { fill, .. } = &mut plan[0] {
                        fill.truncate(1);
                    }
                }
            }
            let (max, share) = compare(batch, &plans);
            let channels = batch[0].dim().2;
            assert!(
                max <= *tolerance && share < 0.01,
                "{name} on {channels} channels: values differ by up to {max} (allowed \
                 {tolerance}), {:.2} % of them",
                share * 100.0
            );
        }
    }
}

#[test]
fn presets_on_a_batch_make_the_cpu_views_of_the_same_plans() {
    // Enlarging crops (32 -> 32), colour jitter in random order, grayscale and blur: the
    // SimCLR view; and W1 on gray images.
    for (transform, sources) in [
        (
            presets::ViewRecipe::simclr(32, 1.0, true).build().unwrap(),
            images(24, 32, 32, 3),
        ),
        (
            presets::ViewRecipe::w1().build().unwrap(),
            images(24, 28, 28, 1),
        ),
    ] {
        let view: Arc<dyn Transform> = Arc::new(transform);
        let pipeline = MultiViewPipeline::new(vec![view.clone(), view], 5);
        let items: Vec<usize> = (100..124).collect();
        let dims: Vec<_> = sources.iter().map(Image::dim).collect();
        let plans = pipeline.plans(&dims, &items, 3).unwrap();
        let views = pipeline.apply(&sources, &items, 3).unwrap();
        for (view_plans, cpu_views) in plans.iter().zip(&views) {
            // The plans are the pipeline's: run on the CPU they give its views exactly.
            for ((source, plan), view) in sources.iter().zip(view_plans).zip(cpu_views) {
                assert_eq!(&apply_plan(source, plan).unwrap(), view);
            }
            let (max, share) = compare(&sources, view_plans);
            // Resized crops differ by a level where the exact value is a tie between two
            // levels and the float sums fall on different sides (about 2 % of values for
            // W1's crops of 12-28 pixels enlarged to 28); a later contrast step can widen
            // such a difference. The SimCLR views here are equal.
            assert!(
                max <= 3 && share < 0.05,
                "views differ by up to {max} levels, {:.2} % of values",
                share * 100.0
            );
        }
    }
}

#[test]
fn bad_batches_and_plans_are_errors() {
    let sources = images(2, 16, 16, 3);
    let batch = batch_of(&sources);
    let crop = |size| Step::ResizedCrop {
        window: (0, 0, 8, 8),
        size,
        interpolation: Interpolation::Bilinear,
    };
    let message = |r: contrastive_augment::Result<Tensor>| r.unwrap_err().to_string();
    assert!(message(apply_plans(&batch.to_kind(Kind::Float), &[vec![], vec![]])).contains("u8"));
    assert!(message(apply_plans(&batch, &[vec![]])).contains("2 images but 1 plans"));
    let mixed = message(apply_plans(
        &batch,
        &[vec![crop((8, 8))], vec![crop((4, 4))]],
    ));
    assert!(
        mixed.contains("views of one batch must keep one size"),
        "{mixed}"
    );
    let partly = message(apply_plans(&batch, &[vec![crop((8, 8))], vec![]]));
    assert!(partly.contains("only some images"), "{partly}");
    let blur = Step::Blur {
        kernel_size: 41,
        sigma: 1.0,
    };
    assert!(
        message(apply_plans(&batch, &[vec![blur.clone()], vec![blur]])).contains("gaussian_blur")
    );
    let two = Tensor::zeros([2, 2, 8, 8], (Kind::Uint8, Device::Cpu));
    assert!(message(apply_plans(&two, &[vec![Step::Hue(0.1)], vec![]])).contains("adjust_hue"));
}
