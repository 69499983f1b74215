//! The replication side of a node of a region of several that does not plan (another
//! node holds the region's replication lease and its links). It pulls the share of the
//! region's sub-logs that the planning node's division gives it (`crew`, `link::worker`)
//! over data-only connections to the neighbours, and serves the data-only connections
//! their nodes open to it (`link::data`), on one endpoint that takes no links: a neighbour
//! dialling a link here learns from the handshake that another node holds them and dials
//! the region's next address. It knows the region's tasks from the shared metadata, read
//! again every second; it stores nothing of its own there (the planning node stores the
//! tasks and the division).

use std::sync::Arc;
use std::time::Duration;

use broker::Broker;
use tokio::sync::watch;

use crate::crew::Share;
use crate::identity::seal::Sealer;
use crate::link::{endpoint, worker};
use crate::node::{Node, Planner};
use crate::replicator::{
    ReplicatorConfig, StartError, build_node, open_endpoint, stored_catalog, stored_task_records,
};

/// How often the tasks are read again from the shared metadata.
const TASKS_REFRESH: Duration = Duration::from_secs(1);

pub struct CrewWorker {
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
}

impl CrewWorker {
    /// Starts serving data-only connections and pulling what `share` gives this node, on
    /// `socket`.
    pub fn start(
        config: ReplicatorConfig,
        broker: Arc<Broker>,
        socket: std::net::UdpSocket,
        share: watch::Receiver<Share>,
    ) -> Result<Self, StartError> {
        let sealer = Sealer::new(&config.identity)?;
        let catalog = stored_catalog(&broker, &config, &sealer)?;
        let quic = open_endpoint(&config, socket, true)?;
        let (planner, ended) = Planner::channel();
        let node = build_node(config, broker, catalog, planner, sealer);
        node.tracker.spawn(endpoint::accept_loop(
            node.clone(),
            quic.clone(),
            endpoint::Accepts::DataAlone,
        ));
        node.tracker.spawn(follow_tasks(node.clone()));
        node.tracker
            .spawn(worker::run(node.clone(), quic.clone(), share, ended));
        tracing::info!(region = %node.region, "pulling and serving this node's share of the region's sub-logs");
        Ok(CrewWorker {
            node,
            endpoint: quic,
        })
    }

    /// Stops its pulls and lets the socket go.
    pub async fn shut_down(&self) {
        endpoint::stop_node(&self.node, &self.endpoint, b"not pulling").await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Takes the task records the planning node stores, every [`TASKS_REFRESH`]: a changed
/// task restarts this node's pulls of it, a paused or deleted one stops them.
async fn follow_tasks(node: Arc<Node>) {
    let mut tick = tokio::time::interval(TASKS_REFRESH);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = node.stop.cancelled() => return,
        }
        let n = node.clone();
        let read = tokio::task::spawn_blocking(move || {
            stored_task_records(&n.broker)
                .map(|records| n.tasks.merge(records, &n.topology, &|_| Ok(())).len())
        })
        .await;
        if let Ok(Err(e)) = read {
            tracing::warn!(event = "crew_read_failed", error = %e, "could not read the region's tasks from the shared metadata; pulling by the tasks as last read");
        }
    }
}
