//! The crate graph's rules, checked on what the manifests declare (`cargo metadata
//! --no-deps`): only `contrastive-tensor` names tch or torch-sys; every dependency between
//! workspace crates points to a lower layer of [`LAYERS`]; and the crates of
//! [`WITHOUT_LIBTORCH`] cannot reach libtorch through any dependency their features turn
//! on. [`LAYERS`] is the one place the allowed edges are written (docs/architecture.md
//! lists them). Dev-dependencies are left out of the layers (a test may use any crate) but
//! not of the tch rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The workspace's crates by layer, lowest first: a crate may depend on crates of lower
/// layers only. A new crate goes into one of them.
pub const LAYERS: &[&[&str]] = &[
    &[
        "contrastive-tensor",
        "contrastive-data",
        "contrastive-draw",
        "contrastive-samplers",
        "contrastive-pgserver",
    ],
    &[
        "contrastive-augment",
        "contrastive-losses",
        "contrastive-models",
        "contrastive-retrieval",
    ],
    &["contrastive-trainer", "contrastive-pgvector"],
    &["contrastive-serve", "contrastive-bench", "contrastive-e2e"],
    &["contrastive-cli", "xtask"],
];

/// Crates that must build without libtorch, with their default features.
pub const WITHOUT_LIBTORCH: &[&str] = &[
    "contrastive-data",
    "contrastive-draw",
    "contrastive-samplers",
    "contrastive-pgserver",
    "xtask",
];

/// The one crate on libtorch.
const TENSOR: &str = "contrastive-tensor";
/// The crates that are libtorch.
const LIBTORCH: [&str; 2] = ["tch", "torch-sys"];

/// One declared dependency.
#[derive(Debug, Clone)]
struct Dependency {
    name: String,
    /// `normal`, `dev` or `build`.
    kind: String,
    optional: bool,
    default_features: bool,
    features: Vec<String>,
}

/// One workspace crate as its manifest declares it.
#[derive(Debug, Clone)]
struct Package {
    dependencies: Vec<Dependency>,
    /// Feature name -> what it turns on.
    features: BTreeMap<String, Vec<String>>,
}

/// Fails, naming every broken rule, unless the workspace at `root` keeps them.
pub fn check(root: &Path) -> Result<()> {
    let found = violations(&metadata(root)?);
    if !found.is_empty() {
        bail!(
            "the crate graph breaks its rules (xtask/src/layering.rs, docs/architecture.md):\n- {}",
            found.join("\n- ")
        );
    }
    println!("xtask test: the crate graph keeps its layers");
    Ok(())
}

/// The workspace's metadata as its manifests declare it.
fn metadata(root: &Path) -> Result<Value> {
    let output = Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Every broken rule of the workspace that `metadata` (the JSON of `cargo metadata
/// --no-deps --format-version 1`) describes, one sentence each; empty when all hold.
pub fn violations(metadata: &Value) -> Vec<String> {
    let packages = packages(metadata);
    let layer = |name: &str| LAYERS.iter().position(|l| l.contains(&name));
    let mut found = Vec::new();
    for (name, package) in &packages {
        let Some(own) = layer(name) else {
            found.push(format!(
                "{name} is in no layer of xtask/src/layering.rs: place it"
            ));
            continue;
        };
        for dep in &package.dependencies {
            if LIBTORCH.contains(&dep.name.as_str()) && name != TENSOR {
                found.push(format!(
                    "{name} depends on {} ({}): only {TENSOR} may name libtorch",
                    dep.name, dep.kind
                ));
            }
            if dep.kind == "dev" {
                continue;
            }
            if let Some(theirs) = layer(&dep.name)
                && theirs >= own
            {
                found.push(format!(
                    "{name} (layer {own}) depends on {} (layer {theirs}): dependencies point \
                     to lower layers only",
                    dep.name
                ));
            }
        }
    }
    for &root in WITHOUT_LIBTORCH {
        if let Some(path) = path_to_libtorch(&packages, root) {
            found.push(format!(
                "{root} must build without libtorch, but reaches it: {}",
                path.join(" -> ")
            ));
        }
    }
    found
}

/// The workspace crates of `metadata` by name.
fn packages(metadata: &Value) -> BTreeMap<String, Package> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let members: BTreeSet<String> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| members.contains(&text(&p["id"])))
        .map(|p| {
            let dependencies = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| Dependency {
                    name: text(&d["name"]),
                    kind: d["kind"].as_str().unwrap_or("normal").to_owned(),
                    optional: d["optional"].as_bool().unwrap_or(false),
                    default_features: d["uses_default_features"].as_bool().unwrap_or(true),
                    features: d["features"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect(),
                })
                .collect();
            let features = p["features"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let on = v.as_array().into_iter().flatten().map(text).collect();
                    (k.clone(), on)
                })
                .collect();
            (
                text(&p["name"]),
                Package {
                    dependencies,
                    features,
                },
            )
        })
        .collect()
}

/// The chain of crates by which `root`, built with its default features, reaches
/// libtorch (its normal and build dependencies, optional ones where a feature turns them
/// on); `None` when it does not.
fn path_to_libtorch(packages: &BTreeMap<String, Package>, root: &str) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![(
        root.to_owned(),
        vec!["default".to_owned()],
        vec![root.to_owned()],
    )];
    while let Some((name, requested, path)) = stack.pop() {
        if name == TENSOR || LIBTORCH.contains(&name.as_str()) {
            return Some(path);
        }
        let Some(package) = packages.get(&name) else {
            continue;
        };
        if !seen.insert((name.clone(), requested.clone())) {
            continue;
        }
        let enabled = enabled_features(package, &requested);
        for dep in &package.dependencies {
            let on = !dep.optional
                || enabled
                    .iter()
                    .any(|f| *f == dep.name || *f == format!("dep:{}", dep.name));
            if dep.kind == "dev" || !on {
                continue;
            }
            let mut features = dep.features.clone();
            if dep.default_features {
                features.push("default".into());
            }
            // Features of the dependency that this crate's features name (`dep/feature`).
            features.extend(enabled.iter().filter_map(|f| {
                let (target, feature) = f.split_once('/')?;
                (target.trim_end_matches('?') == dep.name).then(|| feature.to_owned())
            }));
            let mut next = path.clone();
            next.push(dep.name.clone());
            stack.push((dep.name.clone(), features, next));
        }
    }
    None
}

/// What `requested` features of `package` turn on, themselves included, transitively.
fn enabled_features(package: &Package, requested: &[String]) -> BTreeSet<String> {
    let mut enabled = BTreeSet::new();
    let mut todo: Vec<String> = requested.to_vec();
    while let Some(feature) = todo.pop() {
        if enabled.insert(feature.clone())
            && let Some(more) = package.features.get(&feature)
        {
            todo.extend(more.iter().cloned());
        }
    }
    enabled
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace's own metadata, from cargo.
    fn workspace() -> Value {
        metadata(&crate::workspace_root()).unwrap()
    }

    /// `metadata` with `dependency` added to the crate `name`.
    fn with_dependency(mut metadata: Value, name: &str, dependency: Value) -> Value {
        let package = metadata["packages"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|p| p["name"] == name)
            .unwrap();
        package["dependencies"]
            .as_array_mut()
            .unwrap()
            .push(dependency);
        metadata
    }

    fn dependency(name: &str, kind: Option<&str>, default_features: bool) -> Value {
        serde_json::json!({
            "name": name, "kind": kind, "optional": false,
            "uses_default_features": default_features, "features": []
        })
    }

    #[test]
    fn the_workspace_keeps_its_layers() {
        let found = violations(&workspace());
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn an_upward_edge_libtorch_outside_tensor_and_a_tensor_path_from_xtask_are_caught() {
        let metadata = workspace();
        let upward = with_dependency(
            metadata.clone(),
            "contrastive-losses",
            dependency("contrastive-trainer", None, true),
        );
        let found = violations(&upward);
        assert!(
            found.iter().any(|v| v
                .contains("contrastive-losses (layer 1) depends on contrastive-trainer (layer 2)")),
            "{found:#?}"
        );
        let tch = with_dependency(
            metadata.clone(),
            "contrastive-retrieval",
            dependency("tch", None, true),
        );
        assert!(
            violations(&tch)
                .iter()
                .any(|v| v.contains("contrastive-retrieval depends on tch")),
        );
        // A test may use any crate, but never libtorch outside tensor.
        let dev = with_dependency(
            metadata.clone(),
            "contrastive-data",
            dependency("contrastive-trainer", Some("dev"), true),
        );
        assert!(violations(&dev).is_empty());
        // augment with its default features turns its tensor dependency on.
        let reach = with_dependency(
            metadata,
            "contrastive-pgserver",
            dependency("contrastive-augment", None, true),
        );
        let found = violations(&reach);
        assert!(
            found.iter().any(|v| v.contains(
                "contrastive-pgserver must build without libtorch, but reaches it: \
                 contrastive-pgserver -> contrastive-augment -> contrastive-tensor"
            )),
            "{found:#?}"
        );
    }
}
