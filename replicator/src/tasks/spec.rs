//! Replication tasks: what flows where. A task names source and target regions, a topic
//! pattern (glob), a direction, an optional rename at the target (`{topic}` stands for the
//! source name), an optional tag filter, a start position, rate limits and a state.
//! Every region loads the same task list; a region pulls for the flows that target it and
//! serves the flows that leave it.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use broker::sql::SqlFilter;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use topology::Topology;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    #[default]
    OneWay,
    TwoWay,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    Running,
    Paused,
}

/// A task as written in the config file (and, later, the console API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub sources: Vec<String>,
    pub targets: Vec<String>,
    /// A glob over topic names: `orders`, `orders.*`, `*`.
    pub topics: String,
    #[serde(default)]
    pub direction: Direction,
    /// The topic name at the target; `{topic}` is replaced by the source topic's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<String>,
    /// Only records carrying one of these tags are replicated; the others leave offset gaps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A SQL92 filter over the records' properties and tag (`broker::sql`), instead of or
    /// beside `tags` (a record must pass both); the others leave offset gaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// `earliest`, `latest`, or an RFC 3339 time: where a sub-log the target holds nothing
    /// of starts.
    #[serde(default = "default_start")]
    pub start: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "broker::json::optional_integer"
    )]
    pub max_records_per_s: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "broker::json::optional_integer"
    )]
    pub max_bytes_per_s: Option<u32>,
    #[serde(default)]
    pub state: TaskState,
    /// Disaster recovery (see [`Dr`]): only the primary accepts produce on the task's
    /// topics, the other regions of the task hold read-only copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dr: Option<Dr>,
    /// Consumer groups (a glob over group names) whose committed cursors for the task's
    /// topics sync among the task's regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<String>,
}

/// The failover state of a DR task. Replication of a DR task flows both ways between all
/// of its regions (a standby's own sub-logs stay empty while it is read-only), so whatever
/// was written on either side reaches the other: a failback finds everything, and records
/// an old primary acknowledged just before a forced failover still arrive when it returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dr {
    /// The region that accepts produce on the task's topics.
    pub primary: String,
    /// Raised by every promotion; produce refusals name it.
    #[serde(default, deserialize_with = "broker::json::integer")]
    pub epoch: u64,
    /// Set while a planned failover drains the primary: the region being promoted. No
    /// region accepts produce on the task's topics meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoting: Option<String>,
}

impl TaskSpec {
    /// A running one-way task from the start of every sub-log, without rename, filter or
    /// limits; set the other fields on the result.
    pub fn new(name: &str, sources: &[&str], targets: &[&str], topics: &str) -> Self {
        let regions = |list: &[&str]| list.iter().map(|r| r.to_string()).collect();
        TaskSpec {
            name: name.to_string(),
            sources: regions(sources),
            targets: regions(targets),
            topics: topics.to_string(),
            direction: Direction::OneWay,
            rename: None,
            tags: Vec::new(),
            sql: None,
            start: default_start(),
            max_records_per_s: None,
            max_bytes_per_s: None,
            state: TaskState::Running,
            dr: None,
            groups: None,
        }
    }

    /// Every region the task names, sources first.
    pub fn regions(&self) -> impl Iterator<Item = &String> {
        self.sources
            .iter()
            .chain(self.targets.iter().filter(|t| !self.sources.contains(t)))
    }

    pub fn involves(&self, region: &str) -> bool {
        self.regions().any(|r| r == region)
    }
}

fn default_start() -> String {
    "earliest".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    Timestamp(i64),
}

/// A task refused at load, naming the task and the field.
#[derive(Debug, thiserror::Error)]
#[error("task {task} (tasks[{index}]): field `{field}`: {message}")]
pub struct TaskError {
    pub index: usize,
    pub task: String,
    pub field: &'static str,
    pub message: String,
}

/// A validated task, ready to use.
pub struct Task {
    pub spec: TaskSpec,
    pattern: glob::Pattern,
    groups: Option<glob::Pattern>,
    sql: Option<SqlFilter>,
    pub start: Start,
    limiter: Option<Limiter>,
}

struct Limiter {
    records: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
    bytes: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("spec", &self.spec).finish()
    }
}

impl Task {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn running(&self) -> bool {
        self.spec.state == TaskState::Running
    }

    /// Whether the task carries `topic`: a topic its pattern matches, and for a DR task
    /// also the held copies of such a topic's delay messages (`%HELD%<topic>`), so that
    /// the region it promotes can fire them (`broker/src/broker/held.rs`).
    pub fn matches(&self, topic: &str) -> bool {
        self.pattern.matches(topic)
            || (self.spec.dr.is_some()
                && broker::broker::held::base_topic(topic).is_some_and(|t| self.pattern.matches(t)))
    }

    /// Whether data flows from `source` to `target` under this task.
    pub fn flows(&self, source: &str, target: &str) -> bool {
        let has = |list: &[String], r: &str| list.iter().any(|x| x == r);
        if self.spec.dr.is_some() {
            return source != target && self.spec.involves(source) && self.spec.involves(target);
        }
        source != target
            && ((has(&self.spec.sources, source) && has(&self.spec.targets, target))
                || (self.spec.direction == Direction::TwoWay
                    && has(&self.spec.targets, source)
                    && has(&self.spec.sources, target)))
    }

    /// Whether group `group`'s cursors sync under this task.
    pub fn syncs_group(&self, group: &str) -> bool {
        self.groups.as_ref().is_some_and(|p| p.matches(group))
    }

    /// Why this region may not accept produce on `topic` under this task, if it may not.
    pub fn refuses_produce(&self, region: &str, topic: &str) -> Option<String> {
        let dr = self.spec.dr.as_ref()?;
        if !self.matches(topic) || !self.spec.involves(region) {
            return None;
        }
        let name = &self.spec.name;
        let epoch = dr.epoch;
        if let Some(to) = &dr.promoting {
            return Some(format!(
                "topic {topic} is switching to region {to} (planned failover of DR task {name}, epoch {epoch}); retry there"
            ));
        }
        (dr.primary != region).then(|| {
            format!(
                "region {region} holds a read-only copy of topic {topic} (DR task {name}, epoch {epoch}); produce in the primary, region {}",
                dr.primary
            )
        })
    }

    /// The topic name at the target for a source topic.
    pub fn target_topic(&self, source_topic: &str) -> String {
        match &self.spec.rename {
            Some(template) => template.replace("{topic}", source_topic),
            None => source_topic.to_string(),
        }
    }

    /// Whether `record` passes the task's filters (its tags and its SQL filter).
    pub fn passes(&self, record: &broker::Record) -> bool {
        let tag = record.tag.as_deref();
        let tagged =
            self.spec.tags.is_empty() || tag.is_some_and(|t| self.spec.tags.iter().any(|x| x == t));
        tagged
            && self
                .sql
                .as_ref()
                .is_none_or(|f| f.matches(tag, &record.properties))
    }

    /// Whether the task filters records at all.
    pub fn filters(&self) -> bool {
        !self.spec.tags.is_empty() || self.sql.is_some()
    }

    /// Whether the task has a rate limit.
    pub fn limited(&self) -> bool {
        self.limiter.is_some()
    }

    /// Waits until the task's rate limits allow `records` records of `bytes` bytes.
    pub async fn throttle(&self, records: u64, bytes: u64) {
        let Some(limiter) = &self.limiter else { return };
        for (limit, amount) in [(&limiter.records, records), (&limiter.bytes, bytes)] {
            let Some((limiter, burst)) = limit else {
                continue;
            };
            let mut left = amount;
            while left > 0 {
                let step = left.min(u64::from(burst.get())) as u32;
                let n = NonZeroU32::new(step).expect("step > 0");
                // `step` never exceeds the burst, so the limiter can always grant it.
                let _ = limiter.until_n_ready(n).await;
                left -= u64::from(step);
            }
        }
    }
}

/// Burst of a rate limit: a twentieth of a second's worth (at least 1), so measured rates
/// stay within a few percent of the limit over a few seconds.
fn limiter(per_second: u32) -> (DefaultDirectRateLimiter, NonZeroU32) {
    let rate = NonZeroU32::new(per_second).expect("validated > 0");
    let burst = NonZeroU32::new((per_second / 20).max(1)).expect("> 0");
    let quota = Quota::per_second(rate).allow_burst(burst);
    (RateLimiter::direct(quota), burst)
}

/// Validates tasks against the deployment's topology: known regions, and a chain of links
/// from every source to every target it flows to.
pub fn validate(specs: &[TaskSpec], topology: &Topology) -> Result<Vec<Arc<Task>>, TaskError> {
    let regions: Vec<String> = topology.regions().map(str::to_string).collect();
    let mut tasks = Vec::new();
    let mut names = BTreeSet::new();
    // (target region, constant target topic) -> task, to find rename collisions.
    let mut constant_targets: BTreeMap<(String, String), String> = BTreeMap::new();
    for (index, spec) in specs.iter().enumerate() {
        let fail = |field: &'static str, message: String| TaskError {
            index,
            task: if spec.name.is_empty() {
                "(unnamed)".into()
            } else {
                format!("\"{}\"", spec.name)
            },
            field,
            message,
        };
        broker::names::validate("task", &spec.name).map_err(|e| fail("name", e.to_string()))?;
        if !names.insert(spec.name.clone()) {
            return Err(fail("name", "another task has this name".into()));
        }
        for (field, list) in [("sources", &spec.sources), ("targets", &spec.targets)] {
            if list.is_empty() {
                return Err(fail(field, "must name at least one region".into()));
            }
            for region in list {
                if !regions.contains(region) {
                    return Err(fail(
                        field,
                        format!(
                            "unknown region \"{region}\" (known: {})",
                            regions.join(", ")
                        ),
                    ));
                }
            }
        }
        if spec.sources == spec.targets && spec.sources.len() == 1 {
            return Err(fail(
                "targets",
                "a task needs a target other than its source".into(),
            ));
        }
        if spec.topics.trim().is_empty() {
            return Err(fail("topics", "the topic pattern is empty".into()));
        }
        let pattern = glob::Pattern::new(&spec.topics)
            .map_err(|e| fail("topics", format!("invalid pattern: {e}")))?;
        let wildcard = spec.topics.contains(['*', '?', '[']);
        if let Some(rename) = &spec.rename {
            if spec.direction == Direction::TwoWay {
                return Err(fail(
                    "rename",
                    "a two-way task cannot rename: the renamed topic would flow back under another name".into(),
                ));
            }
            let sample = rename.replace("{topic}", "t");
            broker::names::validate("topic", &sample)
                .map_err(|e| fail("rename", format!("not a valid topic name: {e}")))?;
            if wildcard && !rename.contains("{topic}") {
                return Err(fail(
                    "rename",
                    format!(
                        "pattern \"{}\" matches many topics but every one would be renamed to \"{rename}\"; use {{topic}}",
                        spec.topics
                    ),
                ));
            }
            if !rename.contains("{topic}") {
                for target in &spec.targets {
                    let key = (target.clone(), rename.clone());
                    if let Some(other) = constant_targets.insert(key, spec.name.clone()) {
                        return Err(fail(
                            "rename",
                            format!(
                                "task \"{other}\" also renames into \"{rename}\" in region {target}"
                            ),
                        ));
                    }
                }
            }
        }
        let start = parse_start(&spec.start).map_err(|m| fail("start", m))?;
        for (field, rate) in [
            ("max_records_per_s", spec.max_records_per_s),
            ("max_bytes_per_s", spec.max_bytes_per_s),
        ] {
            if rate == Some(0) {
                return Err(fail(
                    field,
                    "must be greater than 0 (omit it for no limit)".into(),
                ));
            }
        }
        for tag in &spec.tags {
            if tag.is_empty() {
                return Err(fail("tags", "a tag is empty".into()));
            }
        }
        for source in &spec.sources {
            for target in &spec.targets {
                if source != target && !topology.connected(source, target) {
                    return Err(fail(
                        "targets",
                        format!(
                            "region \"{target}\" cannot be reached from \"{source}\": no chain of [[links]] joins them"
                        ),
                    ));
                }
            }
        }
        if let Some(dr) = &spec.dr {
            if spec.direction != Direction::OneWay {
                return Err(fail(
                    "direction",
                    "a DR task is one-way: its primary writes, the other regions are standbys (replication still flows back for failback)".into(),
                ));
            }
            if spec.rename.is_some() || !spec.tags.is_empty() || spec.sql.is_some() {
                return Err(fail(
                    if spec.rename.is_some() {
                        "rename"
                    } else if spec.sql.is_some() {
                        "sql"
                    } else {
                        "tags"
                    },
                    "a DR task copies its topics whole and under the same names, so that a standby can take over".into(),
                ));
            }
            for (field, region) in [
                ("dr.primary", Some(&dr.primary)),
                ("dr.promoting", dr.promoting.as_ref()),
            ] {
                if let Some(region) = region
                    && !spec.involves(region)
                {
                    return Err(fail(
                        field,
                        format!("region \"{region}\" is not one of the task's sources or targets"),
                    ));
                }
            }
        }
        let groups = match &spec.groups {
            Some(p) => Some(
                glob::Pattern::new(p)
                    .map_err(|e| fail("groups", format!("invalid pattern: {e}")))?,
            ),
            None => None,
        };
        let limiter =
            (spec.max_records_per_s.is_some() || spec.max_bytes_per_s.is_some()).then(|| Limiter {
                records: spec.max_records_per_s.map(limiter),
                bytes: spec.max_bytes_per_s.map(limiter),
            });
        let sql = match &spec.sql {
            Some(text) => Some(SqlFilter::parse(text).map_err(|e| fail("sql", e.to_string()))?),
            None => None,
        };
        tasks.push(Arc::new(Task {
            spec: spec.clone(),
            pattern,
            groups,
            sql,
            start,
            limiter,
        }));
    }
    Ok(tasks)
}

fn parse_start(text: &str) -> Result<Start, String> {
    match text {
        "earliest" | "" => Ok(Start::Earliest),
        "latest" => Ok(Start::Latest),
        other => humantime::parse_rfc3339_weak(other)
            .map(|t| {
                let ms = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_millis();
                Start::Timestamp(ms as i64)
            })
            .map_err(|e| format!("\"{other}\" is not earliest, latest or an RFC 3339 time ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec::new("t", &["a"], &["b"], "orders")
    }

    fn regions() -> Topology {
        let spec = topology::TopologySpec::mesh(&["a", "b", "c"]);
        Topology::new(&spec, &Default::default(), "c").unwrap()
    }

    fn refusal(specs: &[TaskSpec]) -> TaskError {
        validate(specs, &regions()).expect_err("refused")
    }

    #[test]
    fn a_target_without_a_chain_of_links_is_refused() {
        let mut spec = topology::TopologySpec::mesh(&["a", "b", "c"]);
        spec.links.retain(|l| !l.joins("c"));
        let topology = Topology::new(&spec, &Default::default(), "c").unwrap();
        let err = validate(&[TaskSpec::new("t", &["a"], &["b", "c"], "x")], &topology).unwrap_err();
        assert_eq!(
            err.to_string(),
            "task \"t\" (tasks[0]): field `targets`: region \"c\" cannot be reached from \"a\": no chain of [[links]] joins them"
        );
    }

    #[test]
    fn invalid_tasks_name_the_field() {
        let unknown = refusal(&[TaskSpec {
            targets: vec!["mars".into()],
            ..spec()
        }]);
        assert_eq!(unknown.field, "targets");
        assert!(
            unknown.to_string().contains("unknown region \"mars\""),
            "{unknown}"
        );

        let empty = refusal(&[TaskSpec {
            topics: " ".into(),
            ..spec()
        }]);
        assert_eq!(empty.field, "topics");

        let zero = refusal(&[TaskSpec {
            max_bytes_per_s: Some(0),
            ..spec()
        }]);
        assert_eq!(zero.field, "max_bytes_per_s");

        let many_to_one = refusal(&[TaskSpec {
            topics: "orders.*".into(),
            rename: Some("all".into()),
            ..spec()
        }]);
        assert_eq!(many_to_one.field, "rename");

        let collision = refusal(&[
            TaskSpec {
                rename: Some("x".into()),
                ..spec()
            },
            TaskSpec {
                name: "u".into(),
                topics: "payments".into(),
                rename: Some("x".into()),
                ..spec()
            },
        ]);
        assert_eq!((collision.field, collision.index), ("rename", 1));

        let start = refusal(&[TaskSpec {
            start: "yesterday".into(),
            ..spec()
        }]);
        assert_eq!(start.field, "start");

        let duplicate = refusal(&[spec(), spec()]);
        assert_eq!(duplicate.field, "name");
    }

    #[test]
    fn flows_follow_the_direction() {
        let one = &validate(&[spec()], &regions()).unwrap()[0];
        assert!(one.flows("a", "b"));
        assert!(!one.flows("b", "a"));
        let two = &validate(
            &[TaskSpec {
                direction: Direction::TwoWay,
                ..spec()
            }],
            &regions(),
        )
        .unwrap()[0];
        assert!(two.flows("b", "a"));
        assert!(!two.flows("a", "c"));
    }

    #[test]
    fn a_dr_task_carries_the_held_copies_of_its_topics() {
        let dr = TaskSpec {
            dr: Some(Dr {
                primary: "a".into(),
                epoch: 0,
                promoting: None,
            }),
            ..spec()
        };
        let tasks = validate(
            &[dr, TaskSpec::new("plain", &["a"], &["b"], "orders")],
            &regions(),
        )
        .unwrap();
        assert!(tasks[0].matches("%HELD%orders"));
        assert!(!tasks[0].matches("%HELD%payments"));
        assert!(
            !tasks[1].matches("%HELD%orders"),
            "only a DR task promotes a region"
        );
    }

    #[test]
    fn rename_and_filter() {
        let task = &validate(
            &[TaskSpec {
                topics: "orders.*".into(),
                rename: Some("dr.{topic}".into()),
                tags: vec!["eu".into()],
                ..spec()
            }],
            &regions(),
        )
        .unwrap()[0];
        assert!(task.matches("orders.x") && !task.matches("payments"));
        assert_eq!(task.target_topic("orders.x"), "dr.orders.x");
        let tagged = |tag: Option<&str>, amount: &str| broker::Record {
            tag: tag.map(str::to_string),
            properties: [("amount".to_string(), amount.to_string())].into(),
            ..Default::default()
        };
        assert!(task.passes(&tagged(Some("eu"), "1")));
        assert!(!task.passes(&tagged(Some("us"), "1")) && !task.passes(&tagged(None, "1")));
        let both = &validate(
            &[TaskSpec {
                tags: vec!["eu".into()],
                sql: Some("amount > 100".into()),
                ..spec()
            }],
            &regions(),
        )
        .unwrap()[0];
        assert!(both.passes(&tagged(Some("eu"), "150")));
        assert!(
            !both.passes(&tagged(Some("eu"), "50")),
            "both filters apply"
        );
        assert!(!both.passes(&tagged(Some("us"), "150")));
        let bad = refusal(&[TaskSpec {
            sql: Some("amount >".into()),
            ..spec()
        }]);
        assert_eq!(bad.field, "sql", "{bad}");
        assert!(bad.to_string().contains("offset 8"), "{bad}");
    }
}
