//! `georouter task ...` against a running `georouter serve` process's console.

mod support;

use std::path::Path;
use std::process::Command;

/// Runs `georouter task ARGS --console ADDR --token TOKEN`; returns (success, stdout+stderr).
fn task(console: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_georouter"))
        .arg("task")
        .args(args)
        .args(["--console", console, "--token", token])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let certs = support::certs(dir, "a,b");
    let text = format!(
        r#"[region]
id = "a"
data_dir = "unused"

[replication]
ca = "{certs}/ca.pem"
cert = "{certs}/a.pem"
key = "{certs}/a.key"

[console]
admin_tokens = ["cli-admin"]
read_tokens = ["cli-read"]

[[regions]]
name = "a"

[[regions]]
name = "b"

# "b" dials; it does not run in this test.
[[links]]
between = ["a", "b"]
dial = "b"
"#,
        certs = certs.display()
    );
    let path = dir.join("a.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn task_commands_drive_the_console_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let node = support::spawn_with("a", &dir.path().join("a"), &config, &[]);
    let console = node.console.clone();

    let (ok, out, err) = task(
        &console,
        "cli-admin",
        &[
            "create",
            "mirror",
            "--sources",
            "a",
            "--targets",
            "b",
            "--topics",
            "orders*",
            "--max-records-per-s",
            "500",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("mirror") && out.contains("running"), "{out}");

    let (ok, _, err) = task(
        &console,
        "cli-admin",
        &[
            "create",
            "bad",
            "--sources",
            "a",
            "--targets",
            "mars",
            "--topics",
            "x",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("400 INVALID_TASK") && err.contains("(field targets)"),
        "{err}"
    );
    let (ok, _, err) = task(&console, "cli-read", &["pause", "mirror"]);
    assert!(!ok && err.contains("403 FORBIDDEN"), "{err}");

    let (ok, out, err) = task(&console, "cli-admin", &["pause", "mirror"]);
    assert!(ok && out.contains("paused"), "{out}{err}");
    let (ok, out, _) = task(&console, "cli-read", &["show", "mirror", "--json"]);
    assert!(ok);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["state"], "paused");
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["spec"]["max_records_per_s"], 500);

    let (ok, out, _) = task(&console, "cli-admin", &["resume", "mirror"]);
    assert!(ok && out.contains("running"), "{out}");
    let (ok, out, _) = task(&console, "cli-read", &["list", "--json"]);
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1);

    // A DR task with group sync, and a bad one: the primary must be one of its regions.
    let dr = |name: &str, primary: &str| {
        let args = [
            "create",
            name,
            "--sources",
            "a",
            "--targets",
            "b",
            "--topics",
            "ledger",
            "--dr-primary",
            primary,
            "--groups",
            "billing*",
        ];
        task(&console, "cli-admin", &args)
    };
    let (ok, out, err) = dr("ledger-dr", "a");
    assert!(ok, "{out}{err}");
    let (_, out, _) = task(&console, "cli-read", &["show", "ledger-dr", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["spec"]["dr"]["primary"], "a");
    assert_eq!(shown["spec"]["dr"]["epoch"], 0);
    assert_eq!(shown["spec"]["groups"], "billing*");
    let (ok, _, err) = dr("bad-dr", "mars");
    assert!(!ok && err.contains("(field dr.primary)"), "{err}");
    let (ok, _, err) = task(&console, "cli-admin", &["delete", "ledger-dr"]);
    assert!(ok, "{err}");

    let (ok, out, _) = task(&console, "cli-admin", &["delete", "mirror"]);
    assert!(ok && out.contains("deleted task mirror"), "{out}");
    let (ok, out, _) = task(&console, "cli-read", &["list"]);
    assert!(ok && out.contains("no tasks"), "{out}");
    let (ok, _, err) = task(&console, "cli-read", &["show", "mirror"]);
    assert!(!ok && err.contains("404 NOT_FOUND"), "{err}");
    drop(node);
}
