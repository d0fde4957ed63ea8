//! Keeps the crate's layers one-way: a module may refer to modules of its
//! own layer or of lower ones, never to a higher one (see
//! `broker/ARCHITECTURE.md`). The test reads every source file's `crate::`
//! paths, so a new upward import fails `cargo test` instead of slowly
//! growing a circle again.

/// The top-level modules, lowest first. A module may use the ones listed
/// before it (and itself).
const LAYERS: &[&str] = &[
    "store",
    "cluster",
    "log",
    "security",
    "policy",
    "coordinator",
    "lake",
    "node",
    "kafka",
    "ops",
    "cli",
];

/// Top-level modules named by `crate::…` paths in `code` (comment lines
/// left out), including the members of `use crate::{a::…, b::…}` groups.
fn referenced(code: &str) -> Vec<String> {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .flat_map(|l| [l, "\n"])
        .collect();
    let mut found = Vec::new();
    {
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            // `sluice_crate::x` or `mycrate::x` are not this crate.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::x, b::{y, z}}`: the first segment of each
                // member at depth one.
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
                found.extend(members.iter().map(|m| first_segment(m.trim())));
                continue;
            }
            found.push(first_segment(rest));
        }
    }
    found.retain(|n| !n.is_empty());
    found
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
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

/// `file → crate::module` pairs where the module is in a higher layer.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut bad = Vec::new();
    for (path, code) in files {
        let Some((top, _)) = path.split_once('/') else {
            continue; // lib.rs, main.rs, layers.rs: the crate root sees all.
        };
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
