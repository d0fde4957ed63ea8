//! Keeps the crate's layers one-way: a module may refer to modules of its
//! own layer or of lower ones, never to a higher one, and no files refer
//! to each other in a circle (see `broker/ARCHITECTURE.md`). The tests
//! read every source file's `crate::` paths, so a new upward import or
//! circle fails `cargo test` instead of slowly growing back.

/// The top-level modules, lowest first. A module may use the ones listed
/// before it (and itself).
const LAYERS: &[&str] = &[
    "common",
    "store",
    "cluster",
    "log",
    "security",
    "policy",
    "coordinator",
    "node",
    "lake",
    "kafka",
    "ops",
    "cli",
];

/// The `crate::…` paths in `code` (comment lines left out), as segments;
/// each member of a `use crate::{a::x, b::{y, z}}` group is a path of its
/// own, and a path ends where a `{` group starts.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .flat_map(|l| [l, "\n"])
        .collect();
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `sluice_crate::x` or `mycrate::x` are not this crate.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The members at depth one.
            let mut depth = 0;
            let mut member = String::new();
            let mut members = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => members.push(std::mem::take(&mut member)),
                    c if depth == 0 => member.push(c),
                    _ => {}
                }
            }
            members.push(member);
            found.extend(members.iter().map(|m| segments(m.trim())));
            continue;
        }
        found.push(segments(rest));
    }
    found.retain(|p| !p.is_empty());
    found
}

/// The leading `a::b::c` of `path`, as segments.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    loop {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        rest = &rest[name.len()..];
        out.push(name);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

/// Top-level modules named by `crate::…` paths in `code`.
fn referenced(code: &str) -> Vec<String> {
    crate_paths(code)
        .into_iter()
        .map(|mut p| p.swap_remove(0))
        .collect()
}

/// Every `.rs` file under `dir`, with its path relative to `root`.
fn sources(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read source dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).expect("read source")));
        }
    }
}

/// Files that are the crate root rather than a layer.
const CRATE_ROOT: &[&str] = &["lib.rs", "main.rs", "layers.rs"];

/// `file → crate::module` pairs where the module is in a higher layer.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut bad = Vec::new();
    for (path, code) in files {
        if CRATE_ROOT.contains(&path.as_str()) {
            continue; // The crate root sees all.
        }
        let top = path
            .split_once('/')
            .map_or(path.trim_end_matches(".rs"), |(t, _)| t);
        let Some(own) = rank(top) else {
            bad.push(format!("{path}: folder `{top}` is not in LAYERS"));
            continue;
        };
        for used in referenced(code) {
            match rank(&used) {
                Some(r) if r > own => {
                    bad.push(format!("{path}: `{top}` may not use `crate::{used}`"))
                }
                Some(_) => {}
                None => bad.push(format!("{path}: `crate::{used}` is in no layer")),
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

/// The module path a source file defines: `log/read.rs` → `log::read`,
/// `log/mod.rs` → `log`.
fn module_of(file: &str) -> String {
    let path = file.trim_end_matches(".rs").trim_end_matches("/mod");
    path.replace('/', "::")
}

/// Circles of files that refer to each other through `crate::` paths
/// (each as its files, sorted). A path names the file of its longest
/// prefix that is a module; `super::` paths, a file's use of its own
/// children, are not followed.
fn circles(files: &[(String, String)]) -> Vec<Vec<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    let by_module: BTreeMap<String, usize> = files
        .iter()
        .enumerate()
        .filter(|(_, (f, _))| !CRATE_ROOT.contains(&f.as_str()))
        .map(|(i, (f, _))| (module_of(f), i))
        .collect();
    let edges: Vec<BTreeSet<usize>> = files
        .iter()
        .enumerate()
        .map(|(i, (_, code))| {
            crate_paths(code)
                .iter()
                .filter_map(|p| {
                    (1..=p.len())
                        .rev()
                        .find_map(|k| by_module.get(&p[..k].join("::")).copied())
                })
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    // Files that reach each other form a circle. Few files and edges: a
    // walk from every file is cheap and plainer than Tarjan's algorithm.
    let reaches: Vec<BTreeSet<usize>> = (0..files.len())
        .map(|from| {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<usize> = edges[from].iter().copied().collect();
            while let Some(f) = todo.pop() {
                if seen.insert(f) {
                    todo.extend(edges[f].iter().copied());
                }
            }
            seen
        })
        .collect();
    let mut placed = BTreeSet::new();
    let mut found = Vec::new();
    for i in 0..files.len() {
        if placed.contains(&i) || !reaches[i].contains(&i) {
            continue;
        }
        let members: Vec<usize> = reaches[i]
            .iter()
            .copied()
            .filter(|&j| reaches[j].contains(&i))
            .collect();
        placed.extend(members.iter().copied());
        let mut circle: Vec<String> = members.iter().map(|&j| files[j].0.clone()).collect();
        circle.sort();
        found.push(circle);
    }
    found.sort();
    found
}

#[test]
fn lower_layers_never_use_higher_ones() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    assert!(files.len() > 40, "found only {} source files", files.len());
    let bad = violations(&files);
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

#[test]
fn no_files_refer_to_each_other_in_a_circle() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let found = circles(&files);
    assert!(
        found.is_empty(),
        "files that refer to each other in a circle (move what they share down into one of them, or into a lower module):\n{}",
        found
            .iter()
            .map(|c| c.join(" → "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_circle_is_caught() {
    let file = |p: &str, c: &str| (p.to_string(), c.to_string());
    let files = vec![
        file("kafka/connection.rs", "use crate::kafka::handlers;\n"),
        file(
            "kafka/handlers/mod.rs",
            "use crate::kafka::connection::Ctx;\n",
        ),
        file(
            "kafka/handlers/fetch.rs",
            "use super::x; use crate::log::read;\n",
        ),
        file(
            "log/read.rs",
            "use crate::{store::meta::Loc, log::batch};\n",
        ),
        file("log/batch.rs", ""),
        file("store/meta.rs", ""),
    ];
    assert_eq!(
        circles(&files),
        vec![vec![
            "kafka/connection.rs".to_string(),
            "kafka/handlers/mod.rs".to_string()
        ]]
    );
}

#[test]
fn a_higher_import_is_caught() {
    let files = vec![
        (
            "store/meta.rs".to_string(),
            "use crate::store::objects::SegmentLoc;\nuse crate::{cluster::Cluster, log::batch};\n"
                .to_string(),
        ),
        (
            "log/read.rs".to_string(),
            "// crate::kafka in a comment is prose\nlet e = crate::kafka::handlers::LEADER_EPOCH;\n"
                .to_string(),
        ),
    ];
    assert_eq!(
        violations(&files),
        vec![
            "log/read.rs: `log` may not use `crate::kafka`".to_string(),
            "store/meta.rs: `store` may not use `crate::cluster`".to_string(),
            "store/meta.rs: `store` may not use `crate::log`".to_string(),
        ]
    );
}
