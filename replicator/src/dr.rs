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
    /// Some sub-log's end at the origin was never advertised to this region: `records`
    /// and `bytes` cannot count what is missing there.
    #[serde(default)]
    pub unknown: bool,
    /// Offsets this region knew the origin's sub-logs to reach, summed (`records` is this
    /// minus `held`).
    #[serde(default)]
    pub known_end: u64,
    /// Offsets this region held of them, summed.
    #[serde(default)]
    pub held: u64,
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
        o.unknown |= s.source_end.is_none();
        o.known_end += s.source_end.map_or(s.local_end, |e| e.max(s.local_end));
        o.held += s.local_end;
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
        "planned failover of task {task} timed out after {waited:?}: {reason}; region {primary} stays the primary (use forced mode to switch anyway)"
    )]
    TimedOut {
        task: String,
        primary: String,
        waited: Duration,
        reason: String,
    },
    #[error(
        "task {task} changed during the failover and no longer promotes this region ({now}); nothing was switched"
    )]
    Superseded { task: String, now: String },
    #[error("a failover of task {0} is already running in this region; wait for its answer")]
    InProgress(String),
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
    /// Whether this region has a route to `region` now.
    fn reachable(&self, region: &str) -> bool;
}

/// The live record of DR task `task` and its `dr` section.
fn dr_record(
    catalog: &(impl Catalog + ?Sized),
    task: &str,
) -> Result<(TaskRecord, Dr), FailoverError> {
    let record = catalog
        .record(task)
        .filter(|r| !r.deleted)
        .ok_or_else(|| FailoverError::NotFound(task.into()))?;
    let dr = record
        .spec
        .dr
        .clone()
        .ok_or_else(|| FailoverError::NotDr(task.into()))?;
    Ok((record, dr))
}

/// Changes the task's `dr` section with `change` (given the current one): `Ok(None)` from
/// `change` leaves it as it is. A change made meanwhile elsewhere (a version conflict) is
/// re-read and `change` applied again.
fn change_dr(
    catalog: &(impl Catalog + ?Sized),
    task: &str,
    change: impl Fn(&Dr) -> Result<Option<Dr>, FailoverError>,
) -> Result<TaskRecord, FailoverError> {
    let mut attempts = 0;
    loop {
        let (record, dr) = dr_record(catalog, task)?;
        let Some(new) = change(&dr)? else {
            return Ok(record);
        };
        let spec = TaskSpec {
            dr: Some(new),
            ..record.spec.clone()
        };
        match catalog.put(spec, record.version) {
            Err(ChangeError::Conflict { .. }) if attempts < 10 => attempts += 1,
            other => return Ok(other?),
        }
    }
}

/// Promotes `catalog.region()` for `task` (see the module documentation).
pub(crate) async fn failover(
    catalog: &(impl Catalog + ?Sized),
    task: &str,
    mode: FailoverMode,
    timeout: Duration,
) -> Result<FailoverReport, FailoverError> {
    let me = catalog.region().to_string();
    let (record, dr) = dr_record(catalog, task)?;
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
    let started = Instant::now();
    // Refuses when this region became the primary meanwhile.
    let not_yet_primary = |dr: &Dr| {
        if dr.primary == me && dr.promoting.is_none() {
            return Err(FailoverError::AlreadyPrimary {
                task: task.into(),
                region: me.clone(),
                epoch: dr.epoch,
            });
        }
        Ok(())
    };
    let promoting_me = |dr: &Dr| dr.promoting.as_deref() == Some(me.as_str());
    let (switched, rpo) = match mode {
        FailoverMode::Forced => {
            let rpo = rpo_by_origin(&catalog.lag_of(task));
            let switched = change_dr(catalog, task, |dr| {
                not_yet_primary(dr)?;
                Ok(Some(Dr {
                    primary: me.clone(),
                    epoch: dr.epoch + 1,
                    promoting: None,
                }))
            })?;
            (switched, rpo)
        }
        FailoverMode::Planned => {
            change_dr(catalog, task, |dr| {
                not_yet_primary(dr)?;
                Ok(Some(Dr {
                    primary: dr.primary.clone(),
                    epoch: dr.epoch + 1,
                    promoting: Some(me.clone()),
                }))
            })?;
            if let Err(reason) = caught_up(catalog, &record.spec, timeout).await {
                // Lift the fence: the primary keeps its role (unless another change won).
                change_dr(catalog, task, |dr| {
                    Ok(promoting_me(dr).then(|| Dr {
                        promoting: None,
                        ..dr.clone()
                    }))
                })?;
                return Err(FailoverError::TimedOut {
                    task: task.into(),
                    primary: previous,
                    waited: started.elapsed(),
                    reason,
                });
            }
            let rpo = rpo_by_origin(&catalog.lag_of(task));
            let switched = change_dr(catalog, task, |dr| {
                if !promoting_me(dr) {
                    return Err(FailoverError::Superseded {
                        task: task.into(),
                        now: format!(
                            "primary {}, epoch {}, promoting {:?}",
                            dr.primary, dr.epoch, dr.promoting
                        ),
                    });
                }
                Ok(Some(Dr {
                    primary: me.clone(),
                    epoch: dr.epoch,
                    promoting: None,
                }))
            })?;
            (switched, rpo)
        }
    };
    let version = switched.version;
    let epoch = switched.spec.dr.as_ref().map_or(0, |d| d.epoch);
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

/// Waits until every other region of the task is reachable and every sub-log of the task
/// from another origin is caught up (source end known, nothing missing), and it stays so
/// for the quiet period; on timeout, says what was still missing.
async fn caught_up(
    catalog: &(impl Catalog + ?Sized),
    spec: &TaskSpec,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut quiet_since: Option<Instant> = None;
    loop {
        let unreachable: Vec<&String> = spec
            .regions()
            .filter(|r| *r != catalog.region() && !catalog.reachable(r))
            .collect();
        let status = catalog.lag_of(&spec.name);
        let unknown = status.iter().filter(|s| s.source_end.is_none()).count();
        let lag: u64 = status.iter().map(|s| s.lag_records).sum();
        let missing = if !unreachable.is_empty() {
            Some(format!("no route to {unreachable:?}"))
        } else if unknown > 0 {
            Some(format!(
                "the source end of {unknown} sub-logs is not known yet"
            ))
        } else if lag > 0 {
            Some(format!("{lag} records not yet received"))
        } else {
            None
        };
        match missing {
            None => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= catalog.quiet_period() {
                    return Ok(());
                }
            }
            Some(reason) => {
                quiet_since = None;
                if Instant::now() >= deadline {
                    return Err(reason);
                }
            }
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
    let (record, _) = dr_record(catalog, task)?;
    let home = record.spec.sources[0].clone();
    if home != catalog.region() {
        return Err(FailoverError::NotHome {
            task: task.into(),
            home,
        });
    }
    failover(catalog, task, FailoverMode::Planned, timeout).await
}
