//! The Rust client library of georouter's gRPC API, used by the CLI, the scenarios and the
//! tests. Wire types come from the `proto` crate and are re-exported as [`pb`].

use std::collections::BTreeMap;

pub use proto::v1 as pb;
use proto::v1::broker_client::BrokerClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// A client error: the server's status (with its stable code) or a transport failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Could not connect (transient: the broker may not be up yet).
    #[error("cannot connect to broker at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The broker refused the request; `code` is the stable georouter error code if any.
    #[error("{}{}", status.message(), code.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default())]
    Status {
        status: tonic::Status,
        code: Option<String>,
    },
    #[error(
        "the credential is not a valid header value (expected <access key>:<secret>, printable ASCII)"
    )]
    Credential,
    #[error("invalid broker address '{address}': {source}")]
    Address {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        let code = status
            .metadata()
            .get("georouter-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        ClientError::Status { status, code }
    }
}

impl ClientError {
    /// The georouter error code, when the broker sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The gRPC status code, when the broker answered.
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Largest message the client sends or accepts.
const MESSAGE_LIMIT: usize = 64 << 20;

/// A connection to one region's broker. Cheap to clone (one HTTP/2 channel).
#[derive(Clone)]
pub struct Client {
    inner: BrokerClient<InterceptedService<Channel, Credential>>,
}

/// What every request carries: `authorization: Bearer <access key>:<secret>`, if the
/// client has credentials.
#[derive(Clone)]
pub struct Credential(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Where a produce sends its records.
#[derive(Clone, Copy, Debug)]
pub enum Partitioning {
    Partition(u32),
    ByKey,
    RoundRobin,
}

impl Client {
    /// Connects to `address` (`HOST:PORT` or a URL) without credentials.
    pub async fn connect(address: &str) -> Result<Self> {
        Self::connect_as(address, None).await
    }

    /// Connects to `address` as the principal of `credential` (`<access key>:<secret>`).
    pub async fn connect_as(address: &str, credential: Option<&str>) -> Result<Self> {
        Self::connect_with(address, credential, None).await
    }

    /// Connects over TLS to `address` (its host is the name the certificate must carry),
    /// trusting the CA certificates of `ca_pem`, as the principal of `credential`.
    pub async fn connect_tls(
        address: &str,
        credential: Option<&str>,
        ca_pem: &[u8],
    ) -> Result<Self> {
        let host = address
            .trim_start_matches("https://")
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .trim_matches(['[', ']']);
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
            .domain_name(host);
        let url = if address.contains("://") {
            address.to_string()
        } else {
            format!("https://{address}")
        };
        Self::connect_with(&url, credential, Some(tls)).await
    }

    async fn connect_with(
        address: &str,
        credential: Option<&str>,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self> {
        let credential = match credential {
            None => Credential(None),
            Some(text) => Credential(Some(
                format!("Bearer {text}")
                    .parse()
                    .map_err(|_| ClientError::Credential)?,
            )),
        };
        let url = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let endpoint = Endpoint::from_shared(url)
            .map_err(|source| ClientError::Address {
                address: address.to_string(),
                source,
            })?
            .tcp_nodelay(true)
            // Large produce requests must not wait for HTTP/2 window updates.
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(32 << 20);
        let endpoint = match tls {
            Some(tls) => endpoint
                .tls_config(tls)
                .map_err(|source| ClientError::Address {
                    address: address.to_string(),
                    source,
                })?,
            None => endpoint,
        };
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                address: address.to_string(),
                source,
            })?;
        let inner = BrokerClient::with_interceptor(channel, credential)
            .max_decoding_message_size(MESSAGE_LIMIT)
            .max_encoding_message_size(MESSAGE_LIMIT);
        Ok(Client { inner })
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention: Option<pb::RetentionPolicy>,
    ) -> Result<pb::TopicInfo> {
        self.create_topic_of(name, partitions, retention, "normal")
            .await
    }

    /// Creates a topic carrying `message_type` messages (normal, fifo, delay, transaction).
    pub async fn create_topic_of(
        &self,
        name: &str,
        partitions: u32,
        retention: Option<pb::RetentionPolicy>,
        message_type: &str,
    ) -> Result<pb::TopicInfo> {
        let request = pb::CreateTopicRequest {
            name: name.to_string(),
            partitions,
            retention,
            message_type: message_type.to_string(),
        };
        Ok(self.inner.clone().create_topic(request).await?.into_inner())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.inner
            .clone()
            .delete_topic(pb::DeleteTopicRequest {
                name: name.to_string(),
            })
            .await?;
        Ok(())
    }

    pub async fn list_topics(&self) -> Result<Vec<pb::TopicInfo>> {
        Ok(self
            .inner
            .clone()
            .list_topics(pb::ListTopicsRequest {})
            .await?
            .into_inner()
            .topics)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<pb::TopicDescription> {
        Ok(self
            .inner
            .clone()
            .describe_topic(pb::DescribeTopicRequest {
                name: name.to_string(),
            })
            .await?
            .into_inner())
    }

    /// Produces records; returns their identities in order once they are durable.
    pub async fn produce(
        &self,
        topic: &str,
        records: Vec<pb::Record>,
        partitioning: Partitioning,
    ) -> Result<Vec<pb::RecordId>> {
        let request = produce_request(topic, records, partitioning);
        Ok(self.inner.clone().produce(request).await?.into_inner().ids)
    }

    /// Produces delay messages, held until `deliver_at_ms` (ms since the epoch); returns
    /// their recall handles, once durable.
    pub async fn produce_delayed(
        &self,
        topic: &str,
        records: Vec<pb::Record>,
        partitioning: Partitioning,
        deliver_at_ms: i64,
    ) -> Result<Vec<String>> {
        let request = pb::ProduceRequest {
            deliver_at_ms,
            ..produce_request(topic, records, partitioning)
        };
        Ok(self.inner.clone().produce(request).await?.into_inner().held)
    }

    /// Produces half messages of transactions; returns their transaction ids, once durable.
    pub async fn produce_transactional(
        &self,
        topic: &str,
        records: Vec<pb::Record>,
        partitioning: Partitioning,
    ) -> Result<Vec<String>> {
        let request = pb::ProduceRequest {
            transactional: true,
            ..produce_request(topic, records, partitioning)
        };
        Ok(self.inner.clone().produce(request).await?.into_inner().held)
    }

    /// Cancels a held delay message; whether it was still held.
    pub async fn recall(&self, topic: &str, handle: &str) -> Result<bool> {
        let request = pb::RecallRequest {
            topic: topic.to_string(),
            handle: handle.to_string(),
        };
        Ok(self
            .inner
            .clone()
            .recall(request)
            .await?
            .into_inner()
            .recalled)
    }

    /// Commits or rolls back a half message; whether it was held and is now ended.
    pub async fn end_transaction(
        &self,
        topic: &str,
        transaction_id: &str,
        commit: bool,
    ) -> Result<bool> {
        let request = pb::EndTransactionRequest {
            topic: topic.to_string(),
            transaction_id: transaction_id.to_string(),
            commit,
        };
        Ok(self
            .inner
            .clone()
            .end_transaction(request)
            .await?
            .into_inner()
            .ended)
    }

    /// Opens a fetch stream.
    pub async fn fetch(
        &self,
        request: pb::FetchRequest,
    ) -> Result<tonic::Streaming<pb::FetchResponse>> {
        Ok(self.inner.clone().fetch(request).await?.into_inner())
    }

    /// Reads everything currently durable from the start position (no follow).
    pub async fn fetch_all(
        &self,
        topic: &str,
        start: pb::StartPosition,
        cursors: Vec<pb::PartitionCursor>,
    ) -> Result<Fetched> {
        let request = pb::FetchRequest {
            topic: topic.to_string(),
            start: Some(start),
            cursors,
            ..Default::default()
        };
        let mut stream = self.fetch(request).await?;
        let mut fetched = Fetched::default();
        while let Some(response) = stream.message().await? {
            fetched.absorb(response);
        }
        Ok(fetched)
    }

    pub async fn commit(
        &self,
        group: &str,
        topic: &str,
        cursors: Vec<pb::PartitionCursor>,
    ) -> Result<()> {
        let request = pb::CommitCursorRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            cursors,
        };
        self.inner.clone().commit_cursor(request).await?;
        Ok(())
    }

    pub async fn group_cursors(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<pb::PartitionCursor>> {
        let request = pb::GroupCursorsRequest {
            group: group.to_string(),
            topic: topic.to_string(),
        };
        Ok(self
            .inner
            .clone()
            .group_cursors(request)
            .await?
            .into_inner()
            .cursors)
    }
}

/// Records and cursors gathered from fetch responses.
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: Vec<pb::FetchedRecord>,
    /// The latest cursor per partition.
    pub cursors: BTreeMap<u32, pb::Cursor>,
    pub end_of_stream: bool,
}

impl Fetched {
    pub fn absorb(&mut self, response: pb::FetchResponse) {
        self.records.extend(response.records);
        for pc in response.cursors {
            self.cursors
                .insert(pc.partition, pc.cursor.unwrap_or_default());
        }
        self.end_of_stream |= response.end_of_stream;
    }

    /// The cursors as a commit or fetch takes them.
    pub fn partition_cursors(&self) -> Vec<pb::PartitionCursor> {
        self.cursors
            .iter()
            .map(|(p, c)| pb::PartitionCursor {
                partition: *p,
                cursor: Some(c.clone()),
            })
            .collect()
    }
}

/// Start positions.
pub fn earliest() -> pb::StartPosition {
    pb::StartPosition {
        position: Some(pb::start_position::Position::Earliest(true)),
    }
}

pub fn latest() -> pb::StartPosition {
    pb::StartPosition {
        position: Some(pb::start_position::Position::Latest(true)),
    }
}

pub fn at_time(timestamp_ms: i64) -> pb::StartPosition {
    pb::StartPosition {
        position: Some(pb::start_position::Position::TimestampMs(timestamp_ms)),
    }
}

fn produce_request(
    topic: &str,
    records: Vec<pb::Record>,
    partitioning: Partitioning,
) -> pb::ProduceRequest {
    use pb::produce_request::Partitioning as P;
    let partitioning = Some(match partitioning {
        Partitioning::Partition(p) => P::Partition(p),
        Partitioning::ByKey => P::ByKey(true),
        Partitioning::RoundRobin => P::RoundRobin(true),
    });
    pb::ProduceRequest {
        topic: topic.to_string(),
        records,
        partitioning,
        ..Default::default()
    }
}
