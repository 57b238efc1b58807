//! Downloads against a loopback HTTP server started by the test: success, resume after a
//! cut connection, checksum mismatch, 404 falling back to the mirror, and archives.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use contrastive_data::download::{
    DatasetSpec, Origin, RemoteFile, download, fetch_file, find_existing, hex_sha256,
};
use contrastive_data::{Dataset, Error, Split, fashion_mnist};

/// How the server answers one path.
#[derive(Clone)]
enum Behaviour {
    /// The body, honouring `Range: bytes=N-` with 206.
    Serve(Vec<u8>),
    /// Announce the whole body but send only `cut` bytes and close, the first time; serve
    /// normally (with ranges) afterwards.
    CutOnce { body: Vec<u8>, cut: usize },
    /// 404 Not Found.
    Missing,
}

/// Requests seen: (path, Range header).
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A tiny HTTP/1.1 server on 127.0.0.1, one connection at a time, for the test's lifetime.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    requests: RequestLog,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(routes: HashMap<String, Behaviour>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let mut cut_done = std::collections::HashSet::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        handle(stream, &routes, &requests2, &mut cut_done);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            port,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// A server with one path serving `body`.
    fn serving(path: &str, body: &[u8]) -> Server {
        Server::start(HashMap::from([(
            path.to_owned(),
            Behaviour::Serve(body.to_vec()),
        )]))
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn handle(
    mut stream: TcpStream,
    routes: &HashMap<String, Behaviour>,
    log: &Mutex<Vec<(String, Option<String>)>>,
    cut_done: &mut std::collections::HashSet<String>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let start = range
        .as_deref()
        .and_then(|r| {
            r.strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    let (body, cut) = match routes.get(&path) {
        None | Some(Behaviour::Missing) => {
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        Some(Behaviour::Serve(body)) => (body, None),
        Some(Behaviour::CutOnce { body, cut }) => {
            let first = cut_done.insert(path.clone());
            (body, first.then_some(*cut))
        }
    };
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len() - start,
            body.len() - 1,
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    let _ = stream.write_all(head.as_bytes());
    let end = cut.map_or(body.len(), |c| start + c);
    let _ = stream.write_all(&body[start..end.min(body.len())]);
    let _ = stream.flush();
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 253) as u8).collect()
}

fn remote(name: &str, body: &[u8], urls: Vec<String>) -> RemoteFile {
    RemoteFile {
        name: name.into(),
        size: Some(body.len() as u64),
        sha256: hex_sha256(body),
        content_sha256: None,
        urls,
    }
}

#[test]
fn a_file_downloads_and_verifies() {
    let body = payload(300_000);
    let server = Server::serving("/f.bin", &body);
    let dir = tempfile::tempdir().unwrap();
    let file = remote("f.bin", &body, vec![server.url("/f.bin")]);
    let mut reports = 0;
    let used = fetch_file(&file, dir.path(), &mut |p| {
        reports += 1;
        assert_eq!(p.total, Some(300_000));
    })
    .unwrap();
    assert_eq!(used, server.url("/f.bin"));
    assert_eq!(fs::read(dir.path().join("f.bin")).unwrap(), body);
    assert!(reports > 0, "progress was reported");
    // Fetching again uses the verified copy: no new request.
    assert_eq!(fetch_file(&file, dir.path(), &mut |_| {}).unwrap(), "cache");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_cut_connection_resumes_where_it_stopped() {
    let body = payload(500_000);
    let server = Server::start(HashMap::from([(
        "/big.bin".into(),
        Behaviour::CutOnce {
            body: body.clone(),
            cut: 123_456,
        },
    )]));
    let dir = tempfile::tempdir().unwrap();
    let file = remote("big.bin", &body, vec![server.url("/big.bin")]);
    fetch_file(&file, dir.path(), &mut |_| {}).unwrap();
    assert_eq!(fs::read(dir.path().join("big.bin")).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].1, None);
    assert_eq!(
        requests[1].1.as_deref(),
        Some("bytes=123456-"),
        "the second request resumes"
    );
    assert!(!dir.path().join("big.bin.part").exists());
}

#[test]
fn a_checksum_mismatch_deletes_the_file_and_reports_it() {
    let body = payload(10_000);
    let server = Server::serving("/f.bin", &body);
    let dir = tempfile::tempdir().unwrap();
    let mut file = remote("f.bin", &body, vec![server.url("/f.bin")]);
    file.sha256 = hex_sha256(b"something else");
    let err = fetch_file(&file, dir.path(), &mut |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("checksum mismatch") && text.contains(&file.sha256),
        "{text}"
    );
    assert!(!dir.path().join("f.bin").exists() && !dir.path().join("f.bin.part").exists());
}

#[test]
fn a_404_falls_back_to_the_mirror() {
    let body = payload(20_000);
    let server = Server::start(HashMap::from([
        ("/official/f.bin".into(), Behaviour::Missing),
        ("/mirror/f.bin".into(), Behaviour::Serve(body.clone())),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let file = remote(
        "f.bin",
        &body,
        vec![server.url("/official/f.bin"), server.url("/mirror/f.bin")],
    );
    assert_eq!(
        fetch_file(&file, dir.path(), &mut |_| {}).unwrap(),
        server.url("/mirror/f.bin")
    );
    assert_eq!(fs::read(dir.path().join("f.bin")).unwrap(), body);

    let none = remote("g.bin", &body, vec![server.url("/official/g.bin")]);
    let err = fetch_file(&none, dir.path(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, Error::AllSourcesFailed { attempts, .. } if attempts[0].contains("404")),
        "{err}"
    );
}

/// A gzip IDX pair in Fashion-MNIST's names, as a "dataset" served by the test server.
fn idx_file(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut raw = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        raw.extend_from_slice(&d.to_be_bytes());
    }
    raw.extend_from_slice(data);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_dataset_downloads_into_the_data_folder_and_is_found_afterwards() {
    let files = [
        ("train-images-idx3-ubyte.gz", idx_file(&[2, 3, 3], &[5; 18])),
        ("train-labels-idx1-ubyte.gz", idx_file(&[2], &[1, 9])),
        ("t10k-images-idx3-ubyte.gz", idx_file(&[1, 3, 3], &[6; 9])),
        ("t10k-labels-idx1-ubyte.gz", idx_file(&[1], &[4])),
    ];
    let server = Server::start(
        files
            .iter()
            .map(|(n, b)| (format!("/fm/{n}"), Behaviour::Serve(b.clone())))
            .collect(),
    );
    let spec = DatasetSpec {
        name: "fashion-mnist",
        files: files
            .iter()
            .map(|(n, b)| remote(n, b, vec![server.url(&format!("/fm/{n}"))]))
            .collect(),
        archive: false,
        local_dirs: vec![],
    };
    let root = tempfile::tempdir().unwrap();
    assert!(find_existing(&spec, root.path()).unwrap().is_none());
    let (dir, origin) = download(&spec, root.path(), &mut |_| {}).unwrap();
    assert!(matches!(origin, Origin::Downloaded(urls) if urls.len() == 4));
    assert_eq!(fashion_mnist(&dir, Split::Train).unwrap().len(), 2);
    assert_eq!(
        find_existing(&spec, root.path()).unwrap(),
        Some((dir.clone(), Origin::Cache))
    );
    // A damaged file of the completed download is found at the next use, named, with the
    // command that repairs it; downloading again does.
    let damaged = dir.join("t10k-images-idx3-ubyte.gz");
    let good = fs::read(&damaged).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 1;
    fs::write(&damaged, &bad).unwrap();
    let err = find_existing(&spec, root.path()).unwrap_err().to_string();
    assert!(
        err.contains("t10k-images-idx3-ubyte.gz")
            && err.contains("cargo xtask download fashion-mnist"),
        "{err}"
    );
    fs::remove_file(&damaged).unwrap();
    let err = find_existing(&spec, root.path()).unwrap_err().to_string();
    assert!(err.contains("is missing"), "{err}");
    download(&spec, root.path(), &mut |_| {}).unwrap();
    assert_eq!(fs::read(&damaged).unwrap(), good);
    assert!(find_existing(&spec, root.path()).unwrap().is_some());

    // A local copy (as a system package installs it) is found and verified in place.
    let local = tempfile::tempdir().unwrap();
    for (n, b) in &files {
        fs::write(local.path().join(n), b).unwrap();
    }
    let with_local = DatasetSpec {
        local_dirs: vec![local.path().to_path_buf()],
        ..spec.clone()
    };
    let empty_root = tempfile::tempdir().unwrap();
    let (found, origin) = find_existing(&with_local, empty_root.path())
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.as_path(), origin),
        (local.path(), Origin::Local(local.path().to_path_buf()))
    );
    // A damaged local copy is not used.
    fs::write(local.path().join("t10k-labels-idx1-ubyte.gz"), b"damaged").unwrap();
    assert!(
        find_existing(&with_local, empty_root.path())
            .unwrap()
            .is_none()
    );
}

#[test]
fn archives_are_unpacked_after_download() {
    let mut tar_gz = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tar_gz, flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        let data = b"airplane\nautomobile\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(
                &mut header,
                "cifar-10-batches-bin/batches.meta.txt",
                &data[..],
            )
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap();
    }
    let server = Server::start(HashMap::from([(
        "/c.tar.gz".into(),
        Behaviour::Serve(tar_gz.clone()),
    )]));
    let spec = DatasetSpec {
        name: "cifar10",
        files: vec![remote(
            "cifar-10-binary.tar.gz",
            &tar_gz,
            vec![server.url("/c.tar.gz")],
        )],
        archive: true,
        local_dirs: vec![],
    };
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = download(&spec, root.path(), &mut |_| {}).unwrap();
    let names = fs::read_to_string(dir.join("cifar-10-batches-bin/batches.meta.txt")).unwrap();
    assert_eq!(names, "airplane\nautomobile\n");
    assert!(!dir.join(".unpacking").exists());
}
