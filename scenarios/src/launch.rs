//! How a scenario starts region nodes. The scenario code only writes each region's config
//! file and waits for its runtime file (`<data_dir>/runtime/effective.toml`, written once
//! the node serves); a [`Launcher`] decides whether the node runs in this process or as a
//! `georouter serve` child. The router crate provides both launchers (it owns the node).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Starts region nodes from config files.
pub trait Launcher: Send + Sync {
    /// `in-process` or `processes`, for reports.
    fn mode(&self) -> &'static str;

    /// Starts the node described by `config`. It may return before the node serves; the
    /// caller waits for the runtime file.
    fn launch<'a>(&'a self, config: &'a Path) -> BoxFuture<'a, Result<Box<dyn RegionProcess>>>;
}

/// A started node.
pub trait RegionProcess: Send {
    /// Ends the node abruptly, without its shutdown sequence: SIGKILL for a process; for an
    /// in-process node its runtime is dropped with its tasks mid-flight.
    fn kill(&mut self) -> BoxFuture<'_, Result<()>>;

    /// Shuts the node down in order and waits for it.
    fn stop(self: Box<Self>) -> BoxFuture<'static, Result<()>>;

    /// Why the node has ended on its own, if it has.
    fn exited(&mut self) -> Option<String>;

    /// The node's process id, when it is a process of its own.
    fn pid(&self) -> Option<u32> {
        None
    }
}

/// The addresses a node bound, read from its runtime file.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub replication: SocketAddr,
    pub console: SocketAddr,
    /// The RocketMQ 5 access point.
    pub rocketmq: SocketAddr,
}

/// Where a node with `data_dir` writes its runtime file.
pub fn runtime_file(data_dir: &Path) -> PathBuf {
    data_dir.join("runtime").join("effective.toml")
}

/// Waits until the node writes its runtime file (checking that it is still running), and
/// returns the addresses it bound.
pub async fn wait_ready(
    process: &mut dyn RegionProcess,
    data_dir: &Path,
    within: Duration,
) -> Result<Bound> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(bound) = read_bound(data_dir)? {
            return Ok(bound);
        }
        if let Some(why) = process.exited() {
            bail!("the node ended before it was ready: {why}");
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the node did not write {} within {within:?}",
                runtime_file(data_dir).display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The addresses a node with `data_dir` bound, from its runtime file; `None` while it has
/// not written one (it is not ready yet).
pub fn read_bound(data_dir: &Path) -> Result<Option<Bound>> {
    let file = runtime_file(data_dir);
    match std::fs::read_to_string(&file) {
        Ok(text) => parse_bound(&text)
            .with_context(|| format!("{}", file.display()))
            .map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

fn parse_bound(text: &str) -> Result<Bound> {
    #[derive(serde::Deserialize)]
    struct Runtime {
        listen: Listen,
    }
    #[derive(serde::Deserialize)]
    struct Listen {
        grpc: SocketAddr,
        replication: SocketAddr,
        console: SocketAddr,
        rocketmq: SocketAddr,
    }
    let runtime: Runtime = toml::from_str(text).context("parsing the [listen] addresses")?;
    Ok(Bound {
        grpc: runtime.listen.grpc,
        replication: runtime.listen.replication,
        rocketmq: runtime.listen.rocketmq,
        console: runtime.listen.console,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bound_addresses_and_ignores_the_rest() {
        let text = "[region]\nid = \"eu\"\n[listen]\ngrpc = \"127.0.0.1:1\"\nreplication = \"127.0.0.1:2\"\nconsole = \"127.0.0.1:3\"\nrocketmq = \"127.0.0.1:4\"\n";
        let bound = parse_bound(text).unwrap();
        assert_eq!(bound.grpc.port(), 1);
        assert_eq!(bound.replication.port(), 2);
        assert_eq!(bound.console.port(), 3);
        assert_eq!(bound.rocketmq.port(), 4);
        assert!(parse_bound("[listen]\ngrpc = \"x\"").is_err());
    }
}
