//! The console API against its OpenAPI document, by schemathesis (from PyPI; `.ci/run`
//! installs it into `~/.cache/georouter/schemathesis`, or set `GEOROUTER_SCHEMATHESIS`):
//! requests generated from the document, valid and invalid, against a region of a
//! two-region deployment with an admin token, every check on: documented status codes and
//! content types, no server error, invalid requests refused and valid ones accepted.
//! `tests/contract/hooks.py` teaches it the rules a JSON schema cannot say (a task's DR
//! primary is one of its regions, a SQL filter parses, ...).

mod support;

use std::path::PathBuf;

use support::*;

fn schemathesis() -> PathBuf {
    venv_tool(
        "GEOROUTER_SCHEMATHESIS",
        "schemathesis",
        "schemathesis",
        "schemathesis==4.32.5",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_mismatch_between_the_api_and_its_document() {
    let deployment = Deployment::new(&["eu", "us"]);
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &[], |config| {
            config.console.admin_tokens = vec!["contract-admin".into()];
        })
        .await;
    nodes[0]
        .client
        .create_topic("orders", 1, None)
        .await
        .unwrap();
    let console = nodes[0].node.bound.console;
    let binary = schemathesis();
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contract");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .arg("--config-file")
            .arg(hooks.join("schemathesis.toml"))
            .args([
                "run",
                &format!("http://{console}/api/v1/openapi.json"),
                "--header",
                "Authorization: Bearer contract-admin",
                "--checks",
                "all",
                "--max-examples",
                "30",
                "--seed",
                "1",
                "--workers",
                "1",
            ])
            .env("NO_COLOR", "1")
            .env("GEOROUTER_CONTRACT_BASE", format!("http://{console}"))
            .env("GEOROUTER_CONTRACT_TOKEN", "contract-admin")
            .env("GEOROUTER_CONTRACT_REGIONS", "eu,us")
            .env("PYTHONPATH", &hooks)
            .env("SCHEMATHESIS_HOOKS", "hooks")
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found mismatches:\n{report}"
    );
    // It ran, over every operation selected (every one documented but the document
    // itself), and generated a real number of cases.
    let documented = console_api::api::openapi::OPERATIONS.len() - 1;
    assert!(
        report.contains(&format!("Selected: {documented}/{documented}"))
            && report.contains(&format!("Tested: {documented}")),
        "not every one of the {documented} operations was tested:\n{report}"
    );
    let generated: u64 = report
        .split_whitespace()
        .zip(report.split_whitespace().skip(1))
        .find(|(_, next)| *next == "generated,")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    assert!(generated >= 500, "only {generated} cases:\n{report}");
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
