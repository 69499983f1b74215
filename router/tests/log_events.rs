//! Every warning and error the code logs carries a stable `event` name, and docs/logs.md
//! lists exactly the event names the code uses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(file:line, event name or None)` of every `tracing::{warn,error,info}!` in `text`;
/// info lines only when they name an event.
fn log_calls(file: &str, text: &str) -> Vec<(String, &'static str, Option<String>)> {
    let mut out = Vec::new();
    for level in ["warn", "error", "info"] {
        let needle = format!("tracing::{level}!(");
        for (at, _) in text.match_indices(&needle) {
            let rest = text[at + needle.len()..].trim_start();
            let event = rest
                .strip_prefix("event = \"")
                .and_then(|r| r.split_once('"'))
                .map(|(name, _)| name.to_string());
            if level == "info" && event.is_none() {
                continue;
            }
            let line = text[..at].matches('\n').count() + 1;
            let level = match level {
                "warn" => "warn",
                "error" => "error",
                _ => "info",
            };
            out.push((format!("{file}:{line}"), level, event));
        }
    }
    out
}

#[test]
fn every_warning_and_error_has_a_documented_event_name() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&root).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            sources(&src, &mut files);
        }
    }
    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        for (at, _, event) in log_calls(&name, &text) {
            match event {
                Some(e) => {
                    assert!(
                        e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                        "{at}: event {e:?} is not snake_case"
                    );
                    used.insert(e);
                }
                None => missing.push(at),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "log lines without an event name: {missing:?}"
    );
    assert!(
        used.len() > 50,
        "the scan found the log lines ({})",
        used.len()
    );
    let doc = std::fs::read_to_string(root.join("docs/logs.md")).unwrap();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect();
    let undocumented: Vec<_> = used.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&used).collect();
    assert!(
        undocumented.is_empty(),
        "events missing from docs/logs.md: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/logs.md lists events no code logs: {stale:?}"
    );
}

#[test]
fn the_scan_sees_a_missing_event() {
    let calls = log_calls(
        "x.rs",
        "tracing::warn!(peer = %p, \"lost\");\ntracing::error!(event = \"bad_thing\", \"bad\");\ntracing::info!(\"fine\");",
    );
    assert_eq!(
        calls,
        [
            ("x.rs:1".to_string(), "warn", None),
            ("x.rs:2".to_string(), "error", Some("bad_thing".to_string())),
        ]
    );
}
