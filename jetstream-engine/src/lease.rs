//! Leases on a region's duties that exactly one node may do at a time (firing delayed
//! messages, and next the replication work), held in the region's KV bucket under
//! `lease.<duty>` as `{holder, until_ms}`. A node takes a lease that is free or expired,
//! and renews its own, with compare-and-swap on the key's revision, so two nodes can never
//! both succeed from the same state; it renews every third of the lease's time and stops
//! the duty as soon as a renewal fails or the lease's time is past. Another node takes
//! over once the time is past: within one lease time of the holder's death.
//!
//! Times are wall-clock milliseconds: nodes of a region must keep their clocks within a
//! small fraction of the lease time of each other (NTP does), or two may briefly both
//! believe they hold it. What a duty writes stays safe even then: appends are fenced by
//! sequence (`crate::sublog`), and a delayed message is removed from the store as it fires.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, EngineError};

/// The record of a lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub holder: String,
    /// Ms since the epoch past which the lease is free.
    pub until_ms: u64,
}

/// What a node does about a lease, given its record now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Free or expired: take it.
    Take,
    /// Ours: renew it.
    Renew,
    /// Another node's, until then.
    Wait { until_ms: u64 },
}

/// The one rule of leases.
pub fn decide(now_ms: u64, current: Option<&LeaseRecord>, me: &str) -> Decision {
    match current {
        None => Decision::Take,
        Some(r) if r.holder == me => Decision::Renew,
        Some(r) if r.until_ms <= now_ms => Decision::Take,
        Some(r) => Decision::Wait {
            until_ms: r.until_ms,
        },
    }
}

pub(crate) fn now_ms() -> u64 {
    u64::try_from(broker::record::now_ms()).unwrap_or(0)
}

/// Lease `duty`'s key in the bucket.
pub(crate) fn key(duty: &str) -> String {
    format!("lease.{}", crate::names::token(duty))
}

/// The holder of `record` at `now_ms`, unless its time is past.
pub(crate) fn live_holder(record: LeaseRecord, now_ms: u64) -> Option<String> {
    (record.until_ms > now_ms).then_some(record.holder)
}

/// Lease `duty`'s key in the bucket, its entry, and the record the entry holds (none
/// when there is no entry, it was deleted, or it does not decode).
async fn read_lease(
    store: &kv::Store,
    duty: &str,
) -> Result<(String, Option<kv::Entry>, Option<LeaseRecord>), EngineError> {
    let key = key(duty);
    let entry = store
        .entry(key.as_str())
        .await
        .map_err(|e| EngineError::request(format!("lease {duty}"), e))?;
    let live = entry.as_ref().filter(|e| e.operation == kv::Operation::Put);
    let current = live.and_then(|e| serde_json::from_slice(&e.value).ok());
    Ok((key, entry, current))
}

fn encode(record: &LeaseRecord) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("a lease serializes"))
}

/// `attempt` within `bound`; one that takes longer is a failed request on lease `duty`.
async fn within<T>(
    bound: Duration,
    duty: &str,
    attempt: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    tokio::time::timeout(bound, attempt)
        .await
        .unwrap_or_else(|late| Err(EngineError::request(format!("lease {duty}"), late)))
}

/// Tries once to take or renew lease `duty` for `me` for `time`; the time it is held
/// until on success, `None` when another node holds it.
async fn try_hold(
    store: &kv::Store,
    duty: &str,
    me: &str,
    time: Duration,
) -> Result<Option<u64>, EngineError> {
    let what = || format!("lease {duty}");
    let (key, entry, current) = read_lease(store, duty).await?;
    let now = now_ms();
    let until_ms = now + u64::try_from(time.as_millis()).unwrap_or(u64::MAX / 2);
    match decide(now, current.as_ref(), me) {
        Decision::Wait { .. } => return Ok(None),
        Decision::Take | Decision::Renew => {}
    }
    let value = encode(&LeaseRecord {
        holder: me.to_string(),
        until_ms,
    });
    let written = match entry {
        // Written over exactly the revision read: a node that wrote since wins instead.
        Some(e) => store
            .update(key.as_str(), value, e.revision)
            .await
            .map(drop)
            .map_err(|e| {
                (
                    e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                    EngineError::request(what(), e),
                )
            }),
        None => store
            .create(key.as_str(), value)
            .await
            .map(drop)
            .map_err(|e| {
                (
                    e.kind() == kv::CreateErrorKind::AlreadyExists,
                    EngineError::request(what(), e),
                )
            }),
    };
    match written {
        Ok(()) => Ok(Some(until_ms)),
        Err((true, _)) => Ok(None),
        Err((false, e)) => Err(e),
    }
}

/// Whether a holder whose lease runs until `held_until` (ms) may go on with its duty now,
/// when its next renewal attempt will have ended within `next_attempt_ends`: only if the
/// lease outlasts that attempt, so that a holder that cannot renew stops before the lease
/// runs out and another node may take it.
pub fn keep_holding(held_until: u64, now_ms: u64, next_attempt_ends: Duration) -> bool {
    let within = u64::try_from(next_attempt_ends.as_millis()).unwrap_or(u64::MAX);
    held_until.saturating_sub(now_ms) > within
}

/// Asks a node's lease loop to give its lease up now and not to take it again for a while
/// (its duty cannot run here: another node should hold it).
#[derive(Clone, Debug)]
pub struct StepDown(tokio::sync::mpsc::Sender<Duration>);

impl StepDown {
    /// Releases the lease (if held) and stays away from it for `pause`.
    pub fn step_down(&self, pause: Duration) {
        let _ = self.0.try_send(pause);
    }
}

/// The next step-down request, or never once there can be none.
async fn step_down_asked(requests: &mut Option<tokio::sync::mpsc::Receiver<Duration>>) -> Duration {
    if let Some(r) = requests {
        if let Some(pause) = r.recv().await {
            return pause;
        }
        *requests = None;
    }
    std::future::pending().await
}

/// Holds lease `duty` for node `me` whenever it can, until `stop` (then releases it): the
/// receiver says whether this node holds it now; [`StepDown`] gives it up for a while.
pub fn hold_yielding(
    engine: &Engine,
    store: kv::Store,
    duty: &str,
    me: &str,
    time: Duration,
    stop: CancellationToken,
) -> (watch::Receiver<bool>, StepDown) {
    let (step_down, requests) = tokio::sync::mpsc::channel(1);
    let mut step_downs = Some(requests);
    let (tx, rx) = watch::channel(false);
    let (duty, me) = (duty.to_string(), me.to_string());
    engine.detach(async move {
        let mut held_until = 0u64;
        loop {
            let renew_every = time / 3;
            let attempt_bound = renew_every / 2;
            // An attempt that hangs (a server gone) must not keep the duty running past
            // the lease: it gets half a renewal period.
            match within(attempt_bound, &duty, try_hold(&store, &duty, &me, time)).await {
                Ok(Some(until)) => {
                    held_until = until;
                    set_held(&tx, true);
                }
                Ok(None) => {
                    held_until = 0;
                    set_held(&tx, false);
                }
                Err(e) => {
                    tracing::warn!(event = "lease_renewal_failed", duty = %duty, error = %e, "could not take or renew a lease; trying again");
                }
            }
            // Give the duty up before the lease's time is past, renewed or not.
            // Until the next attempt has ended: a renewal period, then the attempt.
            if held_until != 0 && !keep_holding(held_until, now_ms(), renew_every + attempt_bound) {
                held_until = 0;
                set_held(&tx, false);
            }
            tokio::select! {
                () = tokio::time::sleep(renew_every) => {}
                pause = step_down_asked(&mut step_downs) => {
                    set_held(&tx, false);
                    if held_until != 0 {
                        held_until = 0;
                        release_within(&store, &duty, &me, attempt_bound).await;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => return,
                    }
                }
                () = stop.cancelled() => {
                    set_held(&tx, false);
                    // Stopped, not dead: hand the duty over now rather than at expiry.
                    // The channel closes once it is released (or could not be).
                    if held_until != 0 {
                        release_within(&store, &duty, &me, attempt_bound).await;
                    }
                    return;
                }
            }
        }
    });
    (rx, StepDown(step_down))
}

/// Tells the duty whether this node holds its lease, when that changed.
fn set_held(tx: &watch::Sender<bool>, now: bool) {
    tx.send_if_modified(|held| std::mem::replace(held, now) != now);
}

/// [`release`] within `bound`; a failure is logged (the lease then expires in its time).
async fn release_within(store: &kv::Store, duty: &str, me: &str, bound: Duration) {
    if let Err(e) = within(bound, duty, release(store, duty, me)).await {
        tracing::warn!(event = "lease_renewal_failed", duty = %duty, error = %e, "could not release a lease; it expires in its time");
    }
}

/// Ends `me`'s lease on `duty` now (its time set to 0, compare-and-swap on the revision),
/// if `me` still holds it.
async fn release(store: &kv::Store, duty: &str, me: &str) -> Result<(), EngineError> {
    let (key, entry, current) = read_lease(store, duty).await?;
    let (Some(entry), Some(current)) = (entry, current) else {
        return Ok(());
    };
    if current.holder != me {
        return Ok(());
    }
    let value = encode(&LeaseRecord {
        holder: me.to_string(),
        until_ms: 0,
    });
    match store.update(key.as_str(), value, entry.revision).await {
        Ok(_) => Ok(()),
        // Taken meanwhile: nothing of ours to release.
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(()),
        Err(e) => Err(EngineError::request(format!("lease {duty}"), e)),
    }
}

/// Runs the duty `run` makes while `held` says this node holds its lease: started when
/// the lease is taken, cancelled (through the token it is given) when it is lost, and
/// again when taken again; until `stop`.
pub async fn run_while_held<F, Fut>(
    mut held: watch::Receiver<bool>,
    stop: CancellationToken,
    run: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        // Wait to hold it.
        loop {
            if *held.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = held.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
        }
        let duty = stop.child_token();
        let running = run(duty.clone());
        tokio::pin!(running);
        loop {
            tokio::select! {
                () = &mut running => break,
                changed = held.changed() => {
                    if changed.is_err() || !*held.borrow_and_update() {
                        duty.cancel();
                        running.as_mut().await;
                        break;
                    }
                }
                () = stop.cancelled() => {
                    duty.cancel();
                    running.as_mut().await;
                    return;
                }
            }
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, until_ms: u64) -> LeaseRecord {
        LeaseRecord {
            holder: holder.into(),
            until_ms,
        }
    }

    #[test]
    fn a_holder_that_cannot_renew_stops_before_its_lease_runs_out() {
        let every = Duration::from_millis(1000);
        assert!(keep_holding(3000, 0, every), "just renewed");
        assert!(
            keep_holding(3000, 1500, every),
            "a renewal missed, time left"
        );
        assert!(
            !keep_holding(3000, 2000, every),
            "the next renewal would come when the lease runs out: stop now"
        );
        assert!(!keep_holding(3000, 2500, every));
        assert!(!keep_holding(3000, 4000, every), "expired");
    }

    #[test]
    fn a_free_or_expired_lease_is_taken_and_ours_renewed() {
        assert_eq!(decide(100, None, "a"), Decision::Take);
        assert_eq!(decide(100, Some(&lease("b", 100)), "a"), Decision::Take);
        assert_eq!(decide(100, Some(&lease("a", 150)), "a"), Decision::Renew);
        assert_eq!(decide(100, Some(&lease("a", 50)), "a"), Decision::Renew);
        assert_eq!(
            decide(100, Some(&lease("b", 150)), "a"),
            Decision::Wait { until_ms: 150 }
        );
    }
}
