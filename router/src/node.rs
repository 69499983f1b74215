//! A region node: binds its listeners, opens the broker, serves gRPC and the console, runs
//! retention, and shuts down in a fixed order. Listeners are bound here and handed to the
//! services, so tests can use port 0 and read the bound addresses back.
//!
//! Shutdown order (each step bounded by [`STEP_DEADLINE`]):
//! 1. readiness off, fetch streams cancelled, the gRPC server and the RocketMQ access point
//!    stop accepting and finish in-flight requests (sends complete and are acknowledged);
//!    then replication stops: links close, pulls are cancelled, checkpoints are saved;
//! 2. every partition is fsynced and closed to appends;
//! 3. metadata is flushed; 4. the console stops; 5. the runtime file is removed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use broker::meta::SledMetaStore;
use broker::{Broker, BrokerConfig};
use console_api::Health;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use replicator::Replicator;

use crate::config::{NodeConfig, StorageEngineKind, StorageSection};
use crate::tls::ServerIdentity;

pub const STEP_DEADLINE: Duration = Duration::from_secs(10);

/// HTTP/2 flow-control windows of the gRPC server. The 64 KiB default stalls a produce of
/// more than 64 KiB for a window update round (about 40 ms with delayed ACKs).
const HTTP2_STREAM_WINDOW: u32 = 8 << 20;
const HTTP2_CONNECTION_WINDOW: u32 = 32 << 20;
/// Concurrent gRPC streams per client connection (each fetch holds one).
const GRPC_MAX_STREAMS: u32 = 1024;
/// Header bytes per gRPC request.
const GRPC_MAX_HEADER_BYTES: u32 = 64 << 10;

/// The addresses a node actually bound.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub replication: SocketAddr,
    pub console: SocketAddr,
    pub rocketmq: SocketAddr,
}

pub struct Node {
    pub config: NodeConfig,
    pub bound: Bound,
    pub broker: Arc<Broker>,
    health: Health,
    fetches: CancellationToken,
    fetch_tasks: TaskTracker,
    grpc_stop: CancellationToken,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    /// The RocketMQ access point's server; stops with the gRPC server.
    rocketmq: JoinHandle<Result<(), tonic::transport::Error>>,
    console_stop: CancellationToken,
    console: JoinHandle<std::io::Result<()>>,
    background_stop: CancellationToken,
    background: TaskTracker,
    /// The replication service when it runs for the node's whole life; `None` when
    /// `[replication]` has no certificates, or when it runs while this node holds its
    /// region's replication lease (see `running`).
    fixed_replicator: Option<Arc<Replicator>>,
    /// The replicator running on this node now, if any.
    running: replicator::Running,
    replication_stop: CancellationToken,
    replication_duty: TaskTracker,
    /// Held while replication is off, so the reported address stays reserved.
    _replication_socket: Option<UdpSocket>,
}

impl Node {
    /// Starts a node and writes `<data_dir>/runtime/effective.toml` once it serves.
    pub async fn start(config: NodeConfig) -> Result<Self> {
        let data_dir = config.region.data_dir.clone();
        let runtime_file = NodeConfig::runtime_file(&data_dir);
        match std::fs::remove_file(&runtime_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("removing stale {}", runtime_file.display()));
            }
        }
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;

        let grpc_listener = TcpListener::bind(config.listen.grpc)
            .await
            .with_context(|| format!("binding [listen] grpc {}", config.listen.grpc))?;
        let replication_socket = UdpSocket::bind(config.listen.replication)
            .await
            .with_context(|| {
                format!("binding [listen] replication {}", config.listen.replication)
            })?;
        let console_listener = TcpListener::bind(config.listen.console)
            .await
            .with_context(|| format!("binding [listen] console {}", config.listen.console))?;
        let rocketmq_listener = TcpListener::bind(config.listen.rocketmq)
            .await
            .with_context(|| format!("binding [listen] rocketmq {}", config.listen.rocketmq))?;
        let bound = Bound {
            grpc: grpc_listener.local_addr()?,
            replication: replication_socket.local_addr()?,
            console: console_listener.local_addr()?,
            rocketmq: rocketmq_listener.local_addr()?,
        };

        let broker_config = BrokerConfig {
            region: config.region.id.clone(),
            data_dir: data_dir.clone(),
            storage: config.storage_config(),
            default_retention: broker::meta::Retention {
                max_bytes: config.retention.max_bytes,
                max_age_ms: config.retention.max_age_ms,
            },
        };
        let storage = config.storage.clone();
        let (broker, shared_meta) =
            tokio::task::spawn_blocking(move || open_broker(broker_config, &storage)).await??;
        for cut in broker.recovery_report() {
            tracing::warn!(event = "segment_recovered", path = %cut.path.display(), valid_bytes = cut.valid_bytes, cut_bytes = cut.cut_bytes, reason = %cut.reason, "recovered segment");
        }
        let broker = Arc::new(broker);

        // Replication: from start to stop, or (on storage the region's nodes share) while
        // this node holds the region's replication lease (`replication.rs`).
        let replication_plan = crate::replication::Plan::from_config(&config)?;
        let replication_stop = CancellationToken::new();
        let replication_duty = TaskTracker::new();
        let mut replication_socket_for_lease = None;
        let (replicator, running, replication_socket) = match (&replication_plan, &shared_meta) {
            (Some(plan), None) => {
                let started = plan.start(broker.clone(), replication_socket.into_std()?, None)?;
                let started = Arc::new(started);
                (
                    Some(started.clone()),
                    replicator::Running::fixed(Some(started)),
                    None,
                )
            }
            (Some(_), Some(_)) => {
                replication_socket_for_lease = Some(replication_socket.into_std()?);
                (None, replicator::Running::leased(), None)
            }
            (None, _) => (
                None,
                replicator::Running::fixed(None),
                Some(replication_socket),
            ),
        };
        let fetches = CancellationToken::new();
        let fetch_tasks = TaskTracker::new();
        let security = crate::security::build(&config)?;
        crate::security::load_shared(&broker, &security.authority);
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => Some(ServerIdentity::load(cert, key, "[tls]")?),
            _ => None,
        };
        let rocketmq_tls = match (&config.rocketmq.tls_cert, &config.rocketmq.tls_key) {
            (Some(cert), Some(key)) => Some(ServerIdentity::load(cert, key, "[rocketmq] tls")?),
            _ => tls.clone(),
        };
        let console_tls = tls.as_ref().map(ServerIdentity::rustls).transpose()?;
        let service = broker::grpc::BrokerService::new(
            broker.clone(),
            security.authority.clone(),
            fetch_tasks.clone(),
            fetches.clone(),
        );
        let mut registry = prometheus_client::registry::Registry::default();
        service.metrics().register(&mut registry);
        security.authority.register(&mut registry);
        broker.timer_metrics().register(&mut registry);
        let fenced = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        registry.register(
            "georouter_partitions_fenced",
            "Partitions fenced after a storage failure (no writes until the node restarts), refreshed every retention check",
            fenced.clone(),
        );
        let certificates = crate::tls::certificate_files(&config);
        let background_stop = CancellationToken::new();
        let expiry =
            crate::tls::expiry_gauges(certificates.clone(), &mut registry, background_stop.clone());
        let tracing_loop = crate::otlp::start_tracing(
            &config.telemetry,
            &broker,
            &mut registry,
            background_stop.clone(),
        )?;
        let grpc_stop = CancellationToken::new();
        let access_point = rocketmq::AccessPoint::new(
            broker.clone(),
            config.region.id.clone(),
            bound.rocketmq,
            rocketmq::Limits {
                max_body: config.storage.max_record_bytes,
                long_polling: Duration::from_millis(config.rocketmq.long_polling_ms),
                receive_batch: 32,
                max_attempts: config.rocketmq.max_attempts,
            },
            security.authority.clone(),
            grpc_stop.clone(),
        );
        let consumption = access_point.consumption();
        consumption.ownership().register(&mut registry);
        // A node that replicates only while it holds the lease knows the region's tasks
        // from the shared metadata the rest of the time.
        let stored_tasks = match (&replication_plan, &shared_meta) {
            (Some(plan), Some(_)) => Some(plan.stored_tasks(&broker).await?),
            _ => None,
        };
        let status: Option<console_api::StatusSource> = replication_plan.as_ref().map(|plan| {
            plan.metrics.register(&mut registry);
            consumption.ownership().set_peers(
                Arc::new(crate::replication::GroupPeers {
                    running: running.clone(),
                    stored: stored_tasks.clone(),
                }),
                Duration::from_millis(config.rocketmq.takeover_after_ms),
            );
            let running = running.clone();
            let consumption = consumption.clone();
            let source: console_api::StatusSource = Arc::new(move || {
                // Empty lists while another node of the region replicates.
                let r = running.get();
                serde_json::json!({
                    "replicating_here": r.is_some(),
                    "links": r.as_ref().map(|r| r.links()).unwrap_or_default(),
                    "routes": r.as_ref().map(|r| r.routes()).unwrap_or_default(),
                    "sub_logs": r.as_ref().map(|r| r.status()).unwrap_or_default(),
                    "rpo": r.as_ref().map(|r| r.rpo()).unwrap_or_default(),
                    "takeovers": consumption.ownership().takeovers(),
                })
            });
            source
        });
        let health = Health::default();
        let console_stop = CancellationToken::new();
        let console = tokio::spawn(console_api::serve(
            console_listener,
            console_api::Console {
                health: health.clone(),
                metrics: Arc::new(registry),
                replication: status,
                api: console_api::api::Api {
                    region: config.region.id.clone(),
                    broker: broker.clone(),
                    replicator: running.clone(),
                    authority: security.authority.clone(),
                    certificates: Arc::new(certificates),
                    consumption: Some(access_point.consumption()),
                    audit: Arc::new(
                        console_api::audit::Audit::open(Some(
                            config.region.data_dir.join("audit.log"),
                        ))
                        .context("reading the console's audit log")?,
                    ),
                },
                auth: security.console.clone(),
                hosts: console_api::guard::Hosts::new(&config.console.hosts, bound.console),
                request_timeout: Duration::from_millis(config.console.request_timeout_ms),
            },
            console_tls,
            console_stop.clone(),
        ));

        let service = service.into_server();
        let stop = grpc_stop.clone();
        let mut grpc_server = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            grpc_server = grpc_server
                .tls_config(tls.tonic())
                .context("TLS on the gRPC API ([tls])")?;
        }
        let grpc = tokio::spawn(
            grpc_server
                .tcp_nodelay(true)
                .initial_stream_window_size(HTTP2_STREAM_WINDOW)
                .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
                // Bounded per connection: streams (each fetch is one) and header bytes.
                .max_concurrent_streams(Some(GRPC_MAX_STREAMS))
                .http2_max_header_list_size(GRPC_MAX_HEADER_BYTES)
                .add_service(service)
                .serve_with_incoming_shutdown(
                    // Accepted streams get TCP_NODELAY here: the builder's setting only
                    // applies to listeners that tonic binds itself.
                    tonic::transport::server::TcpIncoming::from(grpc_listener)
                        .with_nodelay(Some(true)),
                    stop.cancelled_owned(),
                ),
        );

        let stop = grpc_stop.clone();
        let mut rocketmq_server = tonic::transport::Server::builder();
        if let Some(tls) = &rocketmq_tls {
            rocketmq_server = rocketmq_server
                .tls_config(tls.tonic())
                .context("TLS on the RocketMQ access point ([rocketmq] tls_cert, tls_key)")?;
        }
        let rocketmq = tokio::spawn(
            rocketmq_server
                .tcp_nodelay(true)
                .max_concurrent_streams(Some(GRPC_MAX_STREAMS))
                .http2_max_header_list_size(GRPC_MAX_HEADER_BYTES)
                .add_service(rocketmq::server(access_point))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(rocketmq_listener)
                        .with_nodelay(Some(true)),
                    stop.cancelled_owned(),
                ),
        );

        let background = TaskTracker::new();
        background.spawn(expiry);
        background.spawn(crate::security::follow_shared(
            broker.clone(),
            security.authority.clone(),
            background_stop.clone(),
        ));
        if let Some(tracing_loop) = tracing_loop {
            background.spawn(tracing_loop);
        }
        // Delay messages fire from here (broker/src/broker/timers.rs): on a region's
        // shared storage, from one node at a time, the holder of the `timers` lease.
        match &shared_meta {
            Some(meta) => {
                // Unique to this process: nodes configured alike (0.0.0.0:7100 on every
                // machine) must never take each other's leases for their own.
                let instance = rand::random::<u64>();
                let node_id = format!("{}-{}-{instance:016x}", config.region.id, bound.grpc);
                // Released once the timers have stopped firing here, not before.
                let timers_lease = CancellationToken::new();
                let held = meta.hold_lease("timers", &node_id, DUTY_LEASE, timers_lease.clone());
                let b = broker.clone();
                let timers = jetstream_engine::lease::run_while_held(
                    held,
                    background_stop.clone(),
                    move |stop| b.clone().run_timers(stop),
                );
                background.spawn(async move {
                    timers.await;
                    timers_lease.cancel();
                });
                background.spawn(shared_topics_loop(broker.clone(), background_stop.clone()));
                if let Some(plan) = replication_plan {
                    let stored = stored_tasks.clone().expect("read above on shared storage");
                    background.spawn(crate::replication::Plan::fence_while_leased(
                        &broker,
                        running.clone(),
                        stored,
                        background_stop.clone(),
                    ));
                    // Released once replication has stopped here (`run_while_held`).
                    let lease_stop = CancellationToken::new();
                    let held = meta.hold_lease_yielding(
                        crate::replication::REPLICATION_DUTY,
                        &node_id,
                        crate::replication::REPLICATION_LEASE,
                        lease_stop.clone(),
                    );
                    let crew = crate::crew::CrewIo {
                        meta: meta.clone(),
                        me: node_id.clone(),
                        member_duty: format!("{}{instance:016x}", crate::crew::MEMBER_DUTY),
                    };
                    let socket = replication_socket_for_lease
                        .take()
                        .expect("the replication socket, kept for the lease");
                    replication_duty.spawn(plan.run_while_held(
                        held,
                        crew,
                        broker.clone(),
                        socket,
                        running.clone(),
                        replication_stop.clone(),
                        lease_stop,
                    ));
                }
            }
            None => {
                background.spawn(broker.clone().run_timers(background_stop.clone()));
            }
        }
        background.spawn(retention_loop(
            broker.clone(),
            Duration::from_millis(config.retention.check_interval_ms),
            fenced,
            background_stop.clone(),
        ));

        write_runtime_file(&config, &bound)?;
        health.set_ready(true);
        tracing::info!(region = %config.region.id, grpc = %bound.grpc, replication = %bound.replication, console = %bound.console, rocketmq = %bound.rocketmq, "node ready");
        Ok(Node {
            config,
            bound,
            broker,
            health,
            fetches,
            fetch_tasks,
            grpc_stop,
            grpc,
            rocketmq,
            console_stop,
            console,
            background_stop,
            background,
            fixed_replicator: replicator,
            running,
            replication_stop,
            replication_duty,
            _replication_socket: replication_socket,
        })
    }

    /// The replicator running on this node now: for the node's whole life, or (on storage
    /// its region's nodes share) while it holds the region's replication lease; `None`
    /// without `[replication]` certificates.
    pub fn replicator(&self) -> Option<Arc<Replicator>> {
        self.running.get()
    }

    /// Shuts down in the documented order.
    pub async fn shut_down(self) -> Result<()> {
        tracing::info!(region = %self.config.region.id, "shutting down");
        self.health.set_ready(false);
        self.fetches.cancel();
        self.fetch_tasks.close();
        self.grpc_stop.cancel();
        self.background_stop.cancel();
        self.background.close();
        match tokio::time::timeout(STEP_DEADLINE, self.grpc).await {
            Ok(joined) => joined?.context("gRPC server")?,
            Err(_) => {
                tracing::warn!(
                    event = "grpc_drain_slow",
                    "gRPC server did not finish in-flight requests within the deadline"
                )
            }
        }
        match tokio::time::timeout(STEP_DEADLINE, self.rocketmq).await {
            Ok(joined) => joined?.context("RocketMQ access point")?,
            Err(_) => tracing::warn!(
                event = "rocketmq_drain_slow",
                "the RocketMQ access point did not finish in-flight requests within the deadline"
            ),
        }
        let _ = tokio::time::timeout(STEP_DEADLINE, self.fetch_tasks.wait()).await;
        let _ = tokio::time::timeout(STEP_DEADLINE, self.background.wait()).await;
        if let Some(replicator) = &self.fixed_replicator {
            replicator.shut_down().await;
        }
        self.replication_stop.cancel();
        self.replication_duty.close();
        // The replicator's own shutdown is bounded by about 12 s (tasks, checkpoints, the
        // endpoint), then the lease is released.
        let _ = tokio::time::timeout(STEP_DEADLINE * 2, self.replication_duty.wait()).await;
        tokio::time::timeout(STEP_DEADLINE, self.broker.shut_down())
            .await
            .context("fsync of partitions timed out")?
            .context("closing partitions")?;
        self.console_stop.cancel();
        let _ = tokio::time::timeout(STEP_DEADLINE, self.console).await;
        let runtime_file = NodeConfig::runtime_file(&self.config.region.data_dir);
        let _ = std::fs::remove_file(runtime_file);
        tracing::info!(region = %self.config.region.id, "shut down cleanly");
        Ok(())
    }
}

/// Applies retention every `every`, and refreshes the fenced-partitions gauge.
async fn retention_loop(
    broker: Arc<Broker>,
    every: Duration,
    fenced: prometheus_client::metrics::gauge::Gauge<i64>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        fenced.set(broker.fenced_partitions() as i64);
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || b.apply_retention()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "retention removed segments"),
            Ok(Err(e)) => {
                tracing::error!(event = "retention_failed", error = %e, "retention failed")
            }
            Err(e) => {
                tracing::error!(event = "retention_task_failed", error = %e, "retention task failed")
            }
        }
    }
}

/// Writes the effective config with the bound addresses, atomically (temp file + rename),
/// so a reader sees either nothing or the whole file.
fn write_runtime_file(config: &NodeConfig, bound: &Bound) -> Result<()> {
    let mut effective = config.redacted();
    effective.listen.grpc = bound.grpc;
    effective.listen.replication = bound.replication;
    effective.listen.console = bound.console;
    effective.listen.rocketmq = bound.rocketmq;
    let text = toml::to_string_pretty(&effective).context("serializing effective config")?;
    let path = NodeConfig::runtime_file(&config.region.data_dir);
    let dir = path.parent().expect("runtime file has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join("effective.toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Takes up the topics other nodes of the region create and lets go of those they delete
/// (a request naming a topic takes it up at once; listings within a second).
async fn shared_topics_loop(broker: Arc<Broker>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let b = broker.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || b.refresh_topics()).await {
            tracing::warn!(event = "shared_topics_refresh_failed", error = %e, "could not read the region's topics from the shared metadata; trying again");
        }
    }
}

/// How long a node holds a duty of the region it shares with other nodes (firing delayed
/// messages) without renewing it: another node takes over within this after its death.
const DUTY_LEASE: Duration = Duration::from_secs(6);

/// Opens the broker on the storage engine `[storage] engine` names; with JetStream, also
/// the metadata store the region's nodes share (for their leases).
fn open_broker(
    config: BrokerConfig,
    storage: &StorageSection,
) -> Result<(Broker, Option<Arc<jetstream_engine::JetStreamMetaStore>>)> {
    match (storage.engine, &storage.jetstream) {
        (StorageEngineKind::JetStream, Some(settings)) => {
            let engine = jetstream_engine::Engine::connect(settings.clone())
                .context("[storage.jetstream] connecting to the cluster")?;
            let meta = jetstream_engine::JetStreamMetaStore::open(engine.clone(), &config.region)
                .context("[storage.jetstream] opening the region's metadata")?;
            let meta = Arc::new(meta);
            let records = jetstream_engine::JetStreamStorage::new(engine, &config.region);
            let broker = Broker::open_on(config, meta.clone(), Arc::new(records))
                .context("opening the broker on JetStream")?;
            Ok((broker, Some(meta)))
        }
        _ => {
            let meta =
                SledMetaStore::open(&config.data_dir.join("meta")).context("opening metadata")?;
            let broker = Broker::open(config, Arc::new(meta)).context("opening the broker")?;
            Ok((broker, None))
        }
    }
}
