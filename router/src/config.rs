//! Node configuration: defaults, then the TOML file, then environment variables
//! `GEOROUTER__SECTION__KEY` (double underscores separate levels, so snake_case keys work).
//! The raw file form is deserialized with serde defaults, then converted into typed config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub region: RegionSection,
    #[serde(default)]
    pub listen: ListenSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub retention: RetentionSection,
    #[serde(default)]
    pub replication: ReplicationSection,
    #[serde(default)]
    pub console: ConsoleSection,
    #[serde(default)]
    pub rocketmq: RocketMqSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// TLS on the gRPC API and the console (and the access point, unless `[rocketmq]`
    /// names its own): a certificate chain and a private key, PEM files.
    #[serde(default)]
    pub tls: TlsSection,
    /// Every region of the deployment (`[[regions]]`), the same list in every region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<topology::RegionSpec>,
    /// The links between regions (`[[links]]`), the same list in every region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<topology::LinkSpec>,
    /// Pass-through relays and data allowed only in some regions (`[residency]`).
    #[serde(default)]
    pub residency: topology::ResidencySpec,
    /// Replication tasks (`[[tasks]]`), the same list in every region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<replicator::TaskSpec>,
}

/// Certificates and link tuning. Replication runs when `ca`, `cert` and `key` are set.
/// Relative paths are taken from the config file's directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSection {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub hop_limit: usize,
    pub stream_window_bytes: u64,
    pub connection_window_bytes: u64,
    pub send_window_bytes: u64,
    /// Bytes of batches a link holds in memory each way, whatever its sub-logs.
    pub link_buffer_bytes: usize,
    /// The rate (Mbit/s) a link's congestion window always allows at its measured RTT.
    pub min_rate_mbps: u64,
    /// Batches packed on the links: "auto" (when the measured link is the bottleneck),
    /// "off", "lz4" or "zstd" (always, when the peer unpacks it).
    pub compression: replicator::CompressionSetting,
    /// A region serves its new sub-logs to the neighbours that need them before they ask
    /// (one one-way delay to the first record instead of a discovery round).
    pub push: bool,
    pub socket_buffer_bytes: usize,
    pub max_frame_bytes: usize,
    pub frame_target_bytes: usize,
    pub idle_timeout_ms: u64,
    pub advertise_interval_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// How often the console's charts sample lag and throughput (an hour is kept).
    pub history_interval_ms: u64,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        let d = replicator::LinkSettings::default();
        ReplicationSection {
            ca: None,
            cert: None,
            key: None,
            hop_limit: d.hop_limit,
            stream_window_bytes: d.stream_window_bytes,
            connection_window_bytes: d.connection_window_bytes,
            send_window_bytes: d.send_window_bytes,
            link_buffer_bytes: d.link_buffer_bytes,
            min_rate_mbps: d.min_rate_mbps,
            compression: d.compression,
            push: d.push,
            socket_buffer_bytes: d.socket_buffer_bytes,
            max_frame_bytes: d.max_frame_bytes,
            frame_target_bytes: d.frame_target_bytes,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
            advertise_interval_ms: d.advertise_interval.as_millis() as u64,
            heartbeat_interval_ms: d.heartbeat_interval.as_millis() as u64,
            history_interval_ms: d.history_interval.as_millis() as u64,
        }
    }
}

impl ReplicationSection {
    pub fn link_settings(&self) -> replicator::LinkSettings {
        replicator::LinkSettings {
            hop_limit: self.hop_limit,
            stream_window_bytes: self.stream_window_bytes,
            connection_window_bytes: self.connection_window_bytes,
            send_window_bytes: self.send_window_bytes,
            link_buffer_bytes: self.link_buffer_bytes,
            min_rate_mbps: self.min_rate_mbps,
            compression: self.compression,
            push: self.push,
            socket_buffer_bytes: self.socket_buffer_bytes,
            max_frame_bytes: self.max_frame_bytes,
            frame_target_bytes: self.frame_target_bytes,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            advertise_interval: Duration::from_millis(self.advertise_interval_ms),
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            history_interval: Duration::from_millis(self.history_interval_ms.max(100)),
            ..replicator::LinkSettings::default()
        }
    }

    /// The three certificate files, when all are set.
    pub fn certificate_files(&self) -> Option<(&Path, &Path, &Path)> {
        Some((
            self.ca.as_deref()?,
            self.cert.as_deref()?,
            self.key.as_deref()?,
        ))
    }
}

/// The console's bearer tokens (admin tokens may change tasks, read tokens only read), the
/// names it answers to, and how long a request may take.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    pub admin_tokens: Vec<String>,
    pub read_tokens: Vec<String>,
    /// Names the console answers to besides the loopback names and its listen address
    /// (the `Host` header; others get 421).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// How long a request's head, its body, and the answer to it may each take (failover
    /// and failback wait by their own `timeout_s`).
    pub request_timeout_ms: u64,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            admin_tokens: Vec::new(),
            read_tokens: Vec::new(),
            hosts: Vec::new(),
            request_timeout_ms: 30_000,
        }
    }
}

/// `[tls]`: both or neither.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// Who may call this region (`[auth]`; docs/security.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// `enforce` (the default): every surface needs credentials; a node given no principal
    /// and no console token makes an admin credential at its first start. `open`: callers
    /// without credentials may do everything (development on loopback only; logged loudly).
    pub mode: AuthMode,
    /// `[[auth.principals]]`: name, access key, secret and grants.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<auth::PrincipalSpec>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Enforce,
    Open,
}

/// The RocketMQ 5 access point's consumption settings (`[rocketmq]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RocketMqSection {
    /// Deliveries of a message before it moves to the group's dead-letter topic.
    pub max_attempts: u32,
    /// The longest a receive waits for messages, in milliseconds.
    pub long_polling_ms: u64,
    /// Active-active groups: how long another origin's messages may wait here without
    /// progress made elsewhere before this region's consumers take them over.
    pub takeover_after_ms: u64,
    /// TLS on the access point: its certificate chain and private key (PEM files). Both
    /// or neither; without them the access point speaks plaintext gRPC, as the SDKs do by
    /// default (`tls_enable=False`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Default for RocketMqSection {
    fn default() -> Self {
        RocketMqSection {
            max_attempts: 16,
            long_polling_ms: 20_000,
            takeover_after_ms: 30_000,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Message trace and its export (`[telemetry]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// Record each message's steps here in the `georouter.trace` topic (a task that
    /// carries that topic brings every region's steps together).
    pub trace: bool,
    /// Export the trace as OpenTelemetry spans over OTLP/gRPC to this collector
    /// (`http://host:4317`); turns `trace` on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSection {
    /// This region's id: letters, digits, '.', '_' and '-'.
    pub id: String,
    /// Where segments, metadata and the runtime file live.
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    pub grpc: SocketAddr,
    pub replication: SocketAddr,
    pub console: SocketAddr,
    /// The RocketMQ 5 access point (`apache.rocketmq.v2.MessagingService`).
    #[serde(default = "default_rocketmq")]
    pub rocketmq: SocketAddr,
    /// Let the gRPC API, the console and the access point speak plaintext on an address
    /// other than loopback (refused otherwise: configure `[tls]`).
    #[serde(default)]
    pub allow_plaintext: bool,
}

fn default_rocketmq() -> SocketAddr {
    "127.0.0.1:8081".parse().expect("address")
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection {
            grpc: "127.0.0.1:7100".parse().expect("address"),
            replication: "127.0.0.1:7200".parse().expect("address"),
            console: "127.0.0.1:7300".parse().expect("address"),
            rocketmq: default_rocketmq(),
            allow_plaintext: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// What holds the region's records and metadata: `embedded` (files under the data
    /// directory, one process per region; the default) or `jetstream` (a NATS JetStream
    /// cluster, `[storage.jetstream]`, which several nodes of the region may share).
    pub engine: StorageEngineKind,
    /// The JetStream cluster, when `engine = "jetstream"`.
    pub jetstream: Option<jetstream_engine::JetStreamSettings>,
    pub segment_bytes: u64,
    pub segment_age_ms: u64,
    pub index_interval_bytes: u64,
    pub max_record_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_timestamp_skew_ms: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        let d = broker::storage::StorageConfig::default();
        StorageSection {
            engine: StorageEngineKind::Embedded,
            jetstream: None,
            segment_bytes: d.segment_bytes,
            segment_age_ms: d.segment_age.as_millis() as u64,
            index_interval_bytes: d.index_interval_bytes,
            max_record_bytes: d.max_record_bytes,
            max_batch_bytes: d.max_batch_bytes,
            max_timestamp_skew_ms: d.max_timestamp_skew_ms,
        }
    }
}

/// `[storage] engine`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageEngineKind {
    #[default]
    Embedded,
    #[serde(rename = "jetstream")]
    JetStream,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Default for topics created without retention; 0 = unlimited.
    pub max_bytes: u64,
    /// Default for topics created without retention; 0 = unlimited.
    pub max_age_ms: u64,
    /// How often retention runs.
    pub check_interval_ms: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            max_bytes: 0,
            max_age_ms: 7 * 24 * 3600 * 1000,
            check_interval_ms: 30_000,
        }
    }
}

impl NodeConfig {
    /// Loads the file, applies `GEOROUTER__*` environment overrides, and checks values.
    pub fn load(path: &Path) -> Result<Self> {
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("GEOROUTER")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut config: NodeConfig = built
            .try_deserialize()
            .with_context(|| format!("invalid config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [
            &mut config.replication.ca,
            &mut config.replication.cert,
            &mut config.replication.key,
        ]
        .into_iter()
        .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        if let Some(js) = config.storage.jetstream.as_mut() {
            for file in [&mut js.tls_ca, &mut js.tls_cert, &mut js.tls_key]
                .into_iter()
                .flatten()
            {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        broker::names::validate("region", &self.region.id).context("[region] id")?;
        self.check_auth()?;
        match (self.storage.engine, &self.storage.jetstream) {
            (StorageEngineKind::JetStream, None) => anyhow::bail!(
                "[storage] engine = \"jetstream\" needs a [storage.jetstream] section with servers"
            ),
            (StorageEngineKind::JetStream, Some(js)) => {
                if let Some(problem) = js.problem() {
                    anyhow::bail!(problem);
                }
            }
            (StorageEngineKind::Embedded, _) => {}
        }
        anyhow::ensure!(
            self.storage.segment_bytes >= 1024,
            "[storage] segment_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.storage.max_record_bytes > 0,
            "[storage] max_record_bytes must be positive"
        );
        anyhow::ensure!(
            self.storage.max_batch_bytes >= self.storage.max_record_bytes,
            "[storage] max_batch_bytes must be at least max_record_bytes"
        );
        anyhow::ensure!(
            self.storage.max_batch_bytes <= broker::batch::MAX_BATCH_BYTES_LIMIT,
            "[storage] max_batch_bytes must be at most {} (1 GiB)",
            broker::batch::MAX_BATCH_BYTES_LIMIT
        );
        anyhow::ensure!(
            self.retention.check_interval_ms > 0,
            "[retention] check_interval_ms must be positive"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.rocketmq.max_attempts),
            "[rocketmq] max_attempts must be between 1 and 1000"
        );
        anyhow::ensure!(
            self.rocketmq.long_polling_ms <= 600_000,
            "[rocketmq] long_polling_ms must be at most 600000 (10 minutes)"
        );
        anyhow::ensure!(
            self.rocketmq.tls_cert.is_some() == self.rocketmq.tls_key.is_some(),
            "[rocketmq] tls_cert and tls_key go together: set both for TLS, or neither"
        );
        anyhow::ensure!(
            self.tls.cert.is_some() == self.tls.key.is_some(),
            "[tls] cert and key go together: set both for TLS, or neither"
        );
        let tls = self.tls.cert.is_some();
        let rocketmq_tls = tls || self.rocketmq.tls_cert.is_some();
        for (name, address, secured) in [
            ("grpc", self.listen.grpc, tls),
            ("console", self.listen.console, tls),
            ("rocketmq", self.listen.rocketmq, rocketmq_tls),
        ] {
            anyhow::ensure!(
                secured || address.ip().is_loopback() || self.listen.allow_plaintext,
                "[listen] {name} = {address} is not a loopback address: configure [tls] cert and key (georouter certs --server-names), or set [listen] allow_plaintext = true"
            );
        }
        let r = &self.replication;
        let set = [&r.ca, &r.cert, &r.key]
            .iter()
            .filter(|f| f.is_some())
            .count();
        anyhow::ensure!(
            set == 0 || set == 3,
            "[replication] ca, cert and key must be given together"
        );
        anyhow::ensure!(
            set == 3 || (self.links.is_empty() && self.tasks.is_empty()),
            "[replication] ca, cert and key are required when [[links]] or [[tasks]] are configured"
        );
        let topology = self.topology()?;
        replicator::task::validate(&self.tasks, &topology).context("[[tasks]]")?;
        anyhow::ensure!(
            r.hop_limit >= 2,
            "[replication] hop_limit must be at least 2"
        );
        anyhow::ensure!(
            r.frame_target_bytes > 0
                && r.idle_timeout_ms > 0
                && r.advertise_interval_ms > 0
                && r.heartbeat_interval_ms > 0,
            "[replication] frame_target_bytes and the intervals must be positive"
        );
        Ok(())
    }

    /// The validated topology. Without `[[regions]]` it is this region alone.
    pub fn topology(&self) -> Result<topology::Topology> {
        let mut spec = topology::TopologySpec {
            regions: self.regions.clone(),
            links: self.links.clone(),
        };
        if spec.regions.is_empty() && spec.links.is_empty() {
            spec.regions.push(topology::RegionSpec {
                name: self.region.id.clone(),
                address: None,
                other_addresses: Vec::new(),
            });
        }
        Ok(topology::Topology::new(
            &spec,
            &self.residency,
            &self.region.id,
        )?)
    }

    pub fn storage_config(&self) -> broker::storage::StorageConfig {
        broker::storage::StorageConfig {
            segment_bytes: self.storage.segment_bytes,
            segment_age: Duration::from_millis(self.storage.segment_age_ms),
            index_interval_bytes: self.storage.index_interval_bytes.max(1),
            max_record_bytes: self.storage.max_record_bytes,
            max_batch_bytes: self.storage.max_batch_bytes,
            max_timestamp_skew_ms: self.storage.max_timestamp_skew_ms,
        }
    }

    /// A node of `region` on `data_dir` with every listener on a free loopback port and
    /// default settings: embedded benchmarks and tests.
    pub fn loopback(region: &str, data_dir: &Path) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        NodeConfig {
            region: RegionSection {
                id: region.to_string(),
                data_dir: data_dir.to_path_buf(),
            },
            listen: ListenSection {
                grpc: any,
                replication: any,
                console: any,
                rocketmq: any,
                allow_plaintext: false,
            },
            storage: StorageSection::default(),
            retention: RetentionSection::default(),
            replication: ReplicationSection::default(),
            console: ConsoleSection::default(),
            rocketmq: RocketMqSection::default(),
            telemetry: TelemetrySection::default(),
            tls: TlsSection::default(),
            // Tests and in-process demos on loopback.
            auth: AuthSection {
                mode: AuthMode::Open,
                principals: Vec::new(),
            },
            regions: Vec::new(),
            links: Vec::new(),
            residency: topology::ResidencySpec::default(),
            tasks: Vec::new(),
        }
    }

    fn check_auth(&self) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for (i, p) in self.auth.principals.iter().enumerate() {
            p.check()
                .with_context(|| format!("[[auth.principals]] #{i}"))?;
            anyhow::ensure!(
                names.insert(&p.name),
                "[[auth.principals]] #{i}: a second principal named {:?}",
                p.name
            );
            anyhow::ensure!(
                keys.insert(&p.access_key),
                "[[auth.principals]] #{i}: access key {:?} is used twice",
                p.access_key
            );
        }
        anyhow::ensure!(
            (100..=3_600_000).contains(&self.console.request_timeout_ms),
            "[console] request_timeout_ms = {}: must be between 100 (0.1 s) and 3600000 (an hour)",
            self.console.request_timeout_ms
        );
        for (list, tokens) in [
            ("admin_tokens", &self.console.admin_tokens),
            ("read_tokens", &self.console.read_tokens),
        ] {
            for (i, token) in tokens.iter().enumerate() {
                anyhow::ensure!(
                    !token.trim().is_empty() && token.trim() == token && !token.contains(':'),
                    "[console] {list} #{i}: a token must not be empty, hold ':' or have surrounding whitespace"
                );
            }
        }
        Ok(())
    }

    /// A digest (SHA-256, hex) of what must be the same in every region's config: the
    /// residency policy, the region names and the principals (names, access keys, grants;
    /// not secrets, and not the console tokens, which are per region). Neighbours compare
    /// theirs at each link's Hello and report drift.
    pub fn shared_digest(&self) -> String {
        let mut regions: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
        regions.sort_unstable();
        let principals: Vec<_> = self
            .auth
            .principals
            .iter()
            .map(|p| (&p.name, &p.access_key, &p.grants))
            .collect();
        let text = serde_json::to_vec(&serde_json::json!({
            "residency": self.residency,
            "regions": regions,
            "principals": principals,
        }))
        .expect("the shared configuration encodes");
        ring::digest::digest(&ring::digest::SHA256, &text)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The config with secrets (console tokens) replaced, for logs and the runtime file.
    pub fn redacted(&self) -> Self {
        let mut config = self.clone();
        let hide = |tokens: &mut Vec<String>| {
            for t in tokens.iter_mut() {
                *t = "<redacted>".into();
            }
        };
        hide(&mut config.console.admin_tokens);
        hide(&mut config.console.read_tokens);
        for p in &mut config.auth.principals {
            p.secret = "<redacted>".into();
        }
        config
    }

    /// Where a running node writes its effective config.
    pub fn runtime_file(data_dir: &Path) -> PathBuf {
        data_dir.join("runtime").join("effective.toml")
    }
}
