//! Property tests: batch shapes, what positives and negatives share, and reproducibility.

use std::collections::{HashMap, HashSet};

use contrastive_samplers::{
    Error, MultiView, PkSampler, RandomPairs, Relation, SmallClassPolicy, TemporalSampler,
    Triplets, temporal_relation, view_sources,
};
use proptest::prelude::*;

fn labels_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..12, 40..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pk_batches_hold_p_classes_of_k_items(labels in labels_strategy(), p in 2usize..5, k in 2usize..5, seed: u64) {
        let Ok(sampler) = PkSampler::new(&labels, p, k, seed) else { return Ok(()) };
        let batches = sampler.epoch(3);
        prop_assert_eq!(batches.len(), labels.len() / (p * k));
        for batch in &batches {
            prop_assert_eq!(batch.len(), p * k);
            for group in batch.chunks(k) {
                let classes: HashSet<usize> = group.iter().map(|&i| labels[i]).collect();
                prop_assert_eq!(classes.len(), 1, "a group of K items shares one class");
            }
            let classes: HashSet<usize> = batch.iter().map(|&i| labels[i]).collect();
            prop_assert_eq!(classes.len(), p, "P distinct classes");
        }
        prop_assert_eq!(&batches, &PkSampler::new(&labels, p, k, seed).unwrap().epoch(3));
    }

    #[test]
    fn skipping_small_classes_never_repeats_an_item(labels in labels_strategy(), seed: u64) {
        let Ok(sampler) = PkSampler::with_policy(&labels, 3, 4, SmallClassPolicy::Skip, seed) else { return Ok(()) };
        let counts = labels.iter().fold(HashMap::new(), |mut m, l| { *m.entry(*l).or_insert(0) += 1; m });
        for batch in sampler.epoch(0) {
            prop_assert_eq!(batch.iter().collect::<HashSet<_>>().len(), batch.len());
            prop_assert!(batch.iter().all(|&i| counts[&labels[i]] >= 4));
        }
    }

    #[test]
    fn pairs_are_positive_exactly_when_labels_match(labels in labels_strategy(), fraction in 0.0f64..=1.0, seed: u64) {
        let Ok(sampler) = RandomPairs::new(&labels, fraction, 50, seed) else { return Ok(()) };
        let pairs = sampler.epoch(1);
        prop_assert_eq!(pairs.len(), 50);
        prop_assert_eq!(pairs.iter().filter(|p| p.positive).count(), (50.0 * fraction).round() as usize);
        for pair in &pairs {
            prop_assert_eq!(pair.positive, labels[pair.a] == labels[pair.b]);
            if pair.positive { prop_assert_ne!(pair.a, pair.b); }
        }
        prop_assert_eq!(pairs, RandomPairs::new(&labels, fraction, 50, seed).unwrap().epoch(1));
    }

    #[test]
    fn triplets_share_the_anchor_label_only_with_the_positive(labels in labels_strategy(), seed: u64) {
        let Ok(sampler) = Triplets::new(&labels, 40, seed) else { return Ok(()) };
        for t in sampler.epoch(2) {
            prop_assert_eq!(labels[t.anchor], labels[t.positive]);
            prop_assert_ne!(t.anchor, t.positive);
            prop_assert_ne!(labels[t.anchor], labels[t.negative]);
        }
    }

    #[test]
    fn multi_view_epochs_are_permutations(len in 1usize..500, batch in 1usize..64, seed: u64) {
        let Ok(sampler) = MultiView::new(len, batch, false, seed) else { return Ok(()) };
        let all: Vec<usize> = sampler.epoch(4).concat();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..len).collect::<Vec<_>>());
        prop_assert_eq!(sampler.epoch(4), MultiView::new(len, batch, false, seed).unwrap().epoch(4));
        if len >= 10 {
            prop_assert_ne!(sampler.epoch(4), sampler.epoch(5), "epochs are shuffled differently");
        }
    }

    #[test]
    fn temporal_positives_share_a_video_and_negatives_never_unless_far(
        counts in prop::collection::vec(0usize..60, 3..12), window in 2usize..8, seed: u64,
    ) {
        let Ok(sampler) = TemporalSampler::new(&counts, 3, 3, window, seed) else { return Ok(()) };
        for v in sampler.skipped() { prop_assert!(counts[*v] < 3); }
        for batch in sampler.epoch(0) {
            prop_assert_eq!(batch.len(), 9);
            let videos: HashSet<usize> = batch.iter().map(|f| f.video).collect();
            prop_assert_eq!(videos.len(), 3);
            for a in &batch {
                prop_assert!(a.frame < counts[a.video]);
                for b in &batch {
                    let relation = temporal_relation(*a, *b, window, Some(window * 3));
                    match relation {
                        Relation::Positive => prop_assert!(a.video == b.video && a.frame.abs_diff(b.frame) <= window),
                        Relation::Negative => prop_assert!(a.video != b.video || a.frame.abs_diff(b.frame) > window * 3),
                        Relation::Ignored => prop_assert!(a.video == b.video),
                    }
                    if a.video == b.video && a != b {
                        prop_assert_eq!(relation, Relation::Positive, "frames of a video in a batch are all positives");
                    }
                }
            }
        }
    }
}

#[test]
fn views_of_one_source_are_positives() {
    assert_eq!(view_sources(3, 2), [0, 1, 2, 0, 1, 2]);
}

#[test]
fn impossible_samplers_are_refused() {
    let labels: Vec<usize> = (0..20).map(|i| i % 2).collect();
    assert!(matches!(
        PkSampler::new(&labels, 3, 2, 0),
        Err(Error::NotEnoughData(_))
    ));
    assert!(matches!(
        PkSampler::new(&labels, 0, 2, 0),
        Err(Error::InvalidConfig { .. })
    ));
    let distinct: Vec<usize> = (0..10).collect();
    assert!(
        RandomPairs::new(&distinct, 0.5, 10, 0).is_err(),
        "no positive pair"
    );
    assert!(
        RandomPairs::new(&[0, 0, 0], 0.5, 10, 0).is_err(),
        "no negative pair"
    );
    assert!(RandomPairs::new(&labels, 1.5, 10, 0).is_err());
    assert!(Triplets::new(&distinct, 5, 0).is_err());
    assert!(MultiView::new(10, 0, true, 0).is_err());
    assert!(MultiView::new(10, 16, true, 0).is_err());
    assert!(
        TemporalSampler::new(&[100, 100], 3, 2, 4, 0).is_err(),
        "3 videos per batch from 2"
    );
    assert!(
        TemporalSampler::new(&[100, 100, 100], 3, 6, 4, 0).is_err(),
        "6 frames within 4 of each other"
    );
    // A video shorter than the frames per video is skipped and counted, not a crash.
    let sampler = TemporalSampler::new(&[1, 50, 0, 50, 50], 3, 2, 3, 0).unwrap();
    assert_eq!(sampler.skipped(), [0, 2]);
}
