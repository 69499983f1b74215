//! Failover and failback as state transitions of a DR task's record, run against a
//! [`Host`] (the replicator, or a fake one in the tests below).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::observe::{OriginRpo, SubLogStatus, rpo_by_origin};
use crate::tasks::{ChangeError, Dr, TaskRecord, TaskSpec};

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

/// What a failover needs of the node it runs in: the task records and status.
pub(crate) trait Host {
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
fn dr_record(host: &(impl Host + ?Sized), task: &str) -> Result<(TaskRecord, Dr), FailoverError> {
    let record = host
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
    host: &(impl Host + ?Sized),
    task: &str,
    change: impl Fn(&Dr) -> Result<Option<Dr>, FailoverError>,
) -> Result<TaskRecord, FailoverError> {
    let mut attempts = 0;
    loop {
        let (record, dr) = dr_record(host, task)?;
        let Some(new) = change(&dr)? else {
            return Ok(record);
        };
        let spec = TaskSpec {
            dr: Some(new),
            ..record.spec.clone()
        };
        match host.put(spec, record.version) {
            Err(ChangeError::Conflict { .. }) if attempts < 10 => attempts += 1,
            other => return Ok(other?),
        }
    }
}

/// Promotes `host.region()` for `task` (see the module documentation).
pub(crate) async fn failover(
    host: &(impl Host + ?Sized),
    task: &str,
    mode: FailoverMode,
    timeout: Duration,
) -> Result<FailoverReport, FailoverError> {
    let me = host.region().to_string();
    let (record, dr) = dr_record(host, task)?;
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
            let rpo = rpo_by_origin(&host.lag_of(task));
            let switched = change_dr(host, task, |dr| {
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
            change_dr(host, task, |dr| {
                not_yet_primary(dr)?;
                Ok(Some(Dr {
                    primary: dr.primary.clone(),
                    epoch: dr.epoch + 1,
                    promoting: Some(me.clone()),
                }))
            })?;
            if let Err(reason) = caught_up(host, &record.spec, timeout).await {
                // Lift the fence: the primary keeps its role (unless another change won).
                change_dr(host, task, |dr| {
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
            let rpo = rpo_by_origin(&host.lag_of(task));
            let switched = change_dr(host, task, |dr| {
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
    host: &(impl Host + ?Sized),
    spec: &TaskSpec,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut quiet_since: Option<Instant> = None;
    loop {
        let unreachable: Vec<&String> = spec
            .regions()
            .filter(|r| *r != host.region() && !host.reachable(r))
            .collect();
        let status = host.lag_of(&spec.name);
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
                if since.elapsed() >= host.quiet_period() {
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
    host: &(impl Host + ?Sized),
    task: &str,
    timeout: Duration,
) -> Result<FailoverReport, FailoverError> {
    let (record, _) = dr_record(host, task)?;
    let home = record.spec.sources[0].clone();
    if home != host.region() {
        return Err(FailoverError::NotHome {
            task: task.into(),
            home,
        });
    }
    failover(host, task, FailoverMode::Planned, timeout).await
}
