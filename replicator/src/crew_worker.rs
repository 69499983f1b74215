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
/// How long the tasks as last read still judge what this node serves once reading them
/// fails: past it, nothing is served (a task paused meanwhile would flow on here), and
/// the neighbours' nodes dial another node of this region.
const TASKS_STALE: Duration = Duration::from_secs(3);

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
        // The tasks were read just now (`stored_catalog`).
        let (fresh_tx, fresh) = watch::channel(true);
        node.tracker.spawn(endpoint::accept_loop(
            node.clone(),
            quic.clone(),
            endpoint::Accepts::DataAlone(fresh),
        ));
        node.tracker.spawn(follow_tasks(node.clone(), fresh_tx));
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
/// task restarts this node's pulls of it, a paused or deleted one stops them and what
/// this node serves of it. `fresh` says whether they were read within [`TASKS_STALE`].
async fn follow_tasks(node: Arc<Node>, fresh: watch::Sender<bool>) {
    let mut tick = tokio::time::interval(TASKS_REFRESH);
    let mut read_at = tokio::time::Instant::now();
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
        match read {
            Ok(Ok(_)) => read_at = tokio::time::Instant::now(),
            Ok(Err(e)) => {
                tracing::warn!(event = "crew_read_failed", error = %e, "could not read the region's tasks from the shared metadata; pulling by the tasks as last read, serving only for a few seconds more");
            }
            Err(_) => return,
        }
        let now_fresh = read_at.elapsed() <= TASKS_STALE;
        fresh.send_if_modified(|was| std::mem::replace(was, now_fresh) != now_fresh);
    }
}
