//! W6: `contrastive serve` under a bounded load on 127.0.0.1, as rows.
//!
//! The default run (a short training of `configs/fmnist-simclr.toml`) embeds the 60 000
//! Fashion-MNIST training images into a local store, an HNSW index of it and a PostgreSQL +
//! pgvector collection (`contrastive embed --to`, timed: the bulk insert row). Each backend is
//! then served by `contrastive serve`; clients upload test images (PNG) to `POST /api/search`
//! for the top 10: first a recall pass without inserts (recall@10 against the local exact
//! search's answers), then N queries at C = 1, 4 and 16 concurrent while another client adds
//! 10 other test images every 100 ms through `POST /api/items`. Rows: queries/s, p50 and p99
//! latency, with the errors and the inserts achieved in the note, and the server's peak
//! resident memory beside each queries/s row; a server that dies during a pass fails the run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use contrastive_data::{Dataset, Split, fashion_mnist, image_from_hwc};
use contrastive_pgserver::{LocalPostgres, resolve_installation};

use super::report::Row;

/// Neighbours asked for.
const K: usize = 10;
/// Concurrent clients of the timed passes.
const CONCURRENCY: [usize; 3] = [1, 4, 16];
/// Images added per insert request, and the pause between requests (100 images/s).
const INSERT_BATCH: usize = 10;
const INSERT_EVERY: Duration = Duration::from_millis(100);
/// The multipart boundary of every request.
const BOUNDARY: &str = "contrastive-w6";

/// Sizes of a W6 run.
struct Sizes {
    /// Training steps of the default run (the model only has to exist and be sensible).
    steps: usize,
    /// Queries per pass.
    queries: usize,
}

/// One backend `contrastive serve` is started on.
struct Backend {
    name: &'static str,
    args: Vec<String>,
}

/// Runs W6 and returns its rows.
pub fn run(
    root: &Path,
    contrastive: &Path,
    python: Option<&Path>,
    small: bool,
) -> Result<Vec<Row>> {
    let sizes = if small {
        Sizes {
            steps: 2,
            queries: 40,
        }
    } else {
        Sizes {
            steps: 100,
            queries: 2000,
        }
    };
    let data = crate::download::run("fashion-mnist", None)?;
    let test = fashion_mnist(&data, Split::Test).context("reading the Fashion-MNIST test set")?;
    let queries = (0..sizes.queries)
        .map(|i| png_of(&test, i, None))
        .collect::<Result<Vec<_>>>()?;
    let inserts = Inserts {
        test: Arc::new(test),
        first: sizes.queries,
        made: Arc::new(AtomicUsize::new(0)),
    };

    let dir = tempfile::tempdir()?;
    let run = dir.path().join("run");
    train_default_run(root, contrastive, &data, &run, sizes.steps)?;
    let store = run.join("store.safetensors");
    let index = run.join("store.hnsw.safetensors");
    contrastive_ok(
        root,
        contrastive,
        &["embed".as_ref(), run.as_os_str()],
        "embed",
    )?;
    contrastive_ok(
        root,
        contrastive,
        &[
            "index".as_ref(),
            store.as_os_str(),
            "--m".as_ref(),
            "16".as_ref(),
            "--ef-construction".as_ref(),
            "64".as_ref(),
            "--ef-search".as_ref(),
            "40".as_ref(),
        ],
        "index",
    )?;

    let installation = resolve_installation(&crate::postgres::setup(root)?)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let database = LocalPostgres::start(&installation, None, port)?;
    let url = database.url(COLLECTION);
    let start = Instant::now();
    let embedded = contrastive_ok(
        root,
        contrastive,
        &[
            "embed".as_ref(),
            run.as_os_str(),
            "--to".as_ref(),
            url.as_ref(),
        ],
        "embed --to",
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let rows_in = embedded
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<f64>().ok())
        .context("embed --to printed no count")?;
    let mut rows = vec![Row {
        workload: "W6".into(),
        name: "embed_to_pgvector".into(),
        unit: "images/s".into(),
        value: Some(rows_in / seconds),
        higher_is_better: true,
        peak_mib: None,
        note: Some(format!(
            "{rows_in} images embedded and inserted (HNSW m 16, ef_construction 64) in \
             {seconds:.1} s, model loading included"
        )),
        peer: None,
    }];

    let backends = [
        Backend {
            name: "local_exact",
            args: vec!["--store".into()],
        },
        Backend {
            name: "local_hnsw",
            args: vec!["--store".into(), "--index".into()],
        },
        Backend {
            name: "pgvector_hnsw",
            args: vec!["--db".into(), url.clone()],
        },
    ];
    let mut truth: Option<Vec<Vec<String>>> = None;
    for backend in &backends {
        // Each local backend serves its own copy: the inserts change the files.
        let copy = dir.path().join(backend.name);
        std::fs::create_dir_all(&copy)?;
        let mut args = vec![
            "serve".to_owned(),
            "--run".into(),
            run.display().to_string(),
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--uploads".into(),
            copy.join("uploads").display().to_string(),
        ];
        for arg in &backend.args {
            let file = match arg.as_str() {
                "--store" => Some(&store),
                "--index" => Some(&index),
                _ => None,
            };
            args.push(arg.clone());
            if let Some(file) = file {
                let to = copy.join(file.file_name().expect("a file name"));
                std::fs::copy(file, &to)?;
                args.push(to.display().to_string());
            }
        }
        let mut server = Server::start(root, contrastive, &args)?;
        println!("bench: W6 {} at {}", backend.name, server.base);
        let answers = load(&server.base, &queries, 4, None)?;
        if answers.errors > 0 {
            bail!(
                "{}: {} of the recall pass's queries failed; the first: {}",
                backend.name,
                answers.errors,
                answers.first_error.unwrap_or_default()
            );
        }
        let recall = match &truth {
            None => {
                truth = Some(answers.ids.clone());
                1.0
            }
            Some(truth) => recall_at_k(truth, &answers.ids),
        };
        rows.push(row(
            backend.name,
            "recall10",
            "recall@10",
            recall,
            true,
            format!(
                "against local exact search, {} queries, no inserts",
                queries.len()
            ),
        ));
        for c in CONCURRENCY {
            let pass = load(&server.base, &queries, c, Some(&inserts))?;
            server.check_alive(backend.name)?;
            let note = pass.note(c);
            rows.push(Row {
                peak_mib: server.peak_mib(),
                ..row(
                    backend.name,
                    &format!("c{c}_qps"),
                    "q/s",
                    pass.queries_per_s(),
                    true,
                    note.clone(),
                )
            });
            for (what, q) in [("p50", 0.5), ("p99", 0.99)] {
                rows.push(row(
                    backend.name,
                    &format!("c{c}_{what}"),
                    "ms",
                    percentile(&pass.latencies_ms, q),
                    false,
                    note.clone(),
                ));
            }
        }
        drop(server);
    }
    if let Some(python) = python {
        // The same pgvector queries straight from Python, after the service's passes.
        let mut command = Command::new(python);
        command
            .arg(Path::new("bench").join("peers").join(PEER))
            .arg("--dsn")
            .arg(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
            .args(["--collection", COLLECTION, "--ef-search", "40"])
            .args(["--queries", &sizes.queries.to_string()]);
        // The service's figures are kept whatever happens to the peer.
        match super::rows_of(root, command, PEER) {
            Ok(found) => rows.extend(found),
            Err(e) => eprintln!("bench: W6's peer failed, reported without it: {e:#}"),
        }
    }
    Ok(rows)
}

/// The PostgreSQL collection W6 fills.
const COLLECTION: &str = "w6";

/// The Python peer: the service's pgvector queries issued through psycopg.
const PEER: &str = "service_w6_psycopg.py";

fn row(backend: &str, what: &str, unit: &str, value: f64, higher: bool, note: String) -> Row {
    Row {
        workload: "W6".into(),
        name: format!("{backend}_{what}"),
        unit: unit.into(),
        value: Some(value),
        higher_is_better: higher,
        peak_mib: None,
        note: Some(note),
        peer: None,
    }
}

/// Trains the default run for `steps` steps into `out`.
fn train_default_run(
    root: &Path,
    contrastive: &Path,
    data: &Path,
    out: &Path,
    steps: usize,
) -> Result<()> {
    let status = Command::new(contrastive)
        .current_dir(root)
        .args(["train", "--config", "configs/fmnist-simclr.toml", "--quiet"])
        .arg("--out")
        .arg(out)
        .arg("--data-dir")
        .arg(data)
        .args(["--set", &format!("run.max_steps={steps}")])
        .args(["--set", "eval.every_epochs=0", "--set", "eval.final=false"])
        .stdout(Stdio::null())
        .status()
        .context("running contrastive train")?;
    if !status.success() {
        bail!("contrastive train failed ({status})");
    }
    Ok(())
}

/// Runs `contrastive ARGS` to the end; its stdout.
fn contrastive_ok(
    root: &Path,
    contrastive: &Path,
    args: &[&std::ffi::OsStr],
    what: &str,
) -> Result<String> {
    let mut command = Command::new(contrastive);
    command.args(args);
    super::stdout_of(root, command, &format!("contrastive {what}"))
}

/// Test image `index` as PNG bytes; `mark` writes a number into its first two pixels, so
/// that every insert is new content.
fn png_of(test: &impl Dataset, index: usize, mark: Option<usize>) -> Result<Vec<u8>> {
    let mut image = test.get(index)?.image;
    if let Some(mark) = mark {
        let pixels = image.as_slice_mut().context("a contiguous image")?;
        pixels[0] = (mark % 256) as u8;
        pixels[1] = (mark / 256 % 256) as u8;
    }
    let mut png = Vec::new();
    image_from_hwc(image.view())?
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding a PNG")?;
    Ok(png)
}

/// A multipart form of `images` (fields `image`) and text fields.
fn multipart(images: &[Vec<u8>], fields: &[(&str, String)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (n, png) in images.iter().enumerate() {
        let head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; \
             filename=\"w6-{n}.png\"\r\nContent-Type: image/png\r\n\r\n"
        );
        body.extend(head.into_bytes().into_iter().chain(png.iter().copied()));
        body.extend_from_slice(b"\r\n");
    }
    for (name, value) in fields {
        let part = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        );
        body.extend_from_slice(part.as_bytes());
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// POSTs a form; the JSON answer, or why not.
fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<serde_json::Value> {
    let mut response = agent
        .post(url)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .send(body)?;
    Ok(serde_json::from_str(
        &response.body_mut().read_to_string()?,
    )?)
}

/// The test images that the inserting client adds, each made new content.
#[derive(Clone)]
struct Inserts {
    test: Arc<contrastive_data::InMemoryDataset>,
    /// The first test image that is not a query.
    first: usize,
    /// Inserts made so far over every pass (the mark of the next).
    made: Arc<AtomicUsize>,
}

impl Inserts {
    /// The next `INSERT_BATCH` images.
    fn next_batch(&self) -> Result<Vec<Vec<u8>>> {
        (0..INSERT_BATCH)
            .map(|_| {
                let n = self.made.fetch_add(1, Ordering::Relaxed);
                let others = self.test.len() - self.first;
                png_of(&*self.test, self.first + n % others, Some(n))
            })
            .collect()
    }
}

/// What one pass measured.
struct Pass {
    /// Client-side latency of each answered query.
    latencies_ms: Vec<f64>,
    /// The ids answered for each query (in the queries' order; empty where it failed).
    ids: Vec<Vec<String>>,
    errors: usize,
    /// Why the first failed query failed.
    first_error: Option<String>,
    seconds: f64,
    /// Images the inserting client had added, and its failed requests.
    inserted: usize,
    insert_errors: usize,
}

impl Pass {
    fn queries_per_s(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.seconds
    }

    fn note(&self, c: usize) -> String {
        format!(
            "{} queries at C {c}, {} errors{}; {} images inserted meanwhile ({:.0}/s), {} \
             failed insert requests",
            self.ids.len(),
            self.errors,
            (self.first_error.as_ref()).map_or(String::new(), |e| format!(" (first: {e})")),
            self.inserted,
            self.inserted as f64 / self.seconds,
            self.insert_errors
        )
    }
}

/// Sends every query once from `c` clients (while `inserts`, if any, are added), bounded:
/// it stops when the last query is answered.
fn load(base: &str, queries: &[Vec<u8>], c: usize, inserts: Option<&Inserts>) -> Result<Pass> {
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        queries
            .iter()
            .map(|png| multipart(std::slice::from_ref(png), &[("k", K.to_string())]))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let agent = || {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(true)
            .build()
            .new_agent()
    };
    let inserter = inserts.map(|inserts| {
        let (inserts, done, url) = (inserts.clone(), done.clone(), format!("{base}api/items"));
        let agent = agent();
        std::thread::spawn(move || -> Result<(usize, usize)> {
            let (mut added, mut failed) = (0, 0);
            let mut due = Instant::now();
            while !done.load(Ordering::Relaxed) {
                let batch = inserts.next_batch()?;
                match post(&agent, &url, &multipart(&batch, &[])) {
                    Ok(_) => added += batch.len(),
                    Err(_) => failed += 1,
                }
                due += INSERT_EVERY;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            Ok((added, failed))
        })
    });
    let start = Instant::now();
    let clients: Vec<_> = (0..c)
        .map(|_| {
            let (bodies, next, url) = (bodies.clone(), next.clone(), format!("{base}api/search"));
            let agent = agent();
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                loop {
                    let q = next.fetch_add(1, Ordering::Relaxed);
                    if q >= bodies.len() {
                        break answered;
                    }
                    let sent = Instant::now();
                    let ids = post(&agent, &url, &bodies[q]).and_then(|a| {
                        hit_ids(&a).with_context(|| format!("an answer without hits: {a}"))
                    });
                    answered.push((q, sent.elapsed().as_secs_f64() * 1e3, ids));
                }
            })
        })
        .collect();
    let mut pass = Pass {
        latencies_ms: Vec::new(),
        ids: vec![Vec::new(); queries.len()],
        errors: 0,
        first_error: None,
        seconds: 0.0,
        inserted: 0,
        insert_errors: 0,
    };
    for client in clients {
        for (q, ms, ids) in client.join().expect("a client thread") {
            match ids {
                Ok(ids) => {
                    pass.latencies_ms.push(ms);
                    pass.ids[q] = ids;
                }
                Err(e) => {
                    pass.errors += 1;
                    pass.first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
    }
    pass.seconds = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    if let Some(inserter) = inserter {
        (pass.inserted, pass.insert_errors) = inserter.join().expect("the inserting thread")?;
    }
    Ok(pass)
}

/// The ids of a search answer's hits.
fn hit_ids(answer: &serde_json::Value) -> Option<Vec<String>> {
    answer["hits"]
        .as_array()?
        .iter()
        .map(|h| h["id"].as_str().map(str::to_owned))
        .collect()
}

/// Mean over queries of the share of the true top k found.
fn recall_at_k(truth: &[Vec<String>], found: &[Vec<String>]) -> f64 {
    let shares: Vec<f64> = truth
        .iter()
        .zip(found)
        .filter(|(t, _)| !t.is_empty())
        .map(|(t, f)| f.iter().filter(|id| t.contains(id)).count() as f64 / t.len() as f64)
        .collect();
    shares.iter().sum::<f64>() / shares.len().max(1) as f64
}

/// The `q` quantile (0..=1) of `values`, by the nearest rank; NaN when there are none.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A `contrastive serve` process, killed when dropped.
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT/`.
    base: String,
}

impl Server {
    fn start(root: &Path, contrastive: &Path, args: &[String]) -> Result<Self> {
        let mut child = Command::new(contrastive)
            .current_dir(root)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting contrastive serve")?;
        let mut lines = BufReader::new(child.stdout.take().context("serve's stdout")?).lines();
        let first = lines.next().transpose()?.unwrap_or_default();
        // The rest of its output is read and dropped, so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let base = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_owned);
        let mut server = Self {
            child,
            base: String::new(),
        };
        server.base = base.with_context(|| format!("serve printed {first:?}, no address"))?;
        Ok(server)
    }

    /// An error when the server has exited (a crash, or the kernel's OOM killer): the
    /// pass's figures then measure a dead server, and are not reported.
    fn check_alive(&mut self, backend: &str) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!(
                "{backend}: contrastive serve exited during the pass ({status}); if it was \
                 killed, see the kernel log (dmesg) for the OOM killer"
            ),
            None => Ok(()),
        }
    }

    /// The server's peak resident memory so far, in MiB (Linux: `VmHWM`).
    fn peak_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn recall_counts_the_true_neighbours_found_and_skips_unanswered_queries() {
        let ids = |s: &[&str]| s.iter().map(|&x| x.to_owned()).collect::<Vec<_>>();
        let truth = vec![ids(&["a", "b", "c", "d"]), ids(&["e", "f"]), Vec::new()];
        let found = vec![ids(&["a", "x", "c", "y"]), ids(&["f", "e"]), ids(&["z"])];
        assert!((recall_at_k(&truth, &found) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn a_form_holds_each_image_and_field_between_boundaries() {
        let body = multipart(&[b"PNG1".to_vec(), b"PNG2".to_vec()], &[("k", "10".into())]);
        let text = String::from_utf8(body).unwrap();
        assert_eq!(text.matches(&format!("--{BOUNDARY}\r\n")).count(), 3);
        assert!(text.contains("name=\"image\"; filename=\"w6-1.png\""));
        assert!(text.contains("\r\n\r\nPNG2\r\n"));
        assert!(text.contains("name=\"k\"\r\n\r\n10\r\n"));
        assert!(text.ends_with(&format!("--{BOUNDARY}--\r\n")));
    }

    #[test]
    fn search_answers_give_their_ids_and_other_answers_none() {
        let answer = serde_json::json!({"hits": [{"id": "a", "score": 1.0}, {"id": "b"}]});
        assert_eq!(hit_ids(&answer), Some(vec!["a".into(), "b".into()]));
        assert_eq!(hit_ids(&serde_json::json!({"error": "down"})), None);
    }
}
