//! Runs `georouter serve` as a child process on port 0 and waits for its runtime file.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ServeProcess {
    pub child: Child,
    pub grpc: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// Starts a node of region `region` on `data_dir` with every listener on port 0, using the
/// committed example config and environment overrides, and waits until it is ready.
pub fn spawn(region: &str, data_dir: &Path) -> ServeProcess {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/region.toml");
    let log = data_dir.with_extension("log");
    let runtime = data_dir.join("runtime/effective.toml");
    let _ = std::fs::remove_file(&runtime);
    let child = Command::new(env!("CARGO_BIN_EXE_georouter"))
        .args(["serve", "--config"])
        .arg(&example)
        .env("GEOROUTER__REGION__ID", region)
        .env("GEOROUTER__REGION__DATA_DIR", data_dir)
        .env("GEOROUTER__LISTEN__GRPC", "127.0.0.1:0")
        .env("GEOROUTER__LISTEN__REPLICATION", "127.0.0.1:0")
        .env("GEOROUTER__LISTEN__CONSOLE", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn georouter serve");
    let mut process = ServeProcess {
        child,
        grpc: String::new(),
        data_dir: data_dir.to_path_buf(),
        log,
    };
    process.grpc = process.wait_ready(&runtime);
    process
}

impl ServeProcess {
    /// Waits for the runtime file (written once the node serves) and returns the gRPC address.
    fn wait_ready(&mut self, runtime: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(runtime) {
                let value: toml::Table = toml::from_str(&text).expect("runtime file is TOML");
                return value["listen"]["grpc"]
                    .as_str()
                    .expect("listen.grpc")
                    .to_string();
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
