//! The official RocketMQ 5 Python SDK's test scripts (`tests/rocketmq/`), run with the
//! Python `.ci/run` installs it into.

use std::path::PathBuf;
use std::time::Duration;

/// The Python with the SDK: `$GEOROUTER_ROCKETMQ_PYTHON`, or the virtualenv `.ci/run`
/// makes.
fn sdk_python() -> PathBuf {
    super::venv_tool(
        "GEOROUTER_ROCKETMQ_PYTHON",
        "rocketmq-sdk",
        "python",
        "rocketmq-python-client==5.1.2",
    )
}

/// Runs `script` (in tests/rocketmq) with `args`; its last stdout line as JSON.
pub async fn run_sdk(script: &str, args: &[String]) -> serde_json::Value {
    run_sdk_with(script, args, &[]).await
}

/// Runs `script` with `args` and the environment variables `env`.
pub async fn run_sdk_with(
    script: &str,
    args: &[String],
    env: &[(&str, &str)],
) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("rocketmq")
        .join(script);
    let child = tokio::process::Command::new(sdk_python())
        .arg(&path)
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the SDK script finishes within 120 s")
        .expect("the SDK script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout
        .lines()
        .last()
        .expect("the script printed its result");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {last}: {e}"))
}

/// `count` records whose bodies are `"{body} {i}"` and whose property `index` is `i`: what
/// the scripts read back (through the access point, a record is a message).
pub fn indexed(count: i64, body: &str) -> Vec<client::pb::Record> {
    (0..count)
        .map(|i| client::pb::Record {
            body: format!("{body} {i}").into_bytes(),
            properties: [("index".to_string(), i.to_string())].into(),
            ..Default::default()
        })
        .collect()
}
