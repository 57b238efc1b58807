//! Random transforms, presets and the multi-view pipeline: shapes, parameter checks, identity
//! at zero strength, and the same views for a seed on 1 and 2 threads.

use std::sync::Arc;

use contrastive_augment::{
    ColorJitter, Compose, Error, GaussianBlur, Image, MultiViewPipeline, OneOf, RandomAffine,
    RandomApply, RandomGrayscale, RandomHorizontalFlip, RandomResizedCrop, RandomRotation,
    RandomSolarize, Transform, presets,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn image(h: usize, w: usize, c: usize, seed: usize) -> Image {
    Image::from_shape_fn((h, w, c), |(y, x, ch)| {
        ((y * 31 + x * 17 + ch * 71 + seed * 13) % 256) as u8
    })
}

#[test]
fn resized_crop_windows_fit_and_follow_the_scale() {
    let crop = RandomResizedCrop::new((28, 28), (0.2, 1.0), (0.75, 4.0 / 3.0)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (h, w) in [(28, 28), (32, 32), (96, 64), (7, 300), (300, 5)] {
        for _ in 0..200 {
            let (top, left, ch, cw) = crop.window(h, w, &mut rng);
            assert!(
                ch >= 1 && cw >= 1 && top + ch <= h && left + cw <= w,
                "{h}x{w}: {top},{left},{ch},{cw}"
            );
            if (h, w) == (96, 64) {
                let fraction = (ch * cw) as f64 / (h * w) as f64;
                assert!((0.15..=1.0).contains(&fraction), "area fraction {fraction}");
            }
        }
    }
}

#[test]
fn presets_give_the_published_output_shapes() {
    let w1 = presets::ViewRecipe::w1().build().unwrap();
    let simclr = presets::ViewRecipe::simclr(32, 1.0, true).build().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..50 {
        assert_eq!(
            w1.apply(&image(28, 28, 1, i), &mut rng).unwrap().dim(),
            (28, 28, 1)
        );
        assert_eq!(
            simclr.apply(&image(40, 36, 3, i), &mut rng).unwrap().dim(),
            (32, 32, 3)
        );
    }
    let big = presets::ViewRecipe::simclr(224, 1.0, true).build().unwrap();
    assert_eq!(
        big.apply(&image(256, 256, 3, 0), &mut rng).unwrap().dim(),
        (224, 224, 3)
    );
}

#[test]
fn zero_strength_changes_nothing() {
    let img = image(20, 24, 3, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let jitter = ColorJitter::new(0.0, 0.0, 0.0, 0.0).unwrap();
    let never: Vec<Arc<dyn Transform>> = vec![
        Arc::new(jitter),
        Arc::new(RandomHorizontalFlip::new(0.0).unwrap()),
        Arc::new(RandomGrayscale::new(0.0).unwrap()),
        Arc::new(RandomSolarize::new(128, 0.0).unwrap()),
        Arc::new(RandomApply::new(Arc::new(RandomGrayscale::new(1.0).unwrap()), 0.0).unwrap()),
        Arc::new(RandomResizedCrop::new((20, 24), (1.0, 1.0), (1.2, 1.2)).unwrap()),
        Arc::new(RandomRotation::new(0.0, vec![0]).unwrap()),
        Arc::new(RandomAffine::new(0.0, (0.0, 0.0), (1.0, 1.0), (0.0, 0.0), vec![0]).unwrap()),
    ];
    assert_eq!(Compose(never).apply(&img, &mut rng).unwrap(), img);
    let always = OneOf::new(vec![Arc::new(RandomHorizontalFlip::new(1.0).unwrap())]).unwrap();
    assert_ne!(always.apply(&img, &mut rng).unwrap(), img);
}

#[test]
fn a_recipe_leaves_out_what_never_happens_and_does_what_it_says() {
    use presets::ViewRecipe;
    let img = image(28, 28, 1, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let nothing = ViewRecipe {
        crop_scale: (1.0, 1.0),
        flip_p: 0.0,
        jitter_p: 0.0,
        grayscale_p: 0.0,
        blur_p: 0.0,
        ..ViewRecipe::w1()
    };
    let view = nothing.build().unwrap();
    assert_eq!(view.0.len(), 1, "only the crop is left");
    assert_eq!(view.apply(&img, &mut rng).unwrap(), img);
    // Each step on its own, always: the image changes the way that step changes it.
    let flipped = ViewRecipe {
        flip_p: 1.0,
        ..nothing
    }
    .build()
    .unwrap();
    assert_eq!(
        flipped.apply(&img, &mut rng).unwrap(),
        contrastive_augment::hflip(&img)
    );
    let ones = [
        ViewRecipe {
            rotation_degrees: 90.0,
            rotation_p: 1.0,
            ..nothing
        },
        ViewRecipe {
            jitter_p: 1.0,
            ..nothing
        },
        ViewRecipe {
            blur_p: 1.0,
            ..nothing
        },
        ViewRecipe {
            solarize_p: 1.0,
            ..nothing
        },
    ];
    for recipe in ones {
        let view = recipe.build().unwrap();
        assert_eq!(view.0.len(), 2, "{recipe:?}");
        assert_ne!(view.apply(&img, &mut rng).unwrap(), img, "{recipe:?}");
    }
    // A rotation needs an angle and a probability; a bad value is an error naming it.
    let no_angle = ViewRecipe {
        rotation_p: 1.0,
        ..nothing
    };
    assert_eq!(no_angle.build().unwrap().0.len(), 1);
    let bad = ViewRecipe {
        blur_p: 1.5,
        ..nothing
    };
    assert!(matches!(
        bad.build(),
        Err(Error::InvalidParameter { field: "p", .. })
    ));
    // The named recipes are the published ones.
    assert_eq!(presets::named("w1", 96), Some(vec![ViewRecipe::w1()]));
    assert_eq!(presets::named("byol", 64).map(|r| r.len()), Some(2));
    assert_eq!(presets::named("simclr-blur", 32).unwrap()[0].blur_p, 0.5);
    assert_eq!(presets::named("simclr", 32).unwrap()[0].blur_p, 0.0);
    assert_eq!(presets::named("w2", 28), None);
}

#[test]
fn bad_parameters_are_errors_when_built() {
    let checks: Vec<(Result<(), Error>, &str)> = vec![
        (
            RandomResizedCrop::new((28, 28), (0.9, 0.2), (0.75, 1.33)).map(drop),
            "scale",
        ),
        (
            RandomResizedCrop::new((0, 28), (0.2, 1.0), (0.75, 1.33)).map(drop),
            "size",
        ),
        (
            RandomResizedCrop::new((28, 28), (0.2, 1.0), (-1.0, 1.33)).map(drop),
            "ratio",
        ),
        (RandomHorizontalFlip::new(1.5).map(drop), "p"),
        (RandomGrayscale::new(-0.1).map(drop), "p"),
        (
            RandomApply::new(Arc::new(RandomGrayscale::new(0.5).unwrap()), 2.0).map(drop),
            "p",
        ),
        (GaussianBlur::new(4, (0.1, 2.0)).map(drop), "kernel_size"),
        (GaussianBlur::new(3, (-1.0, 2.0)).map(drop), "sigma"),
        (
            ColorJitter::new(-0.1, 0.0, 0.0, 0.0).map(drop),
            "brightness",
        ),
        (ColorJitter::new(0.0, 0.0, 0.0, 0.7).map(drop), "hue"),
        (OneOf::new(vec![]).map(drop), "transforms"),
        (RandomRotation::new(-5.0, vec![0]).map(drop), "degrees"),
        (
            RandomAffine::new(10.0, (1.5, 0.0), (0.9, 1.1), (0.0, 0.0), vec![0]).map(drop),
            "translate",
        ),
        (
            RandomAffine::new(10.0, (0.1, 0.1), (1.1, 0.9), (0.0, 0.0), vec![0]).map(drop),
            "scale",
        ),
        (
            RandomAffine::new(10.0, (0.1, 0.1), (0.9, 1.1), (5.0, -5.0), vec![0]).map(drop),
            "shear",
        ),
    ];
    for (result, field) in checks {
        match result {
            Err(Error::InvalidParameter { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected an invalid {field}, got {other:?}"),
        }
    }
    // A wrong-channel image is an error naming the op, not a panic.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let jitter = ColorJitter::new(0.4, 0.4, 0.4, 0.1).unwrap();
    let err = jitter.apply(&image(8, 8, 2, 0), &mut rng).unwrap_err();
    assert!(err.to_string().starts_with("adjust_"), "{err}");
}

#[test]
fn the_pipeline_gives_the_same_views_on_one_and_two_threads() {
    let simclr: Arc<dyn Transform> =
        Arc::new(presets::ViewRecipe::simclr(32, 1.0, true).build().unwrap());
    let pipeline = MultiViewPipeline::new(vec![simclr.clone(), simclr], 42);
    let images: Vec<Image> = (0..16).map(|i| image(36, 40, 3, i)).collect();
    let items: Vec<usize> = (100..116).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| pipeline.apply(&images, &items, 7).unwrap())
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one, two);
    assert_eq!((one.len(), one[0].len()), (2, 16));
    assert_ne!(one[0], one[1], "the two views differ");
    // An item's views do not depend on the rest of the batch, and change with the epoch.
    let alone = pipeline.apply(&images[3..4], &items[3..4], 7).unwrap();
    assert_eq!(alone[1][0], one[1][3]);
    assert_ne!(pipeline.apply(&images, &items, 8).unwrap(), one);
}

#[test]
fn view_rows_put_each_image_beside_its_views() {
    use contrastive_augment::view_rows;
    let flip: Arc<dyn Transform> = Arc::new(RandomHorizontalFlip::new(1.0).unwrap());
    let (colour, gray) = (image(12, 12, 3, 1), image(12, 12, 1, 2));
    let rows = view_rows(&[colour.clone(), gray.clone()], &[flip], 2, 0).unwrap();
    // A row per image: the image, then two flips of it; gray and colour may mix.
    for (row, source) in rows.iter().zip([&colour, &gray]) {
        assert_eq!(row.len(), 3);
        assert_eq!(&row[0], source);
        for view in &row[1..] {
            assert_eq!(view, &contrastive_augment::hflip(source));
        }
    }
    assert!(view_rows(&[colour], &[], 0, 0).unwrap()[0].len() == 1);
}
