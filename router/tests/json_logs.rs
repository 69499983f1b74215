//! `georouter serve` with `GEOROUTER_LOG_FORMAT=json` writes every log line as one JSON
//! object with its time, level, target and message, ready for a log pipeline.

mod support;

use std::path::Path;

#[test]
fn a_node_logs_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("eu");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/region.toml");
    let json = [("GEOROUTER_LOG_FORMAT", "json".to_string())];
    let node = support::spawn_with("eu", &data, &example, &json);
    // "node ready" is logged just after the runtime file the spawn waits for.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !node.logs().contains("node ready") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let logs = node.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the node logged at start");
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(entry.get(field).is_some(), "{field} missing: {line}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"node ready\"")),
        "{logs}"
    );
}
