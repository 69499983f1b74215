//! The registry of stable error codes (the `ALL` of each surface's code enum) and the
//! table users read, docs/errors.md, say the same: every code documented, under its
//! surface, and nothing documented that does not exist.

use std::collections::BTreeSet;

use console_api::api::error::ConsoleCode;
use proto::error_code::ErrorCode;
use replicator::wire::LinkCode;

/// `(code, surface)` rows of the errors table in docs/errors.md.
fn documented() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/errors.md");
    let text = std::fs::read_to_string(path).expect("docs/errors.md");
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() >= 2 && cells[0] == "code" && cells[1] == "surface" {
            in_table = true;
            continue;
        }
        if !in_table || cells[0].starts_with("---") {
            continue;
        }
        if !line.trim_start().starts_with('|') {
            in_table = false;
            continue;
        }
        let code = cells[0].trim_matches('`');
        assert!(
            cells[0].starts_with('`'),
            "docs/errors.md: a code not in backticks: {line}"
        );
        rows.push((code.to_string(), cells[1].to_string()));
    }
    assert!(!rows.is_empty(), "docs/errors.md has no errors table");
    rows
}

fn documented_under(surfaces: &[&str]) -> BTreeSet<String> {
    documented()
        .into_iter()
        .filter(|(_, surface)| surfaces.contains(&surface.as_str()))
        .map(|(code, _)| code)
        .collect()
}

fn registered(codes: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
    codes.into_iter().map(str::to_string).collect()
}

#[test]
fn every_client_api_code_is_documented_and_nothing_else() {
    assert_eq!(
        documented_under(&["grpc", "replication", "cli"]),
        registered(ErrorCode::ALL.iter().map(|c| c.as_str())),
    );
}

#[test]
fn every_link_code_is_documented_and_nothing_else() {
    assert_eq!(
        documented_under(&["link"]),
        registered(LinkCode::ALL.iter().map(|c| c.as_str())),
    );
}

#[test]
fn every_console_code_is_documented_and_nothing_else() {
    assert_eq!(
        documented_under(&["console"]),
        registered(ConsoleCode::ALL.iter().map(|c| c.as_str())),
    );
}

#[test]
fn a_code_is_documented_once() {
    let rows = documented();
    let unique: BTreeSet<&String> = rows.iter().map(|(code, _)| code).collect();
    assert_eq!(
        unique.len(),
        rows.len(),
        "a code appears twice in docs/errors.md"
    );
}
