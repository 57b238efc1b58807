//! Presets of several views, tensor batches, and prefetching.

use std::sync::Arc;
use std::time::Duration;

use contrastive_augment::{
    BatchFormat, Error, Image, MultiViewPipeline, Prefetcher, Transform, presets, to_batch,
};
use contrastive_tensor::{Kind, Normalize, is_channels_last};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn image(h: usize, w: usize, seed: usize) -> Image {
    Image::from_shape_fn((h, w, 3), |(y, x, c)| {
        ((y * 31 + x * 17 + c * 71 + seed * 13) % 256) as u8
    })
}

#[test]
fn multi_view_presets_give_their_sizes() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let source = image(256, 240, 0);
    let [first, second] = presets::ViewRecipe::byol(64).map(|r| r.build().unwrap());
    assert_eq!(first.apply(&source, &mut rng).unwrap().dim(), (64, 64, 3));
    assert_eq!(second.apply(&source, &mut rng).unwrap().dim(), (64, 64, 3));
    assert_eq!(
        presets::ViewRecipe::moco_v2(48)
            .build()
            .unwrap()
            .apply(&source, &mut rng)
            .unwrap()
            .dim(),
        (48, 48, 3)
    );
    let crops = presets::multi_crop(64, 32, 4).unwrap();
    assert_eq!(crops.len(), 6);
    let sizes: Vec<usize> = crops
        .iter()
        .map(|c| c.apply(&source, &mut rng).unwrap().dim().0)
        .collect();
    assert_eq!(sizes, [64, 64, 32, 32, 32, 32]);
}

#[test]
fn views_become_u8_or_normalised_float_batches() {
    let views: Vec<Image> = (0..4).map(|i| image(8, 6, i)).collect();
    let raw = to_batch(
        &views,
        &BatchFormat {
            float: None,
            channels_last: false,
        },
    )
    .unwrap();
    assert_eq!((raw.size(), raw.kind()), (vec![4, 3, 8, 6], Kind::Uint8));
    assert_eq!(
        raw.int64_value(&[2, 1, 5, 4]),
        i64::from(views[2][[5, 4, 1]])
    );

    let norm = Normalize::new(vec![0.5, 0.5, 0.5], vec![0.25, 0.25, 0.25]).unwrap();
    let format = BatchFormat {
        float: Some(Some(norm)),
        channels_last: true,
    };
    let batch = to_batch(&views, &format).unwrap();
    assert_eq!(
        (batch.size(), batch.kind()),
        (vec![4, 3, 8, 6], Kind::Float)
    );
    assert!(is_channels_last(&batch).unwrap());
    let expected = (f64::from(views[1][[2, 3, 0]]) / 255.0 - 0.5) / 0.25;
    assert!((batch.double_value(&[1, 0, 2, 3]) - expected).abs() < 1e-5);

    let gray_norm = Normalize::new(vec![0.5], vec![0.2]).unwrap();
    let err = to_batch(
        &views,
        &BatchFormat {
            float: Some(Some(gray_norm)),
            channels_last: false,
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Tensor(_)), "{err}");
    let mixed = vec![image(8, 6, 0), image(6, 8, 1)];
    assert!(
        to_batch(
            &mixed,
            &BatchFormat {
                float: None,
                channels_last: false
            }
        )
        .is_err()
    );
}

#[test]
fn prefetching_keeps_order_passes_errors_and_stops_when_dropped() {
    let w1: Arc<dyn Transform> = Arc::new(presets::ViewRecipe::w1().build().unwrap());
    let pipeline = MultiViewPipeline::new(vec![w1.clone(), w1], 3);
    let sources: Vec<Image> = (0..32)
        .map(|i| Image::from_elem((28, 28, 1), i as u8 * 7))
        .collect();
    let format = BatchFormat {
        float: Some(None),
        channels_last: false,
    };
    let expected: Vec<_> = (0..4usize)
        .map(|b| {
            let items: Vec<usize> = (b * 8..b * 8 + 8).collect();
            let views = pipeline
                .apply(&sources[b * 8..b * 8 + 8], &items, 0)
                .unwrap();
            to_batch(&views.concat(), &format).unwrap()
        })
        .collect();
    let (p, s, f) = (pipeline.clone(), sources.clone(), format.clone());
    let prefetched: Vec<_> = Prefetcher::new(4, 2, move |b| {
        let items: Vec<usize> = (b * 8..b * 8 + 8).collect();
        let views = p.apply(&s[b * 8..b * 8 + 8], &items, 0)?;
        to_batch(&views.concat(), &f)
    })
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(prefetched.len(), 4);
    for (a, b) in prefetched.iter().zip(&expected) {
        assert!(a.equal(b));
    }

    let failing: Vec<_> = Prefetcher::new(10, 2, |i| {
        if i == 2 {
            Err(Error::BadImage {
                op: "test",
                message: "broken".into(),
            })
        } else {
            Ok(i)
        }
    })
    .collect();
    assert_eq!(failing.len(), 3, "the error ends the sequence");
    assert!(failing[2].is_err());

    // Dropped early, the producer stops instead of running through all items.
    let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = produced.clone();
    let mut slow = Prefetcher::new(1000, 1, move |i| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1));
        Ok(i)
    });
    assert_eq!(slow.next().unwrap().unwrap(), 0);
    drop(slow);
    assert!(produced.load(std::sync::atomic::Ordering::SeqCst) < 10);
}
