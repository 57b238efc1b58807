//! `contrastive serve` as users run it: the real binary on 127.0.0.1, a real HTTP client,
//! over a local store and over a real PostgreSQL + pgvector collection, and the web page in
//! a real headless Chromium. Bad input gets a 4xx with a message and the service keeps
//! serving; a database that goes down gets 503 and the service recovers when it is back.

mod browser;
mod server;

use std::process::Command;

use contrastive_e2e::start_postgres;
use contrastive_pgvector::{PgCollection, PgIndex, PgTarget};
use contrastive_retrieval::Collection;
use serde_json::Value;

use server::{Server, error_of, hit_ids, trained_run};

#[test]
fn the_service_answers_searches_refuses_bad_input_and_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let run = trained_run(root.path());
    let run_arg = run.to_str().unwrap();
    let server = Server::start(&["--run", run_arg, "--max-upload-mib", "1"], Some("s3cret"));

    // The token: none or a wrong one is 401, the page itself is public.
    let anonymous = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let status = anonymous
        .get(format!("{}/api/health", server.base))
        .call()
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let status = anonymous
        .get(format!("{}/api/health", server.base))
        .header("Authorization", "Bearer wrong")
        .call()
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let page = anonymous.get(format!("{}/", server.base)).call().unwrap();
    assert_eq!(page.status(), 200);
    let (status, health) = server.health();
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["items"], 64);

    // An image of the collection finds itself first; by id too; a label filter keeps to it.
    let ring = run.parent().unwrap().join("data/ring/3.png");
    let bytes = std::fs::read(&ring).unwrap();
    let (status, found) = server.form("/api/search", &[&bytes], &[("k", "5")]);
    assert_eq!(status, 200, "{found}");
    let ids = hit_ids(&found);
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[0], ring.to_str().unwrap());
    assert!(found["hits"][0]["score"].as_f64().unwrap() > 0.999);
    let (status, by_id) = server.json("/api/search", serde_json::json!({"id": ids[1], "k": 3}));
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(hit_ids(&by_id)[0], ids[1]);
    let (_, labelled) = server.form(
        "/api/search",
        &[&bytes],
        &[("k", "6"), ("label", "vertical")],
    );
    assert_eq!(labelled["hits"].as_array().unwrap().len(), 6, "{labelled}");
    assert!(
        labelled["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["label"] == "vertical")
    );

    // k = 0, k above the limit; k above the collection is clamped.
    let (status, body) = server.form("/api/search", &[&bytes], &[("k", "0")]);
    assert_eq!(status, 400);
    assert!(error_of(&body).contains("k = 0"), "{body}");
    let (status, _) = server.form("/api/search", &[&bytes], &[("k", "5000")]);
    assert_eq!(status, 400);
    let (status, body) = server.form("/api/search", &[&bytes], &[("k", "1000")]);
    assert_eq!(status, 200);
    assert_eq!(hit_ids(&body).len(), 64);

    // Not an image, a truncated PNG, a header declaring 20 000 x 20 000, a body too large.
    let (status, body) = server.form("/api/search", &[b"hello, I am text"], &[]);
    assert_eq!(status, 400, "{body}");
    assert!(!error_of(&body).is_empty());
    let (status, body) = server.form("/api/search", &[&bytes[..bytes.len() / 2]], &[]);
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.form("/api/search", &[&png_declaring(20_000)], &[]);
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("8192"), "{body}");
    // Just above the 1 MiB limit: small enough to be sent whole before the answer.
    let big = vec![0u8; (1 << 20) + (200 << 10)];
    let (status, _) = server.form("/api/search", &[&big], &[]);
    assert_eq!(status, 413);
    let (status, body) = server.json("/api/search", serde_json::json!({"id": "nowhere.png"}));
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.post("/api/search", "application/json", b"{not json");
    assert_eq!(status, 400, "{body}");

    // Items and thumbnails; an id is percent-encoded in the path.
    let encoded = ids[0].replace('/', "%2F");
    let (status, item) = server.get(&format!("/api/items/{encoded}"));
    assert_eq!(status, 200);
    let item: Value = serde_json::from_slice(&item).unwrap();
    assert_eq!(item["label"], "ring");
    let (status, png) = server.get(&format!("/api/items/{encoded}/image?size=64"));
    assert_eq!(status, 200);
    let thumbnail = image::load_from_memory(&png).unwrap();
    assert_eq!(
        thumbnail.width(),
        24,
        "a 24-pixel image is not enlarged past itself"
    );
    let (status, _) = server.get("/api/items/nope.png/image");
    assert_eq!(status, 404);

    // Adding images: embedded, inserted, written back to the store; the same image twice
    // is one item.
    let new =
        image::GrayImage::from_fn(30, 20, |x, y| image::Luma([((x * 7 + y * 3) % 256) as u8]));
    let mut new_png = Vec::new();
    image::DynamicImage::ImageLuma8(new)
        .write_to(
            &mut std::io::Cursor::new(&mut new_png),
            image::ImageFormat::Png,
        )
        .unwrap();
    let (status, added) = server.form("/api/items", &[&new_png], &[("label", "stripes")]);
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["added"], 1);
    let (_, again) = server.form("/api/items", &[&new_png], &[]);
    assert_eq!(again["added"], 0);
    assert_eq!(server.health().1["items"], 65);
    let store =
        contrastive_retrieval::EmbeddingStore::load(&run.join("store.safetensors")).unwrap();
    assert_eq!(store.len(), 65, "the store file holds the new item");
    let (_, found) = server.form("/api/search", &[&new_png], &[("k", "1")]);
    assert_eq!(found["hits"][0]["label"], "stripes");

    // Clusters of the collection.
    let (status, clusters) = server.get("/api/clusters?k=4&per=3");
    assert_eq!(status, 200);
    let clusters: Value = serde_json::from_slice(&clusters).unwrap();
    let clusters = clusters["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 4);
    let sizes: u64 = clusters.iter().map(|c| c["size"].as_u64().unwrap()).sum();
    assert_eq!(sizes, 65);

    // After all that bad input, it still serves.
    assert_eq!(server.health().0, 200);
}

/// A PNG whose header declares `side` x `side` pixels, with almost no data.
fn png_declaring(side: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

/// PNG's CRC-32 of a chunk's type and data.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_postgres_collection_is_filled_incrementally_served_and_survives_the_database_going_down() {
    let root = tempfile::tempdir().unwrap();
    let run = trained_run(root.path());
    let mut db = start_postgres();
    let url = db.url("shapes");
    let bin = env!("CARGO_BIN_EXE_contrastive");
    let embed = || {
        let out = Command::new(bin)
            .arg("embed")
            .arg(&run)
            .args(["--to", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = embed();
    assert!(first.starts_with("64 new embeddings"), "{first}");
    let second = embed();
    assert!(second.starts_with("0 new embeddings"), "{second}");
    assert!(second.contains("64 in all"), "{second}");

    // `search --db` finds the query image itself first.
    let ring = root.path().join("data/ring/5.png");
    let out = Command::new(bin)
        .args([
            "search",
            "--run",
            run.to_str().unwrap(),
            "--db",
            &url,
            "-k",
            "3",
            "--image",
        ])
        .arg(&ring)
        .arg("--sheet")
        .arg(root.path().join("sheet.png"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(ring.to_str().unwrap()),
        "{stdout}"
    );

    // An empty collection of the same model answers searches with a message.
    let target: PgTarget = url.parse().unwrap();
    let info = PgCollection::open(&target).unwrap().info().clone();
    let empty: PgTarget = db.url("empty").parse().unwrap();
    PgCollection::open_or_create(&empty, &info, PgIndex::default()).unwrap();
    let server = Server::start(
        &["--run", run.to_str().unwrap(), "--db", &db.url("empty")],
        None,
    );
    let bytes = std::fs::read(&ring).unwrap();
    let (status, body) = server.form("/api/search", &[&bytes], &[]);
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("empty"), "{body}");
    drop(server);

    let server = Server::start(&["--run", run.to_str().unwrap(), "--db", &url], None);
    let (status, found) = server.form("/api/search", &[&bytes], &[("k", "4")]);
    assert_eq!(status, 200, "{found}");
    assert_eq!(hit_ids(&found)[0], ring.to_str().unwrap());

    // The database goes down: 503 with a message, no credentials; back: 200 again.
    db.stop();
    let (status, health) = server.health();
    assert_eq!(status, 503, "{health}");
    assert!(error_of(&health).contains("unavailable"), "{health}");
    let (status, body) = server.form("/api/search", &[&bytes], &[]);
    assert_eq!(status, 503, "{body}");
    db.resume().unwrap();
    let (status, health) = server.health();
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["items"], 64);
    let (status, _) = server.form("/api/search", &[&bytes], &[("k", "2")]);
    assert_eq!(status, 200);
    drop(server);

    // Starting against a database that is down is a clear error.
    db.stop();
    let out = Command::new(bin)
        .args([
            "serve",
            "--run",
            run.to_str().unwrap(),
            "--db",
            &url,
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot connect to postgres://postgres@127.0.0.1"),
        "{stderr}"
    );
}

#[test]
fn a_service_reachable_from_other_machines_needs_a_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_contrastive"))
        .args(["serve", "--run", "nowhere", "--addr", "0.0.0.0:0"])
        .env_remove("CONTRASTIVE_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--token"), "{stderr}");
}

#[test]
fn a_killed_embed_run_resumed_adds_exactly_the_missing_rows_and_holds_each_content_once() {
    let root = tempfile::tempdir().unwrap();
    let run = trained_run(root.path());
    // The same model over 4 000 images, two of them also under a second name.
    let big = root.path().join("big");
    contrastive_e2e::write_shapes(&big, 1000, 24, 9);
    let copies = [
        (big.join("ring/7.png"), big.join("ring/copy-of-7.png")),
        (
            big.join("diagonal/3.png"),
            big.join("vertical/copy-of-d3.png"),
        ),
    ];
    for (from, to) in &copies {
        std::fs::copy(from, to).unwrap();
    }
    let big_run = root.path().join("big-run");
    std::fs::create_dir(&big_run).unwrap();
    std::fs::copy(
        run.join("model.safetensors"),
        big_run.join("model.safetensors"),
    )
    .unwrap();
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let data = format!("{:?}", root.path().join("data").display().to_string());
    assert!(config.contains(&data), "{config}");
    let big_quoted = format!("{:?}", big.display().to_string());
    std::fs::write(
        big_run.join("config.toml"),
        config.replace(&data, &big_quoted),
    )
    .unwrap();
    let expected: std::collections::BTreeSet<String> = contrastive_e2e::SHAPES
        .iter()
        .flat_map(|shape| {
            let big = big.display().to_string();
            (0..1000).map(move |i| format!("{big}/{shape}/{i}.png"))
        })
        .collect();

    let db = start_postgres();
    let url = db.url("killed");
    let target: PgTarget = url.parse().unwrap();
    let bin = env!("CARGO_BIN_EXE_contrastive");
    let embed = |url: &str| {
        Command::new(bin)
            .arg("embed")
            .arg(&big_run)
            .args(["--to", url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // SIGKILL once some transactions have committed and before the last.
    let mut child = embed(&url);
    let start = std::time::Instant::now();
    let at_kill = loop {
        let count = PgCollection::open(&target)
            .and_then(|mut c| c.count())
            .unwrap_or(0);
        if count >= 500 {
            child.kill().unwrap();
            break count;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "embed ended before it could be killed"
        );
        assert!(start.elapsed().as_secs() < 300, "no rows after 300 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    child.wait().unwrap();
    let mut collection = PgCollection::open(&target).unwrap();
    let after_kill = collection.count().unwrap();
    assert!(
        after_kill < expected.len(),
        "killed after all {after_kill} rows; make the data larger"
    );
    // Rows commit 500 at a time: nothing half-written.
    assert!(
        after_kill >= at_kill && after_kill.is_multiple_of(500),
        "{after_kill} rows"
    );
    let (held, _) = collection.all().unwrap();
    assert!(held.iter().all(|item| expected.contains(&item.id)));

    // The re-run adds exactly what is missing; the copies are held once, under their
    // first names.
    let out = embed(&url).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = expected.len() - after_kill;
    assert!(
        stdout.starts_with(&format!("{missing} new embeddings")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} in all", expected.len())),
        "{stdout}"
    );
    assert!(stdout.contains("2 of the images are copies"), "{stdout}");
    let (items, resumed) = collection.all().unwrap();
    let ids: std::collections::BTreeSet<String> = items.into_iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), expected.len());
    assert_eq!(ids, expected);

    // An uninterrupted run into another collection holds the same vectors.
    let whole = db.url("whole");
    let out = embed(&whole).wait_with_output().unwrap();
    assert!(out.status.success());
    let (_, uninterrupted) = PgCollection::open(&whole.parse().unwrap())
        .unwrap()
        .all()
        .unwrap();
    assert!(resumed.allclose(&uninterrupted, 1e-5, 1e-5, false));
}
