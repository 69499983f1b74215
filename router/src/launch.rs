//! The two ways scenarios start region nodes (see `scenarios::launch`):
//! - [`InProcess`]: each node on its own Tokio runtime in this process, so that killing it
//!   can drop the runtime with every task mid-flight, as a crash would;
//! - [`Processes`]: each node a `georouter serve --config FILE` child, killed with SIGKILL
//!   and stopped with SIGTERM; its log goes to `FILE` with the extension `.log`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};
use scenarios::launch::{BoxFuture, Launcher, RegionProcess};

use crate::config::NodeConfig;
use crate::node::Node;

/// Worker threads of each in-process node's runtime.
const NODE_THREADS: usize = 2;

pub struct InProcess;

impl Launcher for InProcess {
    fn mode(&self) -> &'static str {
        "in-process"
    }

    fn launch<'a>(&'a self, config: &'a Path) -> BoxFuture<'a, Result<Box<dyn RegionProcess>>> {
        Box::pin(async move {
            let config = NodeConfig::load(config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(NODE_THREADS)
                .thread_name(format!("node-{}", config.region.id))
                .enable_all()
                .build()
                .context("starting the node's runtime")?;
            let started = match runtime.spawn(Node::start(config)).await {
                Ok(started) => started,
                Err(e) => Err(anyhow::Error::new(e).context("the node's start task")),
            };
            let node = match started {
                Ok(node) => node,
                Err(e) => {
                    // Dropping a runtime blocks, which is not allowed in this async context.
                    runtime.shutdown_background();
                    return Err(e);
                }
            };
            let process: Box<dyn RegionProcess> = Box::new(InProcessNode {
                runtime: Some(runtime),
                node: Some(node),
            });
            Ok(process)
        })
    }
}

struct InProcessNode {
    runtime: Option<tokio::runtime::Runtime>,
    node: Option<Node>,
}

impl RegionProcess for InProcessNode {
    fn kill(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if let Some(runtime) = self.runtime.take() {
                runtime.shutdown_background();
            }
            self.node = None;
            Ok(())
        })
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let (Some(runtime), Some(node)) = (self.runtime.take(), self.node.take()) else {
                return Ok(());
            };
            let stopped = runtime.spawn(node.shut_down()).await;
            runtime.shutdown_background();
            stopped.context("the node's shutdown task")?
        })
    }

    fn exited(&mut self) -> Option<String> {
        self.runtime.is_none().then(|| "killed".to_string())
    }
}

impl Drop for InProcessNode {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Starts nodes as `binary serve --config FILE` children.
pub struct Processes {
    pub binary: PathBuf,
}

impl Processes {
    /// Children of this very executable.
    pub fn current_exe() -> Result<Self> {
        Ok(Processes {
            binary: std::env::current_exe().context("finding the georouter executable")?,
        })
    }
}

impl Launcher for Processes {
    fn mode(&self) -> &'static str {
        "processes"
    }

    fn launch<'a>(&'a self, config: &'a Path) -> BoxFuture<'a, Result<Box<dyn RegionProcess>>> {
        Box::pin(async move {
            let log = config.with_extension("log");
            let log_file = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let mut command = tokio::process::Command::new(&self.binary);
            command
                .arg("serve")
                .arg("--config")
                .arg(config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .kill_on_drop(true);
            // The scenario's config is the whole truth: no overrides from this shell.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("GEOROUTER__") {
                    command.env_remove(key);
                }
            }
            let child = command
                .spawn()
                .with_context(|| format!("running {} serve", self.binary.display()))?;
            let process: Box<dyn RegionProcess> = Box::new(ChildNode { child, log });
            Ok(process)
        })
    }
}

struct ChildNode {
    child: tokio::process::Child,
    log: PathBuf,
}

impl ChildNode {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n");
        format!("(log {}):\n{tail}", self.log.display())
    }
}

impl RegionProcess for ChildNode {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn kill(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.child.start_kill().context("SIGKILL")?;
            self.child
                .wait()
                .await
                .context("waiting for the killed node")?;
            Ok(())
        })
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            if let Some(pid) = self.child.id() {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
                    .context("SIGTERM")?;
            }
            let status = self.child.wait().await.context("waiting for the node")?;
            anyhow::ensure!(
                status.success(),
                "the node exited with {status} {}",
                self.log_tail()
            );
            Ok(())
        })
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("exited with {status} {}", self.log_tail())),
            Ok(None) => None,
            Err(e) => Some(format!("cannot tell: {e}")),
        }
    }
}
