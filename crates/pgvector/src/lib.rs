//! `contrastive-pgvector`: embedding collections kept in PostgreSQL with the pgvector
//! extension, behind the [`Collection`] trait of `contrastive-retrieval`.
//!
//! A collection is one table (`contrastive_items_NAME`: id, source, label, a unique content
//! hash and a `vector(D)` column under pgvector's HNSW index) and one row of the metadata
//! table `contrastive_collections` (model identity, width, metric, preprocessing and the
//! index's `m` / `ef_construction`). Vectors of another model or width are refused before
//! any write. Inserts are batched in transactions and skip ids and contents already held,
//! so a re-run after a crash adds only what is missing and never a duplicate. A database that goes down makes calls fail with
//! [`Error::Unavailable`]; the next call reconnects.
//!
//! A collection is named by a URL: `postgres://USER[:PASSWORD]@HOST:PORT/DB?collection=NAME`
//! (the password, when there is one, is never shown in messages).
//!
//! ```no_run
//! use contrastive_pgvector::{PgCollection, PgTarget};
//! use contrastive_retrieval::Collection;
//! let target: PgTarget = "postgres://me@127.0.0.1:5432/photos?collection=holiday".parse()?;
//! let mut collection = PgCollection::open(&target)?;
//! println!("{} items in {target}", collection.count()?);
//! # Ok::<(), contrastive_retrieval::Error>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use contrastive_retrieval::{
    Collection, CollectionInfo, Error, Hit, Item, Metric, Result, held_items,
};
use contrastive_tensor::{Kind, Tensor};
use pgvector::Vector;
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};

/// Where a collection lives: the database's connection settings and the collection's name.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    collection: String,
    shown: String,
}

impl FromStr for PgTarget {
    type Err = Error;

    /// Parses `postgres://USER[:PASSWORD]@HOST:PORT/DB?collection=NAME` (other query
    /// parameters are libpq's, such as `connect_timeout`).
    fn from_str(url: &str) -> Result<Self> {
        let invalid = |message: String| Error::Invalid {
            field: "database URL",
            message,
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "expected postgres://USER@HOST:PORT/DB?collection=NAME".into(),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut collection = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("collection", name)) => collection = Some(name.to_owned()),
                _ => rest.push(pair),
            }
        }
        let collection = collection
            .ok_or_else(|| invalid("name the collection: add ?collection=NAME".into()))?;
        check_name(&collection)?;
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        // postgres's own parse error quotes no part of the URL, so no password leaks.
        let mut config: Config = url
            .parse()
            .map_err(|e: postgres::Error| invalid(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let shown = shown(&config, &collection);
        Ok(Self {
            config,
            collection,
            shown,
        })
    }
}

impl fmt::Display for PgTarget {
    /// The URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTarget({})", self.shown)
    }
}

impl PgTarget {
    /// The collection's name.
    pub fn collection(&self) -> &str {
        &self.collection
    }
}

/// `postgres://USER@HOST:PORT/DB?collection=NAME`, the password left out.
fn shown(config: &Config, collection: &str) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}?collection={collection}")
}

/// Collection names become table names: lowercase letters, digits and `_`, a letter first.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: "collection",
            message: format!(
                "{name:?}: use up to 40 lowercase letters, digits and _, starting with a letter"
            ),
        })
    }
}

/// pgvector's HNSW settings for a new collection and for its queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgIndex {
    /// Links per node (pgvector's `m`, default 16).
    pub m: u32,
    /// Candidates while building (pgvector's `ef_construction`, default 64).
    pub ef_construction: u32,
    /// Candidates while searching (`hnsw.ef_search`, default 40; raised to `k`).
    pub ef_search: u32,
}

impl Default for PgIndex {
    /// pgvector's own defaults.
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 64,
            ef_search: 40,
        }
    }
}

/// Rows inserted per transaction.
const BATCH: usize = 500;

const METADATA: &str = "CREATE TABLE IF NOT EXISTS contrastive_collections (
    name text PRIMARY KEY,
    model text NOT NULL,
    dim integer NOT NULL,
    metric text NOT NULL,
    preprocess text NOT NULL,
    m integer NOT NULL,
    ef_construction integer NOT NULL
)";

/// A collection in PostgreSQL + pgvector (see the crate's documentation).
pub struct PgCollection {
    target: PgTarget,
    client: Option<Client>,
    info: CollectionInfo,
    index: PgIndex,
    table: String,
    exact: bool,
}

impl fmt::Debug for PgCollection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgCollection({})", self.target)
    }
}

impl PgCollection {
    /// Opens an existing collection; one the database does not hold is an error.
    pub fn open(target: &PgTarget) -> Result<Self> {
        let mut client = connect(target)?;
        let found = read_metadata(&mut client, target)?.ok_or_else(|| Error::Invalid {
            field: "collection",
            message: format!(
                "{target} does not exist; make it with `contrastive embed RUN --to URL`"
            ),
        })?;
        Self::add_content_column(&mut client, target)?;
        Ok(Self::with(target, client, found))
    }

    /// Opens the collection, or creates it (table, HNSW index, metadata) for `info` and
    /// `index`. An existing collection of another model, width or metric is refused before
    /// anything is written; its own index settings are kept.
    pub fn open_or_create(
        target: &PgTarget,
        info: &CollectionInfo,
        index: PgIndex,
    ) -> Result<Self> {
        let mut client = connect(target)?;
        if let Some(found) = read_metadata(&mut client, target)? {
            found.0.check(&info.model, info.dim)?;
            if found.0.metric != info.metric {
                return Err(Error::Invalid {
                    field: "metric",
                    message: format!(
                        "{target} is searched by {:?}, not {:?}",
                        found.0.metric, info.metric
                    ),
                });
            }
            Self::add_content_column(&mut client, target)?;
            let mut collection = Self::with(target, client, found);
            collection.index.ef_search = index.ef_search;
            return Ok(collection);
        }
        let table = table_name(target);
        let (ops, _) = operator(info.metric);
        let preprocess = serde_json::to_string(&info.preprocess).expect("plain data");
        let sql = format!(
            "CREATE EXTENSION IF NOT EXISTS vector;
             {METADATA};
             CREATE TABLE {table} (
                 id text PRIMARY KEY,
                 source text NOT NULL,
                 label text,
                 content text UNIQUE,
                 embedding vector({dim}) NOT NULL
             );
             CREATE INDEX ON {table} USING hnsw (embedding {ops})
                 WITH (m = {m}, ef_construction = {efc});
             CREATE INDEX ON {table} (label);",
            dim = info.dim,
            m = index.m,
            efc = index.ef_construction,
        );
        let metric = metric_name(info.metric);
        let mut transaction = client.transaction().map_err(|e| failure(e, target))?;
        transaction
            .batch_execute(&sql)
            .map_err(|e| failure(e, target))?;
        transaction
            .execute(
                "INSERT INTO contrastive_collections VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &target.collection,
                    &info.model,
                    &(info.dim as i32),
                    &metric,
                    &preprocess,
                    &(index.m as i32),
                    &(index.ef_construction as i32),
                ],
            )
            .map_err(|e| failure(e, target))?;
        transaction.commit().map_err(|e| failure(e, target))?;
        Ok(Self::with(target, client, (info.clone(), index)))
    }

    /// Removes the collection (its table and metadata row); true when it existed.
    pub fn drop_collection(target: &PgTarget) -> Result<bool> {
        let mut client = connect(target)?;
        if read_metadata(&mut client, target)?.is_none() {
            return Ok(false);
        }
        let sql = format!(
            "DROP TABLE IF EXISTS {}; DELETE FROM contrastive_collections WHERE name = '{}'",
            table_name(target),
            target.collection
        );
        client.batch_execute(&sql).map_err(|e| failure(e, target))?;
        Ok(true)
    }

    fn with(target: &PgTarget, client: Client, (info, index): (CollectionInfo, PgIndex)) -> Self {
        Self {
            table: table_name(target),
            target: target.clone(),
            client: Some(client),
            info,
            index,
            exact: false,
        }
    }

    /// Gives a table made before content hashes its unique `content` column (one look at
    /// the catalogue when it has one).
    fn add_content_column(client: &mut Client, target: &PgTarget) -> Result<()> {
        let table = table_name(target);
        let has: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                 WHERE table_name = $1 AND column_name = 'content')",
                &[&table],
            )
            .map_err(|e| failure(e, target))?
            .get(0);
        if !has {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS content text UNIQUE"
                ))
                .map_err(|e| failure(e, target))?;
        }
        Ok(())
    }

    /// Where the collection lives (printable: no password).
    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    /// The HNSW settings it was built with, and the `ef_search` its queries use.
    pub fn index(&self) -> PgIndex {
        self.index
    }

    /// Makes its searches exact (`true`: PostgreSQL scans the whole table, no index, as
    /// pgvector's documentation describes for exact nearest neighbours) or approximate
    /// through the HNSW index (`false`, the default).
    pub fn set_exact(&mut self, exact: bool) {
        self.exact = exact;
    }

    /// Runs `work` on the connection, reconnecting first when the last one was lost; a
    /// lost connection makes the error [`Error::Unavailable`].
    fn with_client<T>(
        &mut self,
        work: impl FnOnce(&mut Client, &str) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.client = Some(connect(&self.target)?);
        }
        let client = self.client.as_mut().expect("connected above");
        work(client, &self.table).map_err(|e| {
            let error = failure(e, &self.target);
            if matches!(error, Error::Unavailable { .. }) {
                self.client = None;
            }
            error
        })
    }
}

impl Collection for PgCollection {
    fn info(&self) -> &CollectionInfo {
        &self.info
    }

    fn count(&mut self) -> Result<usize> {
        let n: i64 = self.with_client(|c, table| {
            Ok(c.query_one(&format!("SELECT count(*) FROM {table}"), &[])?
                .get(0))
        })?;
        Ok(n as usize)
    }

    fn add(&mut self, items: &[Item], vectors: &Tensor, model: &str) -> Result<usize> {
        let size = vectors.size();
        let dim = if size.len() == 2 { size[1] as usize } else { 0 };
        self.info.check(model, dim)?;
        if size[0] as usize != items.len() {
            return Err(Error::Shape {
                op: "collection",
                message: format!("{} vectors for {} items", size[0], items.len()),
            });
        }
        let rows = rows_of(vectors)?;
        let mut added = 0;
        for (items, rows) in items.chunks(BATCH).zip(rows.chunks(BATCH * dim.max(1))) {
            added += self.with_client(|c, table| {
                let mut transaction = c.transaction()?;
                // A held id or content (the unique columns) makes the row a no-op.
                let insert = transaction.prepare(&format!(
                    "INSERT INTO {table} (id, source, label, content, embedding)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                ))?;
                let mut added = 0;
                for (item, row) in items.iter().zip(rows.chunks(dim)) {
                    let vector = Vector::from(row.to_vec());
                    added += transaction.execute(
                        &insert,
                        &[&item.id, &item.source, &item.label, &item.content, &vector],
                    )?;
                }
                transaction.commit()?;
                Ok(added as usize)
            })?;
        }
        Ok(added)
    }

    fn search(&mut self, query: &Tensor, k: usize, label: Option<&str>) -> Result<Vec<Hit>> {
        if k == 0 {
            return Err(Error::Invalid {
                field: "k",
                message: "must be at least 1".into(),
            });
        }
        let query = rows_of(&query.reshape([1, -1]))?;
        if query.len() != self.info.dim {
            return Err(Error::Shape {
                op: "collection search",
                message: format!(
                    "the query is {}-wide, the collection holds {}-wide vectors",
                    query.len(),
                    self.info.dim
                ),
            });
        }
        if self.count()? == 0 {
            return Err(Error::Shape {
                op: "collection search",
                message: "the collection is empty".into(),
            });
        }
        let (_, op) = operator(self.info.metric);
        let metric = self.info.metric;
        let ef = self.index.ef_search.max(k.min(1000) as u32);
        let vector = Vector::from(query);
        // Filtered queries scan the index further until k rows pass the filter; exact ones
        // do not use it.
        let settings = if self.exact {
            "SET LOCAL enable_indexscan = off".to_owned()
        } else {
            format!("SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = strict_order")
        };
        self.with_client(|c, table| {
            let mut transaction = c.transaction()?;
            transaction.batch_execute(&settings)?;
            let select =
                format!("SELECT id, source, label, content, embedding {op} $1 FROM {table}");
            let rows = match label {
                Some(label) => transaction.query(
                    &format!("{select} WHERE label = $2 ORDER BY embedding {op} $1 LIMIT $3"),
                    &[&vector, &label, &(k as i64)],
                )?,
                None => transaction.query(
                    &format!("{select} ORDER BY embedding {op} $1 LIMIT $2"),
                    &[&vector, &(k as i64)],
                )?,
            };
            transaction.commit()?;
            Ok(rows
                .iter()
                .map(|row| {
                    let d: f64 = row.get(4);
                    Hit {
                        item: item_of(row),
                        score: score(metric, d) as f32,
                    }
                })
                .collect())
        })
    }

    fn get(&mut self, id: &str) -> Result<Option<Item>> {
        self.with_client(|c, table| {
            let row = c.query_opt(
                &format!("SELECT id, source, label, content FROM {table} WHERE id = $1"),
                &[&id],
            )?;
            Ok(row.as_ref().map(item_of))
        })
    }

    fn vector(&mut self, id: &str) -> Result<Option<Tensor>> {
        let found: Option<Vector> = self.with_client(|c, table| {
            let row = c.query_opt(
                &format!("SELECT embedding FROM {table} WHERE id = $1"),
                &[&id],
            )?;
            Ok(row.map(|r| r.get(0)))
        })?;
        Ok(found.map(|v| Tensor::from_slice(v.as_slice())))
    }

    fn held(&mut self, items: &[Item]) -> Result<HashMap<String, String>> {
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let contents: Vec<&str> = items.iter().filter_map(|i| i.content.as_deref()).collect();
        let (by_id, by_content): (HashSet<String>, HashMap<String, String>) =
            self.with_client(|c, table| {
                let rows = c.query(
                    &format!(
                        "SELECT id, content FROM {table}
                         WHERE id = ANY($1) OR content = ANY($2)"
                    ),
                    &[&ids, &contents],
                )?;
                let by_id = rows.iter().map(|r| r.get(0)).collect();
                let by_content = rows
                    .iter()
                    .filter_map(|r| Some((r.get::<_, Option<String>>(1)?, r.get(0))))
                    .collect();
                Ok((by_id, by_content))
            })?;
        Ok(held_items(
            items,
            |id| by_id.contains(id),
            |content| by_content.get(content).cloned(),
        ))
    }

    fn delete(&mut self, ids: &[String]) -> Result<usize> {
        let n = self.with_client(|c, table| {
            c.execute(&format!("DELETE FROM {table} WHERE id = ANY($1)"), &[&ids])
        })?;
        Ok(n as usize)
    }

    fn all(&mut self) -> Result<(Vec<Item>, Tensor)> {
        let dim = self.info.dim as i64;
        let (items, values) = self.with_client(|c, table| {
            let rows = c.query(
                &format!("SELECT id, source, label, content, embedding FROM {table} ORDER BY id"),
                &[],
            )?;
            let mut values = Vec::with_capacity(rows.len() * dim as usize);
            let items = rows
                .iter()
                .map(|row| {
                    let v: Vector = row.get(4);
                    values.extend_from_slice(v.as_slice());
                    item_of(row)
                })
                .collect::<Vec<_>>();
            Ok((items, values))
        })?;
        let n = items.len() as i64;
        Ok((items, Tensor::from_slice(&values).view([n, dim])))
    }
}

fn item_of(row: &postgres::Row) -> Item {
    Item {
        id: row.get(0),
        source: row.get(1),
        label: row.get(2),
        content: row.get(3),
    }
}

/// `[N, D]` vectors as one row-major `f32` list; NaN or infinity is refused.
fn rows_of(vectors: &Tensor) -> Result<Vec<f32>> {
    let values = Vec::<f32>::try_from(&vectors.to_kind(Kind::Float).flatten(0, -1))?;
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        let width = vectors.size().last().copied().unwrap_or(1).max(1);
        return Err(Error::NonFinite {
            what: "collection vectors",
            row: at as i64 / width,
        });
    }
    Ok(values)
}

/// The table that holds a collection's items.
fn table_name(target: &PgTarget) -> String {
    format!("contrastive_items_{}", target.collection)
}

/// pgvector's operator class and distance operator for a metric.
fn operator(metric: Metric) -> (&'static str, &'static str) {
    match metric {
        Metric::Cosine => ("vector_cosine_ops", "<=>"),
        Metric::InnerProduct => ("vector_ip_ops", "<#>"),
        Metric::L2 => ("vector_l2_ops", "<->"),
    }
}

/// Our score from pgvector's distance: cosine similarity is 1 - cosine distance, the inner
/// product is minus `<#>`, L2 stays a distance.
fn score(metric: Metric, distance: f64) -> f64 {
    match metric {
        Metric::Cosine => 1.0 - distance,
        Metric::InnerProduct => -distance,
        Metric::L2 => distance,
    }
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Cosine => "cosine",
        Metric::InnerProduct => "ip",
        Metric::L2 => "l2",
    }
}

fn connect(target: &PgTarget) -> Result<Client> {
    target
        .config
        .connect(NoTls)
        .map_err(|e| Error::Unavailable {
            message: format!("cannot connect to {target}: {}", cause(&e)),
        })
}

/// The metadata row of `target`'s collection, if the database holds it.
fn read_metadata(
    client: &mut Client,
    target: &PgTarget,
) -> Result<Option<(CollectionInfo, PgIndex)>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('contrastive_collections') IS NOT NULL",
            &[],
        )
        .map_err(|e| failure(e, target))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT model, dim, metric, preprocess, m, ef_construction
             FROM contrastive_collections WHERE name = $1",
            &[&target.collection],
        )
        .map_err(|e| failure(e, target))?;
    let Some(row) = row else { return Ok(None) };
    let damaged = |why: String| Error::Backend {
        message: format!("{target}: its metadata is damaged: {why}"),
    };
    let metric: String = row.get(2);
    let preprocess: String = row.get(3);
    let info = CollectionInfo {
        model: row.get(0),
        dim: row.get::<_, i32>(1) as usize,
        metric: metric.parse().map_err(|e: Error| damaged(e.to_string()))?,
        preprocess: serde_json::from_str(&preprocess).map_err(|e| damaged(e.to_string()))?,
    };
    let index = PgIndex {
        m: row.get::<_, i32>(4) as u32,
        ef_construction: row.get::<_, i32>(5) as u32,
        ..PgIndex::default()
    };
    Ok(Some((info, index)))
}

/// A postgres error as ours: a lost or refused connection (or a server shutting down) is
/// [`Error::Unavailable`], anything else [`Error::Backend`].
fn failure(e: postgres::Error, target: &PgTarget) -> Error {
    let shutting_down = e.code().is_some_and(|c| {
        [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(c)
    });
    if e.is_closed() || shutting_down || e.as_db_error().is_none() && is_io(&e) {
        Error::Unavailable {
            message: format!("{target}: {}", cause(&e)),
        }
    } else {
        Error::Backend {
            message: format!("{target}: {}", cause(&e)),
        }
    }
}

fn is_io(e: &postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// The error's message with its causes (a database error's own text, an I/O cause).
fn cause(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_a_collection_and_hides_its_password() {
        let target: PgTarget = "postgres://me:secret@127.0.0.1:5433/photos?collection=trip_1"
            .parse()
            .unwrap();
        assert_eq!(target.collection(), "trip_1");
        let shown = target.to_string();
        assert_eq!(
            shown,
            "postgres://me@127.0.0.1:5433/photos?collection=trip_1"
        );
        assert!(!format!("{target:?}").contains("secret"));
    }

    #[test]
    fn bad_urls_and_names_are_refused_with_the_reason() {
        let err = "postgres://me@127.0.0.1/db"
            .parse::<PgTarget>()
            .unwrap_err();
        assert!(err.to_string().contains("?collection=NAME"), "{err}");
        let err = "postgres://me@h/db?collection=Drop;Table"
            .parse::<PgTarget>()
            .unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
        let err = "mysql://me@h/db?collection=a"
            .parse::<PgTarget>()
            .unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
    }

    #[test]
    fn scores_follow_our_conventions() {
        assert!((score(Metric::Cosine, 0.25) - 0.75).abs() < 1e-12);
        assert_eq!(score(Metric::InnerProduct, -3.0), 3.0);
        assert_eq!(score(Metric::L2, 2.0), 2.0);
    }
}
