//! Disaster recovery: DR tasks (`dr = { primary = "..." }`), the produce fence, failover
//! and failback, and the RPO per origin.
//!
//! - **Fence.** A region of a DR task accepts produce on the task's topics only while it
//!   is the task's primary and no planned failover is draining ([`Gate`], installed as the
//!   broker's write gate). The refusal names the primary and the epoch.
//! - **Failover** runs in the region to promote (its console). *Planned*: the task record
//!   gets `promoting = here` and a new epoch, so no region accepts produce; once this region
//!   holds everything the others advertise for the task (lag 0, held through a quiet period
//!   that covers an advertisement round and a round trip) it becomes the primary. If that
//!   does not happen in time the primary stays where it was. *Forced*: this region becomes
//!   the primary now; the report gives, per origin, what had not arrived (the realised RPO).
//! - **Failback** is a planned failover back to the task's first source.
//!
//! Task records travel to every region (`catalog`), so the fence follows the record. Data
//! of a DR task flows both ways between its regions, so nothing written on either side is
//! lost by a switch: records an old primary acknowledged before it learnt of a forced
//! failover still reach the new primary when the link returns, at their own offsets.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::catalog::{ChangeError, TaskRecord};
use crate::service::Shared;
use crate::status::SubLogStatus;
use crate::task::{Dr, TaskSpec};

/// The broker's write gate: refuses produce where a DR task says this region may not write.
pub(crate) struct Gate(pub Weak<Shared>);

impl broker::broker::WriteGate for Gate {
    fn refuses(&self, topic: &str) -> Option<String> {
        let shared = self.0.upgrade()?;
        shared
            .tasks()
            .iter()
            .find_map(|t| t.refuses_produce(&shared.region, topic))
    }
}

/// What this region has not yet received of one origin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OriginRpo {
    pub origin: String,
    pub records: u64,
    pub bytes: u64,
    /// Time since this region last held everything the origin's sub-logs were known to
    /// hold: an upper bound on the age of the oldest record not yet received.
    pub seconds: f64,
}

/// Per origin, from per-sub-log status (a sub-log pulled for several tasks counts once).
pub fn rpo_by_origin<'a>(status: impl IntoIterator<Item = &'a SubLogStatus>) -> Vec<OriginRpo> {
    let mut per_sub_log: BTreeMap<(&str, u32, &str), &SubLogStatus> = BTreeMap::new();
    for s in status {
        let key = (s.topic.as_str(), s.partition, s.origin.as_str());
        let keep = per_sub_log
            .get(&key)
            .is_none_or(|held| s.lag_records > held.lag_records);
        if keep {
            per_sub_log.insert(key, s);
        }
    }
    let mut origins: BTreeMap<String, OriginRpo> = BTreeMap::new();
    for ((_, _, origin), s) in per_sub_log {
        let o = origins
            .entry(origin.to_string())
            .or_insert_with(|| OriginRpo {
                origin: origin.to_string(),
                ..Default::default()
            });
        o.records += s.lag_records;
        o.bytes += s.lag_bytes;
        o.seconds = o.seconds.max(s.lag_seconds);
    }
    origins.into_values().collect()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Fence the primary, wait until this region has everything, then switch.
    #[default]
    Planned,
    /// Switch now; report what had not arrived.
    Forced,
}

/// What a failover did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailoverReport {
    pub task: String,
    pub mode: FailoverMode,
    pub promoted: String,
    pub previous: String,
    pub epoch: u64,
    /// The task record's version after the switch.
    pub version: u64,
    /// How long a planned failover waited for this region to catch up.
    pub waited_s: f64,
    /// Per origin, what this region had not received when it took over (planned: zeros).
    pub rpo: Vec<OriginRpo>,
}

#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("no task {0}")]
    NotFound(String),
    #[error("task {0} is not a DR task (it has no `dr` section)")]
    NotDr(String),
    #[error("region {region} is not one of task {task}'s regions")]
    NotInvolved { task: String, region: String },
    #[error("region {region} is already the primary of task {task} (epoch {epoch})")]
    AlreadyPrimary {
        task: String,
        region: String,
        epoch: u64,
    },
    #[error("failback returns task {task} to its first source, region {home}; run it there")]
    NotHome { task: String, home: String },
    #[error(
        "planned failover of task {task} timed out after {waited:?}: {lag_records} records not yet received; region {primary} stays the primary (use forced mode to switch anyway)"
    )]
    TimedOut {
        task: String,
        primary: String,
        waited: Duration,
        lag_records: u64,
    },
    #[error(transparent)]
    Change(#[from] ChangeError),
}

/// The steps of a failover, over the replicator's task catalog and status.
pub(crate) trait Catalog {
    fn region(&self) -> &str;
    fn record(&self, task: &str) -> Option<TaskRecord>;
    fn put(&self, spec: TaskSpec, version: u64) -> Result<TaskRecord, ChangeError>;
    /// Status of the task's sub-logs whose origin is another region.
    fn lag_of(&self, task: &str) -> Vec<SubLogStatus>;
    /// How long lag 0 must hold before a planned switch.
    fn quiet_period(&self) -> Duration;
}

/// Promotes `catalog.region()` for `task` (see the module documentation).
pub(crate) async fn failover(
    catalog: &(impl Catalog + ?Sized),
    task: &str,
    mode: FailoverMode,
    timeout: Duration,
) -> Result<FailoverReport, FailoverError> {
    let me = catalog.region().to_string();
    let record = catalog
        .record(task)
        .filter(|r| !r.deleted)
        .ok_or_else(|| FailoverError::NotFound(task.into()))?;
    let dr = record
        .spec
        .dr
        .clone()
        .ok_or_else(|| FailoverError::NotDr(task.into()))?;
    if !record.spec.involves(&me) {
        return Err(FailoverError::NotInvolved {
            task: task.into(),
            region: me,
        });
    }
    if dr.primary == me && dr.promoting.is_none() {
        return Err(FailoverError::AlreadyPrimary {
            task: task.into(),
            region: me,
            epoch: dr.epoch,
        });
    }
    let previous = dr.primary.clone();
    let with = |dr: Dr| TaskSpec {
        dr: Some(dr),
        ..record.spec.clone()
    };
    let started = Instant::now();
    let (version, epoch, rpo) = match mode {
        FailoverMode::Forced => {
            let rpo = rpo_by_origin(&catalog.lag_of(task));
            let epoch = dr.epoch + 1;
            let spec = with(Dr {
                primary: me.clone(),
                epoch,
                promoting: None,
            });
            let switched = catalog.put(spec, record.version)?;
            (switched.version, epoch, rpo)
        }
        FailoverMode::Planned => {
            let epoch = dr.epoch + 1;
            let fenced = catalog.put(
                with(Dr {
                    primary: previous.clone(),
                    epoch,
                    promoting: Some(me.clone()),
                }),
                record.version,
            )?;
            if let Err(lag_records) = caught_up(catalog, task, timeout).await {
                // Undo the fence: the primary keeps its role.
                catalog.put(
                    with(Dr {
                        primary: previous.clone(),
                        epoch,
                        promoting: None,
                    }),
                    fenced.version,
                )?;
                return Err(FailoverError::TimedOut {
                    task: task.into(),
                    primary: previous,
                    waited: started.elapsed(),
                    lag_records,
                });
            }
            let rpo = rpo_by_origin(&catalog.lag_of(task));
            let switched = catalog.put(
                with(Dr {
                    primary: me.clone(),
                    epoch,
                    promoting: None,
                }),
                fenced.version,
            )?;
            (switched.version, epoch, rpo)
        }
    };
    tracing::info!(%task, ?mode, promoted = %me, %previous, epoch, "failover done");
    Ok(FailoverReport {
        task: task.into(),
        mode,
        promoted: me,
        previous,
        epoch,
        version,
        waited_s: started.elapsed().as_secs_f64(),
        rpo,
    })
}

/// Waits until every sub-log of `task` from another origin is caught up (link up, source
/// end known, nothing missing) and stays so for the quiet period; `Err(lag)` on timeout.
async fn caught_up(
    catalog: &(impl Catalog + ?Sized),
    task: &str,
    timeout: Duration,
) -> Result<(), u64> {
    let deadline = Instant::now() + timeout;
    let mut quiet_since: Option<Instant> = None;
    loop {
        let status = catalog.lag_of(task);
        let lag: u64 = status.iter().map(|s| s.lag_records).sum();
        let done = status
            .iter()
            .all(|s| s.link_up && s.source_end.is_some() && s.lag_records == 0);
        if done {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= catalog.quiet_period() {
                return Ok(());
            }
        } else {
            quiet_since = None;
        }
        if Instant::now() >= deadline {
            return Err(lag.max(u64::from(!done)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Failback: a planned failover to the task's first source, run there.
pub(crate) async fn failback(
    catalog: &(impl Catalog + ?Sized),
    task: &str,
    timeout: Duration,
) -> Result<FailoverReport, FailoverError> {
    let record = catalog
        .record(task)
        .filter(|r| !r.deleted)
        .ok_or_else(|| FailoverError::NotFound(task.into()))?;
    let home = record.spec.sources[0].clone();
    if home != catalog.region() {
        return Err(FailoverError::NotHome {
            task: task.into(),
            home,
        });
    }
    failover(catalog, task, FailoverMode::Planned, timeout).await
}
