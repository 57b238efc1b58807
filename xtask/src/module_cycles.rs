//! No two modules of a crate import each other, directly or around a longer circle: each
//! crate's top-level modules (`src/foo.rs` or `src/foo/mod.rs` with its submodules) form a
//! graph by the `crate::foo` paths their code (tests left out) names, and that graph must
//! have no cycle. A circle means a shared type sits in the wrong file; move it down to the
//! module it belongs to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Fails, naming every circle, unless no crate under `root/crates` (and `root/xtask`) has
/// modules that import each other.
pub fn check(root: &Path) -> Result<()> {
    let mut found = Vec::new();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .context("listing crates/")?
        .filter_map(|entry| Some(entry.ok()?.path().join("src")))
        .filter(|src| src.is_dir())
        .collect();
    sources.push(root.join("xtask/src"));
    sources.sort();
    for src in sources {
        let graph = module_graph(&src)?;
        for circle in circles(&graph) {
            found.push(format!(
                "{}: modules {} import each other",
                src.display(),
                circle.join(", ")
            ));
        }
    }
    if !found.is_empty() {
        bail!(
            "modules import each other (xtask/src/module_cycles.rs):\n- {}",
            found.join("\n- ")
        );
    }
    println!("xtask test: no two modules of a crate import each other");
    Ok(())
}

/// Each top-level module of the crate whose sources are in `src`, and the top-level modules
/// its code names through `crate::`.
fn module_graph(src: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    collect_rs(src, &mut files)?;
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(src).unwrap_or(file);
        let top = top_module(relative);
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        graph.entry(top.clone()).or_default().extend(
            named_modules(&code_of(&text))
                .into_iter()
                .filter(|m| *m != top),
        );
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for targets in graph.values_mut() {
        targets.retain(|t| modules.contains(t));
    }
    Ok(graph)
}

fn collect_rs(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// The top-level module a source file belongs to: `foo.rs`, `foo/mod.rs` and `foo/bar.rs`
/// are all `foo`; `lib.rs` and `main.rs` are the crate root.
fn top_module(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(&first).to_owned()
}

/// The code of `text` without its test-only items (each `#[cfg(test)]` item: a test
/// module may use any module) and without comment lines (a doc link names a module without
/// importing it).
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        code.push_str(&rest[..at]);
        rest = &rest[at..];
        // The item ends at its `;`, or at the brace that closes its first `{`.
        let end = match (rest.find(';'), rest.find('{')) {
            (Some(semi), Some(open)) if semi < open => semi + 1,
            (_, Some(open)) => {
                let mut depth = 0;
                let mut close = rest.len();
                for (i, c) in rest[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                close = open + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                close
            }
            (Some(semi), None) => semi + 1,
            (None, None) => rest.len(),
        };
        rest = &rest[end..];
    }
    code.push_str(rest);
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment after each `crate::` in `code`, including each item of a
/// `crate::{a, b::c}` group.
fn named_modules(code: &str) -> BTreeSet<String> {
    let identifier = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        // `$crate::` and `some_crate::` are other crates' paths.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        names.insert(identifier(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(identifier(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Every set of two or more modules that reach each other (the graph's strongly connected
/// components), each sorted.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reaches = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(module) = stack.pop() {
            for next in graph.get(&module).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reaches(m))).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for (module, reached) in &reach {
        let circle: Vec<String> = reached
            .iter()
            .filter(|other| reach.get(other).is_some_and(|r| r.contains(*module)))
            .cloned()
            .collect();
        if !circle.is_empty() {
            let mut all = circle;
            if !all.contains(module) {
                all.push((*module).clone());
            }
            all.sort();
            found.insert(all);
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_groups_name_their_first_segment() {
        let code = "use crate::config::{A, B};\nuse crate::{Error, search::Metric, views};\n\
                    let x = crate::data::load(); $crate::ignored; other_crate::no;";
        let names: Vec<String> = named_modules(code).into_iter().collect();
        assert_eq!(
            names,
            ["Error", "config", "data", "search", "views"].map(String::from)
        );
        assert_eq!(
            code_of("a\n/// [`crate::c`]\nb\n#[cfg(test)]\nuse crate::b;"),
            "a\nb"
        );
        // Code after a test module still counts; the module's own paths do not.
        let module =
            "x\n#[cfg(test)]\nmod tests {\n fn f() { crate::t::g(); }\n}\nuse crate::after;";
        assert_eq!(
            named_modules(&code_of(module)),
            BTreeSet::from(["after".to_owned()])
        );
        assert_eq!(top_module(Path::new("methods/simclr.rs")), "methods");
        assert_eq!(top_module(Path::new("config.rs")), "config");
    }

    #[test]
    fn a_circle_of_any_length_is_found_and_a_chain_is_not() {
        let graph = |edges: &[(&str, &str)]| {
            let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (a, b) in edges {
                g.entry((*a).into()).or_default().insert((*b).into());
                g.entry((*b).into()).or_default();
            }
            g
        };
        assert!(circles(&graph(&[("a", "b"), ("b", "c")])).is_empty());
        assert_eq!(
            circles(&graph(&[("a", "b"), ("b", "a"), ("c", "a")])),
            [vec!["a".to_owned(), "b".to_owned()]]
        );
        assert_eq!(
            circles(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
            [vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]
        );
    }
}
