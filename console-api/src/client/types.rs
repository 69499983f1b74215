//! What the console API answers, as the client reads it. The shapes follow the handlers in
//! [`crate::api`] and `/api/v1/replication` in the crate root; task specs, task states and
//! failover reports are the replicator's own types.

use replicator::{OriginRpo, TaskSpec, TaskState};
use serde::{Deserialize, Serialize};

/// The error body of every refusal: `{"error": {"code", "message", "field"?}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable code: `NOT_FOUND`, `VERSION_CONFLICT`, `INVALID_TASK`, ...
    pub code: String,
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A task as the API shows it: its record and its status summed over its sub-logs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    /// The version a change must name in `If-Match`.
    pub version: u64,
    /// The region where this version was made.
    pub changed_by: String,
    pub spec: TaskSpec,
    pub state: TaskState,
    pub status: TaskStatus,
}

/// A consumer group's settings as the API shows them (`GET /api/v1/groups/{name}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub fifo: bool,
    pub max_attempts: u32,
    /// The version a change must name in `If-Match`.
    pub version: u64,
    /// The region where this version was made.
    pub changed_by: String,
}

/// The answer to a rewind: the cursor stored, and its epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewound {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub next: std::collections::BTreeMap<String, u64>,
    pub epoch: u64,
}

/// `GET /api/v1/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    pub groups: Vec<Group>,
}

/// `GET /api/v1/tasks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    pub tasks: Vec<Task>,
}

/// A task's lag and throughput in this region (`GET /api/v1/tasks/{name}/status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub lag_records: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub records_per_s: f64,
    pub last_error: Option<String>,
    pub sub_logs: Vec<SubLog>,
}

/// One sub-log a task pulls into this region (the replicator's own status type).
pub type SubLog = replicator::SubLogStatus;

/// A link to a configured neighbour, connected or not (the replicator's own type).
pub type Link = replicator::LinkStatus;

/// `GET /api/v1/links`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkList {
    pub links: Vec<Link>,
}

/// `GET /api/v1/regions`: this region first, then every region it has a route to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regions {
    /// The region whose console answered.
    pub this: String,
    pub regions: Vec<Region>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub name: String,
    /// The region whose console answered.
    pub this: bool,
    /// Whether a route leads there (absent for this region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// The neighbour data of that region is pulled from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
}

/// `GET /api/v1/topics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicList {
    pub topics: Vec<Topic>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub name: String,
    pub partitions: u32,
    pub retention: Retention,
    /// Per partition, what each origin's sub-log holds here.
    pub by_partition: Vec<PartitionOrigins>,
}

/// Retention limits; 0 is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub max_bytes: u64,
    pub max_age_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOrigins {
    pub partition: u32,
    pub origins: Vec<OriginExtent>,
}

/// One origin's sub-log of a partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginExtent {
    pub origin: String,
    pub start_offset: u64,
    /// Past the last durable record.
    pub end_offset: u64,
    pub bytes: u64,
}

/// How this region reaches another one (the replicator's own type).
pub type Route = replicator::RouteStatus;

/// `GET /api/v1/replication`: links, routes, every sub-log pulled and the RPO per origin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    /// Whether the node asked replicates for its region now (`false` on a node of a region
    /// of several while another holds the region's replication lease).
    #[serde(default)]
    pub replicating_here: Option<bool>,
    pub links: Vec<Link>,
    pub routes: Vec<Route>,
    pub sub_logs: Vec<SubLog>,
    pub rpo: Vec<OriginRpo>,
    /// Active-active groups: another origin's messages this region delivers now.
    #[serde(default)]
    pub takeovers: Vec<Takeover>,
}

/// A takeover in force: this region delivers `origin`'s messages of `group`.
pub use rocketmq::pop::owner::Takeover;
