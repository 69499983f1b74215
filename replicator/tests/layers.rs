//! The replicator's parts depend on each other one way only: a part may use the parts in
//! the layers below its own (lib.rs lists them), never one beside or above it. This test
//! reads every source file's `crate::` paths and checks them against that order, so a
//! circle of imports between folders cannot come back unnoticed.

use std::collections::BTreeMap;
use std::path::Path;

/// Layer of each top-level module of `replicator/src`, lowest first.
const LAYERS: &[(&str, u32)] = &[
    ("budget", 0),
    ("wire", 1),
    ("identity", 2),
    ("settings", 2),
    ("inbox", 0),
    ("published", 0),
    ("scan_pace", 0),
    ("tasks", 2),
    ("observe", 2),
    ("routing", 3),
    ("crew", 3),
    ("compression", 3),
    ("node", 4),
    ("dr", 5),
    ("groups", 5),
    ("pull", 5),
    ("serve", 5),
    ("link", 6),
    ("replicator", 7),
    ("running", 8),
    ("crew_worker", 8),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a file under `src` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn parts_depend_only_on_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &all {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let own = layer(&module)
            .unwrap_or_else(|| panic!("module {module} has no layer in this test; add it"));
        let text = std::fs::read_to_string(file).expect("readable");
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let used: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if used == module || used.is_empty() {
                continue;
            }
            let Some(theirs) = layer(&used) else {
                continue;
            };
            if theirs >= own {
                wrong
                    .entry(format!("{} ({module}, layer {own})", file.display()))
                    .or_default()
                    .push(format!("{used} (layer {theirs})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "parts using a part not below them: {wrong:#?}"
    );
}
