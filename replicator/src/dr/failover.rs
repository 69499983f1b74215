//! Failover and failback as state transitions of a DR task's record, run against a
//! [`Host`] (the replicator, or a fake one in the tests below).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::observe::{OriginRpo, SubLogStatus, rpo_by_origin};
use crate::tasks::{ChangeError, Dr, TaskRecord, TaskSpec};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
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
    /// Delay messages another region held and had not fired, now held here
    /// (`broker/src/broker/held.rs`).
    #[serde(default)]
    pub adopted_delay_messages: usize,
}

/// What keeps a region from holding everything the other regions of a task hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotCaughtUp {
    #[error("no route to {0:?}")]
    Unreachable(Vec<String>),
    #[error("the source end of {0} sub-logs is not known yet")]
    UnknownEnds(usize),
    #[error("{0} records not yet received")]
    Lagging(u64),
}

/// What is still missing in `region` for the task `spec`, given which regions it can reach
/// and the status of the task's sub-logs from other origins: `None` when it holds
/// everything known to exist.
pub(crate) fn not_caught_up(
    region: &str,
    spec: &TaskSpec,
    reachable: impl Fn(&str) -> bool,
    status: &[SubLogStatus],
) -> Option<NotCaughtUp> {
    let unreachable: Vec<String> = spec
        .regions()
        .filter(|r| *r != region && !reachable(r))
        .cloned()
        .collect();
    let unknown = status.iter().filter(|s| s.source_end.is_none()).count();
    let lag: u64 = status.iter().map(|s| s.lag_records).sum();
    if !unreachable.is_empty() {
        Some(NotCaughtUp::Unreachable(unreachable))
    } else if unknown > 0 {
        Some(NotCaughtUp::UnknownEnds(unknown))
    } else if lag > 0 {
        Some(NotCaughtUp::Lagging(lag))
    } else {
        None
    }
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
        reason: NotCaughtUp,
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
        adopted_delay_messages: 0,
    })
}

/// Waits until every other region of the task is reachable and every sub-log of the task
/// from another origin is caught up (source end known, nothing missing), and it stays so
/// for the quiet period; on timeout, says what was still missing.
async fn caught_up(
    host: &(impl Host + ?Sized),
    spec: &TaskSpec,
    timeout: Duration,
) -> Result<(), NotCaughtUp> {
    let deadline = Instant::now() + timeout;
    let mut quiet_since: Option<Instant> = None;
    loop {
        let status = host.lag_of(&spec.name);
        let missing = not_caught_up(host.region(), spec, |r| host.reachable(r), &status);
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A region's task record and status, with scripted conflicts and interference.
    struct FakeHost {
        region: String,
        record: Mutex<TaskRecord>,
        /// Puts refused as version conflicts (another region changed the task meanwhile)
        /// before one is taken.
        conflicts: Mutex<u32>,
        lag: Vec<SubLogStatus>,
        reachable: bool,
        /// While waiting to catch up, another region promotes itself.
        superseded_by: Option<String>,
        /// Every `dr` section stored, in order.
        stored: Mutex<Vec<Dr>>,
    }

    fn host(region: &str, primary: &str) -> FakeHost {
        let mut spec = TaskSpec::new("dr", &["a"], &["b"], "orders");
        spec.dr = Some(Dr {
            primary: primary.into(),
            epoch: 1,
            promoting: None,
        });
        FakeHost {
            region: region.into(),
            record: Mutex::new(TaskRecord {
                spec,
                version: 3,
                changed_by: "a".into(),
                deleted: false,
                by: None,
                admin: false,
                seal: None,
            }),
            conflicts: Mutex::new(0),
            lag: Vec::new(),
            reachable: true,
            superseded_by: None,
            stored: Mutex::new(Vec::new()),
        }
    }

    fn lagging(records: u64) -> SubLogStatus {
        SubLogStatus {
            task: "dr".into(),
            topic: "orders".into(),
            partition: 0,
            origin: "a".into(),
            source: Some("a".into()),
            link_up: true,
            source_end: Some(100),
            local_end: 100 - records,
            lag_records: records,
            lag_bytes: records * 10,
            lag_seconds: 1.5,
            records_per_s: 0.0,
            applied_records: 0,
            applied_bytes: 0,
            last_error: None,
            stalled: false,
        }
    }

    impl FakeHost {
        fn dr(&self) -> Dr {
            self.record.lock().unwrap().spec.dr.clone().unwrap()
        }
    }

    impl Host for FakeHost {
        fn region(&self) -> &str {
            &self.region
        }

        fn record(&self, task: &str) -> Option<TaskRecord> {
            let record = self.record.lock().unwrap().clone();
            (record.spec.name == task).then_some(record)
        }

        fn put(&self, spec: TaskSpec, version: u64) -> Result<TaskRecord, ChangeError> {
            let mut record = self.record.lock().unwrap();
            let mut conflicts = self.conflicts.lock().unwrap();
            if *conflicts > 0 {
                *conflicts -= 1;
                record.version += 1;
            }
            if version != record.version {
                return Err(ChangeError::Conflict {
                    name: spec.name.clone(),
                    current: record.version,
                    given: version,
                });
            }
            self.stored.lock().unwrap().push(spec.dr.clone().unwrap());
            *record = TaskRecord {
                spec,
                version: version + 1,
                changed_by: self.region.clone(),
                deleted: false,
                by: None,
                admin: false,
                seal: None,
            };
            Ok(record.clone())
        }

        fn lag_of(&self, _task: &str) -> Vec<SubLogStatus> {
            if let Some(other) = &self.superseded_by {
                let mut record = self.record.lock().unwrap();
                let dr = record.spec.dr.as_mut().unwrap();
                if dr.promoting.as_deref() != Some(other) {
                    dr.promoting = Some(other.clone());
                    dr.epoch += 1;
                    record.version += 1;
                }
            }
            self.lag.clone()
        }

        fn quiet_period(&self) -> Duration {
            Duration::ZERO
        }

        fn reachable(&self, _region: &str) -> bool {
            self.reachable
        }
    }

    const WAIT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_planned_failover_fences_then_switches_once_caught_up() {
        let b = host("b", "a");
        let report = failover(&b, "dr", FailoverMode::Planned, WAIT)
            .await
            .unwrap();
        let fenced = Dr {
            primary: "a".into(),
            epoch: 2,
            promoting: Some("b".into()),
        };
        let switched = Dr {
            primary: "b".into(),
            epoch: 2,
            promoting: None,
        };
        assert_eq!(*b.stored.lock().unwrap(), [fenced, switched.clone()]);
        assert_eq!(b.dr(), switched);
        assert_eq!((report.previous.as_str(), report.epoch), ("a", 2));
        assert!(report.rpo.is_empty());
    }

    #[tokio::test]
    async fn a_planned_failover_that_does_not_catch_up_lifts_the_fence() {
        let mut b = host("b", "a");
        b.lag = vec![lagging(5)];
        let error = failover(&b, "dr", FailoverMode::Planned, WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, FailoverError::TimedOut { primary, reason: NotCaughtUp::Lagging(5), .. } if primary == "a"),
            "{error}"
        );
        let dr = b.dr();
        assert_eq!((dr.primary.as_str(), dr.promoting), ("a", None));
        let mut unreachable = host("b", "a");
        unreachable.reachable = false;
        let error = failover(&unreachable, "dr", FailoverMode::Planned, WAIT)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("no route to"), "{error}");
    }

    #[test]
    fn what_is_missing_comes_in_order_routes_then_ends_then_records() {
        let spec = TaskSpec::new("dr", &["a"], &["b", "c"], "orders");
        let up = |_: &str| true;
        assert_eq!(not_caught_up("b", &spec, up, &[]), None);
        let mut unknown = lagging(5);
        unknown.source_end = None;
        let status = [lagging(5), unknown];
        assert_eq!(
            not_caught_up("b", &spec, |r| r != "c", &status),
            Some(NotCaughtUp::Unreachable(vec!["c".into()]))
        );
        assert_eq!(
            not_caught_up("b", &spec, up, &status),
            Some(NotCaughtUp::UnknownEnds(1))
        );
        assert_eq!(
            not_caught_up("b", &spec, up, &status[..1]),
            Some(NotCaughtUp::Lagging(5))
        );
    }

    #[tokio::test]
    async fn a_forced_failover_switches_now_and_reports_what_was_missing() {
        let mut b = host("b", "a");
        b.lag = vec![lagging(5)];
        let report = failover(&b, "dr", FailoverMode::Forced, WAIT)
            .await
            .unwrap();
        assert_eq!(
            b.dr(),
            Dr {
                primary: "b".into(),
                epoch: 2,
                promoting: None
            }
        );
        assert_eq!(report.rpo.len(), 1);
        assert_eq!((report.rpo[0].records, report.rpo[0].bytes), (5, 50));
    }

    #[tokio::test]
    async fn conflicting_changes_are_retried_then_given_up() {
        let b = host("b", "a");
        *b.conflicts.lock().unwrap() = 3;
        failover(&b, "dr", FailoverMode::Forced, WAIT)
            .await
            .unwrap();
        assert_eq!(b.dr().primary, "b");
        let b = host("b", "a");
        *b.conflicts.lock().unwrap() = 100;
        let error = failover(&b, "dr", FailoverMode::Forced, WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(error, FailoverError::Change(ChangeError::Conflict { .. })),
            "{error}"
        );
        assert_eq!(b.dr().primary, "a");
    }

    #[tokio::test]
    async fn a_failover_superseded_meanwhile_switches_nothing() {
        let mut b = host("b", "a");
        b.superseded_by = Some("c".into());
        let error = failover(&b, "dr", FailoverMode::Planned, WAIT)
            .await
            .unwrap_err();
        assert!(matches!(error, FailoverError::Superseded { .. }), "{error}");
        assert_eq!(b.dr().primary, "a");
    }

    #[tokio::test]
    async fn failovers_that_make_no_sense_are_refused() {
        let a = host("a", "a");
        let error = failover(&a, "dr", FailoverMode::Planned, WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(error, FailoverError::AlreadyPrimary { .. }),
            "{error}"
        );
        let z = host("z", "a");
        let error = failover(&z, "dr", FailoverMode::Forced, WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(error, FailoverError::NotInvolved { .. }),
            "{error}"
        );
        let error = failback(&host("b", "a"), "dr", WAIT).await.unwrap_err();
        assert!(
            matches!(error, FailoverError::NotHome { ref home, .. } if home == "a"),
            "{error}"
        );
        let error = failover(&host("b", "a"), "other", FailoverMode::Forced, WAIT)
            .await
            .unwrap_err();
        assert!(matches!(error, FailoverError::NotFound(_)), "{error}");
    }

    #[tokio::test]
    async fn failback_returns_the_task_to_its_first_source() {
        let a = host("a", "b");
        let report = failback(&a, "dr", WAIT).await.unwrap();
        assert_eq!(
            (report.promoted.as_str(), report.previous.as_str()),
            ("a", "b")
        );
        assert_eq!(a.dr().primary, "a");
    }
}
