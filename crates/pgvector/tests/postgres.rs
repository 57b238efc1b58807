//! A collection in a real PostgreSQL + pgvector server on 127.0.0.1: inserts that skip what
//! is held, searches that agree with exact search, label filters, refusals before any
//! write, and a database that goes down and comes back.

use contrastive_e2e::start_postgres;
use contrastive_pgvector::{PgCollection, PgIndex, PgTarget};
use contrastive_retrieval::{Collection, CollectionInfo, Error, Item, Metric, Preprocess, search};
use contrastive_tensor::{Device, Kind, Tensor, seeded};

fn info(model: &str, dim: usize, metric: Metric) -> CollectionInfo {
    CollectionInfo {
        model: model.into(),
        dim,
        metric,
        preprocess: Preprocess {
            size: 24,
            channels: 1,
            mean: vec![0.5],
            std: vec![0.25],
        },
    }
}

fn items(range: std::ops::Range<usize>) -> Vec<Item> {
    range
        .map(|i| Item {
            label: Some(if i % 3 == 0 { "a" } else { "b" }.into()),
            content: Some(format!("pixels of {i}")),
            ..Item::new(format!("img/{i}.png"))
        })
        .collect()
}

#[test]
fn a_collection_in_postgres_grows_searches_refuses_and_survives_the_database_going_down() {
    let mut server = start_postgres();
    let target: PgTarget = server.url("shapes").parse().unwrap();
    let missing = PgCollection::open(&target).unwrap_err();
    assert!(missing.to_string().contains("does not exist"), "{missing}");

    let x = seeded(3, || Tensor::randn([80, 6], (Kind::Float, Device::Cpu)));
    let mut collection =
        PgCollection::open_or_create(&target, &info("m1", 6, Metric::Cosine), PgIndex::default())
            .unwrap();
    assert_eq!(
        collection
            .add(&items(0..50), &x.narrow(0, 0, 50), "m1")
            .unwrap(),
        50
    );
    // A re-run with more items adds only the new ones.
    assert_eq!(
        collection
            .add(&items(0..60), &x.narrow(0, 0, 60), "m1")
            .unwrap(),
        10
    );
    assert_eq!(collection.count().unwrap(), 60);

    // The same neighbours, in the same order, as exact search over the same vectors.
    let query = x.get(70);
    let hits = collection.search(&query, 10, None).unwrap();
    let exact = search(
        &x.narrow(0, 0, 60),
        &query.view([1, -1]),
        10,
        Metric::Cosine,
    )
    .unwrap();
    let rows = Vec::<i64>::try_from(&exact.indices.get(0)).unwrap();
    let scores = Vec::<f32>::try_from(&exact.scores.get(0)).unwrap();
    let ids: Vec<String> = hits.iter().map(|h| h.item.id.clone()).collect();
    let expected: Vec<String> = rows.iter().map(|r| format!("img/{r}.png")).collect();
    assert_eq!(ids, expected);
    for (hit, score) in hits.iter().zip(scores) {
        assert!((hit.score - score).abs() < 1e-5, "{} vs {score}", hit.score);
    }

    // A label filter returns only that label, as many as asked for when there are enough.
    let only_a = collection.search(&query, 7, Some("a")).unwrap();
    assert_eq!(only_a.len(), 7);
    assert!(only_a.iter().all(|h| h.item.label.as_deref() == Some("a")));
    assert!(
        collection
            .search(&query, 5, Some("zebra"))
            .unwrap()
            .is_empty()
    );
    // k beyond the collection is clamped; k = 0 is refused.
    assert_eq!(collection.search(&query, 500, None).unwrap().len(), 60);
    assert!(matches!(
        collection.search(&query, 0, None),
        Err(Error::Invalid { .. })
    ));

    // Another model, another width, NaN: refused, nothing written.
    let err = collection
        .add(&items(60..62), &x.narrow(0, 60, 2), "m2")
        .unwrap_err();
    assert!(err.to_string().contains("model"), "{err}");
    let wide = Tensor::ones([2, 7], (Kind::Float, Device::Cpu));
    assert!(collection.add(&items(60..62), &wide, "m1").is_err());
    let nan = Tensor::full([2, 6], f64::NAN, (Kind::Float, Device::Cpu));
    assert!(matches!(
        collection.add(&items(60..62), &nan, "m1"),
        Err(Error::NonFinite { .. })
    ));
    let err =
        PgCollection::open_or_create(&target, &info("m2", 6, Metric::Cosine), PgIndex::default())
            .unwrap_err();
    assert!(err.to_string().contains("model"), "{err}");
    let err = PgCollection::open_or_create(&target, &info("m1", 6, Metric::L2), PgIndex::default())
        .unwrap_err();
    assert!(err.to_string().contains("Cosine"), "{err}");
    assert_eq!(collection.count().unwrap(), 60);

    // Items by id; delete.
    let item = collection.get("img/3.png").unwrap().unwrap();
    assert_eq!(item.label.as_deref(), Some("a"));
    let vector = collection.vector("img/3.png").unwrap().unwrap();
    assert!(vector.allclose(&x.get(3), 1e-6, 1e-6, false));
    assert_eq!(item.content.as_deref(), Some("pixels of 3"));
    // Held by id, or by content under another id (a copy); a copy is not added again.
    let copy = Item {
        content: Some("pixels of 4".into()),
        ..Item::new("copies/4.png".into())
    };
    let asked = [items(3..4), items(99..100), vec![copy.clone()]].concat();
    let held = collection.held(&asked).unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held["img/3.png"], "img/3.png");
    assert_eq!(held["copies/4.png"], "img/4.png");
    assert_eq!(
        collection.add(&[copy], &x.narrow(0, 4, 1), "m1").unwrap(),
        0
    );
    assert!(collection.get("copies/4.png").unwrap().is_none());
    assert_eq!(
        collection
            .delete(&["img/3.png".into(), "nope".into()])
            .unwrap(),
        1
    );
    assert!(collection.get("img/3.png").unwrap().is_none());
    let (all, vectors) = collection.all().unwrap();
    assert_eq!(all.len(), 59);
    assert_eq!(vectors.size(), [59, 6]);

    // The database goes down: calls fail as unavailable; it comes back: the same
    // collection reconnects by itself.
    server.stop();
    let err = collection.count().unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(!err.to_string().contains("password"));
    let err = PgCollection::open(&target).unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    server.resume().unwrap();
    assert_eq!(collection.count().unwrap(), 59);
    assert_eq!(collection.search(&query, 3, None).unwrap().len(), 3);

    // A collection of another metric beside it; dropping one leaves the other.
    let other: PgTarget = server.url("by_l2").parse().unwrap();
    let mut l2 =
        PgCollection::open_or_create(&other, &info("m1", 6, Metric::L2), PgIndex::default())
            .unwrap();
    let err = l2.search(&query, 3, None).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    l2.add(&items(0..20), &x.narrow(0, 0, 20), "m1").unwrap();
    let near = l2.search(&x.get(4), 1, None).unwrap();
    assert_eq!(near[0].item.id, "img/4.png");
    assert!(
        near[0].score.abs() < 1e-5,
        "an L2 distance of itself: {}",
        near[0].score
    );
    assert!(PgCollection::drop_collection(&other).unwrap());
    assert!(!PgCollection::drop_collection(&other).unwrap());
    assert_eq!(collection.count().unwrap(), 59);
}

#[test]
fn exact_search_matches_ours_and_the_hnsw_index_recalls_at_least_95_percent() {
    let server = start_postgres();
    let target: PgTarget = server.url("recall").parse().unwrap();
    // 4 000 vectors around 40 centres in 32 dimensions (clustered, as embeddings are).
    let (n, dim, queries) = (4000, 32, 50);
    let x = seeded(11, || {
        let centres = Tensor::randn([40, dim], (Kind::Float, Device::Cpu));
        let which = Tensor::randint(40, [n + queries], (Kind::Int64, Device::Cpu));
        centres.index_select(0, &which)
            + Tensor::randn([n + queries, dim], (Kind::Float, Device::Cpu)) * 0.5
    });
    let (data, query) = (x.narrow(0, 0, n), x.narrow(0, n, queries));
    let mut collection = PgCollection::open_or_create(
        &target,
        &info("m1", dim as usize, Metric::Cosine),
        PgIndex::default(),
    )
    .unwrap();
    assert_eq!(
        collection.add(&items(0..n as usize), &data, "m1").unwrap(),
        n as usize
    );
    let exact = search(&data, &query, 10, Metric::Cosine).unwrap();
    let truth: Vec<Vec<i64>> = (0..queries)
        .map(|q| Vec::<i64>::try_from(&exact.indices.get(q)).unwrap())
        .collect();
    let ids = |collection: &mut PgCollection, q: i64| -> Vec<i64> {
        collection
            .search(&query.get(q), 10, None)
            .unwrap()
            .iter()
            .map(|h| {
                h.item.id["img/".len()..h.item.id.len() - ".png".len()]
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    let mut found = 0;
    for q in 0..queries {
        let approximate = ids(&mut collection, q);
        found += approximate
            .iter()
            .filter(|id| truth[q as usize].contains(id))
            .count();
    }
    let recall = found as f64 / (10 * queries) as f64;
    assert!(recall >= 0.95, "recall@10 of the HNSW index: {recall}");
    collection.set_exact(true);
    for q in 0..queries {
        assert_eq!(ids(&mut collection, q), truth[q as usize], "query {q}");
    }
}
