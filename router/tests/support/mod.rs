//! Runs `georouter serve` as a child process on port 0 and waits for its runtime file.

#![allow(dead_code)]

pub mod two_regions;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ServeProcess {
    pub child: Child,
    pub grpc: String,
    pub replication: String,
    pub console: String,
    pub rocketmq: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// Writes a deployment CA and certificates for `regions` ("a,b") into `dir/certs` with
/// `georouter certs`; returns that directory.
pub fn certs(dir: &Path, regions: &str) -> PathBuf {
    let certs = dir.join("certs");
    let status = Command::new(env!("CARGO_BIN_EXE_georouter"))
        .args(["certs", "--regions", regions, "--out"])
        .arg(&certs)
        .status()
        .unwrap();
    assert!(status.success(), "georouter certs");
    certs
}

/// Starts a node of region `region` on `data_dir` with every listener on port 0, using the
/// committed example config and environment overrides, and waits until it is ready.
pub fn spawn(region: &str, data_dir: &Path) -> ServeProcess {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/region.toml");
    spawn_with(region, data_dir, &example, &[])
}

/// Like [`spawn`] with another config file and extra `GEOROUTER__*` overrides (applied
/// after the port-0 defaults, so they can pin an address).
pub fn spawn_with(
    region: &str,
    data_dir: &Path,
    config: &Path,
    overrides: &[(&str, String)],
) -> ServeProcess {
    let log = data_dir.with_extension("log");
    let _ = std::fs::remove_file(scenarios::launch::runtime_file(data_dir));
    let mut command = Command::new(env!("CARGO_BIN_EXE_georouter"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("GEOROUTER__REGION__ID", region)
        .env("GEOROUTER__REGION__DATA_DIR", data_dir)
        .env("GEOROUTER__LISTEN__GRPC", "127.0.0.1:0")
        .env("GEOROUTER__LISTEN__REPLICATION", "127.0.0.1:0")
        .env("GEOROUTER__LISTEN__CONSOLE", "127.0.0.1:0")
        .env("GEOROUTER__LISTEN__ROCKETMQ", "127.0.0.1:0")
        // Loopback test nodes let anonymous clients in unless a test says otherwise.
        .env("GEOROUTER__AUTH__MODE", "open");
    for (key, value) in overrides {
        command.env(key, value);
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .expect("spawn georouter serve");
    let mut process = ServeProcess {
        child,
        grpc: String::new(),
        replication: String::new(),
        console: String::new(),
        rocketmq: String::new(),
        data_dir: data_dir.to_path_buf(),
        log,
    };
    let bound = process.wait_ready();
    process.grpc = bound.grpc.to_string();
    process.replication = bound.replication.to_string();
    process.console = bound.console.to_string();
    process.rocketmq = bound.rocketmq.to_string();
    process
}

impl ServeProcess {
    /// Waits for the runtime file (written once the node serves) and returns the addresses
    /// it bound.
    fn wait_ready(&mut self) -> scenarios::launch::Bound {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(bound) = scenarios::launch::read_bound(&self.data_dir).unwrap() {
                return bound;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "georouter serve exited with {status} before it was ready:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "node not ready within 60 s:\n{}",
                self.logs()
            );
            // Polling a file that the node writes once; not a wait for time to pass.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
