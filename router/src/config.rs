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
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection {
            grpc: "127.0.0.1:7100".parse().expect("address"),
            replication: "127.0.0.1:7200".parse().expect("address"),
            console: "127.0.0.1:7300".parse().expect("address"),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub segment_bytes: u64,
    pub segment_age_ms: u64,
    pub index_interval_bytes: u64,
    pub max_record_bytes: usize,
    pub max_batch_bytes: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        let d = broker::storage::StorageConfig::default();
        StorageSection {
            segment_bytes: d.segment_bytes,
            segment_age_ms: d.segment_age.as_millis() as u64,
            index_interval_bytes: d.index_interval_bytes,
            max_record_bytes: d.max_record_bytes,
            max_batch_bytes: d.max_batch_bytes,
        }
    }
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
        let config: NodeConfig = built
            .try_deserialize()
            .with_context(|| format!("invalid config {}", path.display()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        broker::names::validate("region", &self.region.id).context("[region] id")?;
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
            self.retention.check_interval_ms > 0,
            "[retention] check_interval_ms must be positive"
        );
        Ok(())
    }

    pub fn storage_config(&self) -> broker::storage::StorageConfig {
        broker::storage::StorageConfig {
            segment_bytes: self.storage.segment_bytes,
            segment_age: Duration::from_millis(self.storage.segment_age_ms),
            index_interval_bytes: self.storage.index_interval_bytes.max(1),
            max_record_bytes: self.storage.max_record_bytes,
            max_batch_bytes: self.storage.max_batch_bytes,
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
            },
            storage: StorageSection::default(),
            retention: RetentionSection::default(),
        }
    }

    /// Where a running node writes its effective config.
    pub fn runtime_file(data_dir: &Path) -> PathBuf {
        data_dir.join("runtime").join("effective.toml")
    }
}
