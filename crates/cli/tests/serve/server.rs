//! Helpers of the service tests: a trained run, and the real binary serving on a free port
//! of 127.0.0.1 with a real HTTP client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// Trains a tiny model on generated shapes in `root` (one epoch) and embeds its images
/// into RUN/store.safetensors; returns the run folder.
pub(crate) fn trained_run(root: &Path) -> PathBuf {
    let data = root.join("data");
    contrastive_e2e::write_shapes(&data, 16, 24, 3);
    let run = root.join("run");
    let config = root.join("config.toml");
    let text = format!(
        "[run]\nout = {:?}\nseed = 5\nthreads = 1\nepochs = 1\n\
         [data]\ndataset = \"folder\"\ndir = {:?}\nbatch_size = 32\naugment = \"simclr\"\n\
         [model]\nhead_hidden = 16\nhead_out = 8\n[eval]\nevery_epochs = 0\nfinal = false\n\
         [method]\nname = \"simclr\"\n[optimizer]\nname = \"sgd\"\nlr = 0.05\n",
        run.display().to_string(),
        data.display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let bin = env!("CARGO_BIN_EXE_contrastive");
    let out = Command::new(bin)
        .args(["train", "--quiet", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin).arg("embed").arg(&run).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run
}

/// A running `contrastive serve`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Server {
    pub(crate) fn start(args: &[&str], token: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_contrastive"));
        command
            .arg("serve")
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = token {
            command.env("CONTRASTIVE_TOKEN", token);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        // The rest of its output is drained, so that a late line never meets a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .map(|addr| format!("http://{addr}"));
        let Some(base) = address else {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "no address in {line:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self {
            child,
            base,
            agent,
            token: token.map(str::to_owned),
        }
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token.as_deref().unwrap_or(""))
    }

    /// GET: the status and the body.
    pub(crate) fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_vec().unwrap())
    }

    /// POST a body of this content type: the status and the body as JSON.
    pub(crate) fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let mut response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .header("Content-Type", content_type)
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) fn json(&self, path: &str, body: Value) -> (u16, Value) {
        self.post(path, "application/json", body.to_string().as_bytes())
    }

    /// POST a multipart form of these files (`image` fields) and text fields.
    pub(crate) fn form(
        &self,
        path: &str,
        files: &[&[u8]],
        fields: &[(&str, &str)],
    ) -> (u16, Value) {
        let boundary = "contrastive-test-boundary";
        let mut body = Vec::new();
        for (i, file) in files.iter().enumerate() {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; \
                     filename=\"up{i}.png\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(file);
            body.extend_from_slice(b"\r\n");
        }
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n\
                     {value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.post(
            path,
            &format!("multipart/form-data; boundary={boundary}"),
            &body,
        )
    }

    pub(crate) fn health(&self) -> (u16, Value) {
        let (status, body) = self.get("/api/health");
        (status, serde_json::from_slice(&body).unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn hit_ids(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {body}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn error_of(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_owned()
}
