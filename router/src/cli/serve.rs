//! `georouter serve --config FILE`.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::NodeConfig;
use crate::node::Node;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The node's TOML config (overrides: GEOROUTER__SECTION__KEY).
    #[arg(long)]
    config: PathBuf,
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let config = NodeConfig::load(&args.config)?;
    tracing::info!(config = ?config.redacted(), "effective config");
    let node = Node::start(config).await?;
    wait_for_signal().await?;
    node.shut_down().await
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
