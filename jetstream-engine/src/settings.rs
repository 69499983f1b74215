//! How a node reaches its region's JetStream cluster (`[storage.jetstream]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The cluster's address, credentials and the replication factor of what georouter makes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JetStreamSettings {
    /// Server URLs (`nats://host:port` or `tls://host:port`); the client reconnects among
    /// them and learns the rest of the cluster from the servers.
    pub servers: Vec<String>,
    /// User and password, when the servers ask for them.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// A token, when the servers ask for one instead.
    #[serde(default)]
    pub token: Option<String>,
    /// PEM CA certificate the servers' certificates are checked against (TLS required).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate and key, when the servers verify clients.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Replicas of every stream and bucket georouter creates (3: a write is acknowledged
    /// once a quorum of two has it).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// How long one request to the cluster may take before it fails.
    #[serde(default = "default_request_timeout", with = "millis")]
    pub request_timeout: Duration,
    /// How long a request that failed for want of an answer (a server gone, a stream's
    /// leader being elected) is tried again before the failure is the caller's.
    #[serde(default = "default_retry_for", with = "millis")]
    pub retry_for: Duration,
}

fn default_replicas() -> usize {
    3
}

fn default_request_timeout() -> Duration {
    // A request in flight on a connection to a server that died is answered by nobody:
    // it waits this long before it is tried again through another server.
    Duration::from_secs(2)
}

fn default_retry_for() -> Duration {
    Duration::from_secs(30)
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl JetStreamSettings {
    /// Settings for `servers` with no credentials and the defaults.
    pub fn new(servers: Vec<String>) -> Self {
        JetStreamSettings {
            servers,
            user: None,
            password: None,
            token: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            replicas: default_replicas(),
            request_timeout: default_request_timeout(),
            retry_for: default_retry_for(),
        }
    }

    /// What is wrong with these settings, if anything, said for the operator.
    pub fn problem(&self) -> Option<String> {
        if self.servers.is_empty() {
            return Some("[storage.jetstream] servers: name at least one server".into());
        }
        if !(1..=5).contains(&self.replicas) {
            return Some(format!(
                "[storage.jetstream] replicas = {}: JetStream allows 1 to 5",
                self.replicas
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Some("[storage.jetstream] user and password go together".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Some("[storage.jetstream] tls_cert and tls_key go together".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        let ok = JetStreamSettings::new(vec!["nats://127.0.0.1:4222".into()]);
        assert_eq!(ok.replicas, 3);
        assert_eq!(ok.problem(), None);
        let none = JetStreamSettings::new(vec![]);
        assert!(none.problem().unwrap().contains("servers"));
        let six = JetStreamSettings {
            replicas: 6,
            ..ok.clone()
        };
        assert!(six.problem().unwrap().contains("replicas = 6"));
        let half = JetStreamSettings {
            user: Some("u".into()),
            ..ok.clone()
        };
        assert!(half.problem().unwrap().contains("user and password"));
    }

    #[test]
    fn parsed_from_toml() {
        let s: JetStreamSettings =
            toml::from_str("servers = [\"nats://a:4222\"]\nreplicas = 1\nrequest_timeout = 250\n")
                .unwrap();
        assert_eq!(s.replicas, 1);
        assert_eq!(s.request_timeout, Duration::from_millis(250));
        let err = toml::from_str::<JetStreamSettings>("servers = []\nreplica = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("replica"), "{err}");
    }
}
