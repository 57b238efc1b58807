//! `contrastive serve`: similar-image search as a service (a JSON API and a web page) over
//! a local store, its HNSW index or a PostgreSQL collection, the model loaded once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use contrastive_pgvector::{PgCollection, PgTarget};
use contrastive_retrieval::{Collection, LocalCollection};
use contrastive_serve::{Limits, Service};

/// The environment variable that holds the token when `--token` is not given.
const TOKEN_VAR: &str = "CONTRASTIVE_TOKEN";

/// Arguments of `contrastive serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The run directory (its model, its config for dataset images).
    #[arg(long)]
    run: PathBuf,
    /// Serve this embedding store (default: RUN/store.safetensors).
    #[arg(long, conflicts_with = "db")]
    store: Option<PathBuf>,
    /// Search through this HNSW index of the store (made by `contrastive index`).
    #[arg(long, conflicts_with = "db")]
    index: Option<PathBuf>,
    /// Serve a PostgreSQL collection: postgres://USER@HOST:PORT/DB?collection=NAME.
    #[arg(long)]
    db: Option<String>,
    /// Address to listen on; anything but loopback needs a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Every API call must send `Authorization: Bearer TOKEN` (default: $CONTRASTIVE_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// Where uploaded images are kept (default: RUN/uploads).
    #[arg(long)]
    uploads: Option<PathBuf>,
    /// Largest request, in MiB.
    #[arg(long, default_value_t = 16)]
    max_upload_mib: usize,
}

/// Runs `contrastive serve` until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var(TOKEN_VAR).ok())
        .filter(|t| !t.is_empty());
    if token.is_none() && !args.addr.ip().is_loopback() {
        bail!(
            "--addr {} is reachable from other machines: give --token (or set {TOKEN_VAR})",
            args.addr
        );
    }
    let (config, model) = crate::eval::open_run(&args.run, &[], None)?;
    let (collection, what): (Box<dyn Collection>, String) = match &args.db {
        Some(url) => {
            let target: PgTarget = url.parse()?;
            let collection = PgCollection::open(&target)?;
            (Box::new(collection), target.to_string())
        }
        None => {
            let store = args
                .store
                .clone()
                .unwrap_or_else(|| args.run.join("store.safetensors"));
            let collection =
                LocalCollection::open(&store, args.index.as_deref()).with_context(|| {
                    format!(
                        "opening {} (make it with `contrastive embed`)",
                        store.display()
                    )
                })?;
            let what = match &args.index {
                Some(index) => format!("{} through {}", store.display(), index.display()),
                None => store.display().to_string(),
            };
            (Box::new(collection), what)
        }
    };
    let limits = Limits {
        max_body: args.max_upload_mib << 20,
        ..Limits::default()
    };
    let uploads = args.uploads.unwrap_or_else(|| args.run.join("uploads"));
    let service = Service::open(
        collection,
        &model,
        Some(config),
        uploads,
        limits,
        token.clone(),
    )
    .context("starting the service")?;
    let service = Arc::new(service);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr()?;
        println!(
            "serving {what} on http://{addr}/{}",
            if token.is_some() {
                " (token required)"
            } else {
                ""
            }
        );
        contrastive_serve::serve(listener, service, shutdown_signal())
            .await
            .context("serving")?;
        println!("stopped");
        anyhow::Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
