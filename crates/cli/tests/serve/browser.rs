//! The web page in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, which `.ci/run` installs) picks an image, sees its
//! neighbours as tiles with thumbnails, clicks one and sees that tile's neighbours, and opens
//! the cluster view. The page's screenshot is written to the test's temporary folder, or to
//! `$CONTRASTIVE_SCREENSHOT` when set (docs/img/serve-page.png is made that way).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::server::{Server, trained_run};

/// A running chromedriver on a free port of 127.0.0.1, killed when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    fn start() -> Self {
        let port = contrastive_e2e::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({e}): the browser test needs Debian's \
                     chromium and chromium-driver (apt-get install chromium chromium-driver; \
                     .ci/run installs them)"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with a fixed window, its profile in `profile`.
async fn browser(driver: &Chromedriver, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({ "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
        ] }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a headless Chromium session")
}

/// Evaluates the JavaScript expression `expression` until it equals `expected` (60 s at
/// most: a thumbnail or a search on a loaded 2-core machine can take a while).
async fn eventually(client: &Client, expression: &str, expected: Value) {
    let script = format!("return {expression};");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = client.execute(&script, vec![]).await.unwrap();
        if value == expected {
            return;
        }
        if Instant::now() > deadline {
            let text = client
                .execute("return document.body.innerText;", vec![])
                .await
                .unwrap();
            panic!("`{expression}` is {value}, not {expected}; the page says {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a JavaScript expression.
async fn evaluate(client: &Client, expression: &str) -> Value {
    client
        .execute(&format!("return {expression};"), vec![])
        .await
        .unwrap()
}

#[test]
fn the_page_in_a_real_browser_searches_an_uploaded_image_then_a_clicked_result() {
    let root = tempfile::tempdir().unwrap();
    let run = trained_run(root.path());
    let server = Server::start(&["--run", run.to_str().unwrap()], None);
    let driver = Chromedriver::start();
    let query = root.path().join("data/ring/3.png");
    let screenshot = std::env::var_os("CONTRASTIVE_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = browser(&driver, &root.path().join("chromium")).await;
        client.goto(&format!("{}/", server.base)).await.unwrap();
        eventually(
            &client,
            "document.getElementById('status').textContent.startsWith('64 items')",
            json!(true),
        )
        .await;

        // Pick the image through the page's file input, asking for 6 neighbours.
        let k = client.find(Locator::Css("#k")).await.unwrap();
        k.clear().await.unwrap();
        k.send_keys("6").await.unwrap();
        let file = client.find(Locator::Css("#file")).await.unwrap();
        file.send_keys(query.to_str().unwrap()).await.unwrap();
        eventually(&client, "document.body.dataset.searches", json!("1")).await;
        eventually(
            &client,
            "document.querySelectorAll('#results .tile').length",
            json!(6),
        )
        .await;
        let tiles = client
            .find_all(Locator::Css("#results .tile"))
            .await
            .unwrap();
        let first = tiles[0].attr("data-id").await.unwrap();
        assert_eq!(
            first.as_deref(),
            query.to_str(),
            "the image finds itself first"
        );
        let score: f64 = tiles[0]
            .find(Locator::Css(".score"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .parse()
            .unwrap();
        assert!(score > 0.999, "its own score is {score}");
        // Every thumbnail arrived and decoded.
        let thumbnails = "[...document.querySelectorAll('#results .tile img')]\
                          .every((img) => img.complete && img.naturalWidth > 0)";
        eventually(&client, thumbnails, json!(true)).await;

        // Click the third result: it becomes the query and finds itself first.
        let clicked = tiles[2].attr("data-id").await.unwrap().unwrap();
        tiles[2].click().await.unwrap();
        eventually(&client, "document.body.dataset.searches", json!("2")).await;
        let query_id = evaluate(&client, "document.querySelector('#query .tile').dataset.id").await;
        assert_eq!(query_id, json!(clicked));
        let first = evaluate(
            &client,
            "document.querySelector('#results .tile').dataset.id",
        )
        .await;
        assert_eq!(first, json!(clicked));
        eventually(
            &client,
            "document.querySelectorAll('#results .tile').length",
            json!(6),
        )
        .await;
        eventually(&client, thumbnails, json!(true)).await;

        // The cluster view: 8 clusters whose sizes cover the collection.
        client
            .find(Locator::Css("#show-clusters"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        eventually(
            &client,
            "document.querySelectorAll('#clusters .cluster').length",
            json!(8),
        )
        .await;
        let sizes = evaluate(
            &client,
            "[...document.querySelectorAll('#clusters h3')]\
             .map((h) => Number(h.textContent.match(/\\((\\d+) items\\)/)[1]))\
             .reduce((a, b) => a + b, 0)",
        )
        .await;
        assert_eq!(sizes, json!(64));
        assert_eq!(
            evaluate(&client, "document.getElementById('error').textContent").await,
            json!("")
        );

        // Back to the top for the screenshot: the query and its neighbours.
        client
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .unwrap();
        let png = client.screenshot().await.unwrap();
        let picture = image::load_from_memory(&png).unwrap();
        assert!(picture.width() >= 1000, "{} wide", picture.width());
        std::fs::write(&screenshot, &png).unwrap();
        client.close().await.unwrap();
    });
}
