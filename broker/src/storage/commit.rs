//! The group commit of a partition: what a partition shares with its committer task, and
//! the committer itself.
//!
//! An append writes to the page cache under the partition lock, then calls
//! [`Shared::ensure_committer`] and waits for the durable watermark. The committer is a task
//! of its own, at most one per partition, started by the first write that finds none
//! running and ending when everything written is durable: it fsyncs every file written
//! since the last fsync and raises the watermark past every append written before the
//! fsync began, so appends that arrive together share one fsync. Because the committer,
//! not the waiter, raises the watermark, a write whose waiter went away still becomes
//! visible at once. A failed fsync fences the partition; it is never retried.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::arrival::RETIRED;
use super::partition::Inner;

/// What the partition shares with its committer task.
pub(super) struct Shared {
    pub(super) topic: String,
    pub(super) index: u32,
    pub(super) inner: Mutex<Inner>,
    /// Held while an fsync runs (by the committer, or by shutdown): no other commit may
    /// raise the watermark over files an fsync is still writing.
    pub(super) sync_lock: tokio::sync::Mutex<()>,
    /// Arrival sequence below which everything is durable.
    pub(super) durable: watch::Sender<u64>,
}

impl Shared {
    /// The error of a write refused because the partition is fenced for `reason`.
    pub(super) fn fenced(&self, reason: String) -> crate::error::BrokerError {
        crate::error::BrokerError::Fenced {
            topic: self.topic.clone(),
            partition: self.index,
            reason,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the files inconsistent (recovery
        // handles any prefix), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the committer unless one is running. Needs a Tokio runtime.
    pub(super) fn ensure_committer(shared: &Arc<Shared>) {
        let start = {
            let mut inner = shared.lock();
            let pending = inner.arrival.end_seq() > *shared.durable.borrow();
            pending && !std::mem::replace(&mut inner.committing, true)
        };
        if start {
            // Not tracked: it ends by itself once everything written is durable (or the
            // partition is fenced), and shutdown waits for it through `sync_lock`.
            tokio::spawn(Shared::commit(shared.clone()));
        }
    }

    /// The committer: fsyncs what was written until nothing is left that is not durable.
    async fn commit(shared: Arc<Shared>) {
        loop {
            let commit = shared.sync_lock.lock().await;
            let (files, arrival, upto) = {
                let mut inner = shared.lock();
                let upto = inner.arrival.end_seq();
                if inner.fenced.is_some() || upto <= *shared.durable.borrow() {
                    inner.committing = false;
                    drop(inner);
                    // Waiters re-check the fence.
                    shared.durable.send_modify(|_| {});
                    return;
                }
                (
                    std::mem::take(&mut inner.dirty),
                    inner.arrival.file().clone(),
                    upto,
                )
            };
            // The files are fsynced at once, each on its own blocking thread: a commit
            // costs the slowest fsync, not their sum.
            let mut syncs: Vec<tokio::task::JoinHandle<std::io::Result<()>>> = files
                .into_iter()
                .map(|file| {
                    tokio::task::spawn_blocking(move || match file.sync() {
                        Ok(()) => Ok(()),
                        // Removed since it was written (retention of a sealed segment,
                        // which was fsynced when sealed, or a retired incarnation):
                        // nothing to keep.
                        Err(e) if e.is_not_found() => Ok(()),
                        Err(e) => Err(std::io::Error::other(e)),
                    })
                })
                .collect();
            syncs.push(tokio::task::spawn_blocking(move || arrival.sync_data()));
            let mut synced = Ok(());
            for sync in syncs {
                match sync.await {
                    Ok(result) => synced = synced.and(result),
                    // The runtime is going away (the node stops or was killed): whatever
                    // was not fsynced is recovered from disk at the next start.
                    Err(join) if join.is_cancelled() => return,
                    Err(join) => synced = synced.and(Err(std::io::Error::other(join))),
                }
            }
            match synced {
                Ok(()) => shared.raise_watermark(upto),
                Err(e) => {
                    // The page cache's state after a failed fsync is unknown: never retry.
                    let reason = format!("fsync failed: {e}");
                    tracing::error!(event = "partition_fenced", topic = %shared.topic, partition = shared.index, %reason, "partition fenced");
                    shared.lock().fenced = Some(reason);
                }
            }
            drop(commit);
        }
    }

    /// Raises the per-sub-log durable ends and then the watermark to `upto`: everything
    /// written before it is durable.
    /// Both move under the partition lock, so a reader never sees one without the other.
    pub(super) fn raise_watermark(&self, upto: u64) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let from = *self.durable.borrow();
        for seq in from.max(inner.arrival.first_seq())..upto {
            if let Some(entry) = inner.arrival.get(seq).filter(|e| e.origin != RETIRED) {
                let end = &mut inner.durable_ends[usize::from(entry.origin)];
                *end = (*end).max(entry.last + 1);
            }
        }
        self.durable
            .send_modify(|durable| *durable = (*durable).max(upto));
    }
}
