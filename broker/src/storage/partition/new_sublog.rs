//! A sub-log's creation, on the first batch of an origin in a partition. Its directory and
//! first segment, its incarnation file, the origin's line in the arrival index's `origins`
//! file and the directory fsyncs (several milliseconds in all) run on the blocking pool,
//! one creation at a time per partition; the partition's lock is held only to publish the
//! new sub-log. A region receiving the first records of many sub-logs at once (a new
//! topic, a new task, the start of a run) so goes on serving every other partition instead
//! of stalling its async threads on fsyncs.
//!
//! The `origins` file and the in-memory list stay in the same order because creations are
//! serialized by `creating` and nothing else registers an origin while the partition is
//! open (opening registers the directories it finds, before anyone appends). A creation
//! runs as a task of its own to its end, so a caller that gives up midway never leaves an
//! origin written to the file but missing from memory (the next creation would write it
//! twice and shift every later origin's number at the next start).

use super::Partition;
use crate::error::{BrokerError, Result};
use crate::storage::arrival::record_origin;
use crate::storage::sublog::{SubLog, sync_dir};

impl Partition {
    /// The sub-log index of `origin`, creating the sub-log (of `incarnation`) on its first
    /// batch.
    pub(super) async fn sublog_for(&self, origin: &str, incarnation: u64) -> Result<usize> {
        if let Some(id) = self.existing_sublog(origin)? {
            return Ok(id);
        }
        let one_at_a_time = self.creating.clone().lock_owned().await;
        if let Some(id) = self.existing_sublog(origin)? {
            return Ok(id);
        }
        let logs = self.dir.join("logs");
        // The arrival index and its `origins` file sit in the partition's directory.
        let arrival_dir = self.dir.clone();
        let config = self.config.clone();
        let shared = self.shared.clone();
        let bell = self.bell.get().cloned();
        let name = origin.to_string();
        // A task of its own, so that a caller that gives up (a cancelled request) cannot
        // leave the files and the `origins` line written but the sub-log unpublished.
        let creation = tokio::spawn(async move {
            let _one_at_a_time = one_at_a_time;
            let dir = logs.join(&name);
            let files = name.clone();
            let sublog = tokio::task::spawn_blocking(move || -> Result<SubLog> {
                // Not `create_dir_all`: a topic deleted meanwhile (its directory moved
                // away) must not get its path back.
                let sublog = match std::fs::create_dir(&dir) {
                    Ok(()) => SubLog::create(dir, files.clone(), incarnation)?,
                    // Left by a creation a crash cut short: whatever it holds is opened.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let (mut sublog, _) = SubLog::open(dir, files.clone(), &config)?;
                        sublog.set_incarnation(incarnation)?;
                        sublog
                    }
                    Err(e) => return Err(BrokerError::io("create sub-log directory", &dir)(e)),
                };
                sync_dir(&logs)?;
                record_origin(&arrival_dir, &files)?;
                Ok(sublog)
            })
            .await
            .map_err(joined)??;
            let mut inner = shared.lock();
            if let Some(reason) = &inner.fenced {
                return Err(shared.fenced(reason.clone()));
            }
            let id = usize::from(inner.arrival.push_origin(&name));
            debug_assert_eq!(id, inner.sublogs.len());
            inner.durable_ends.push(sublog.next_offset());
            inner.sublogs.push(sublog);
            drop(inner);
            if let Some(bell) = bell {
                bell.send_modify(|v| *v += 1);
            }
            Ok(id)
        });
        let id = creation.await.map_err(joined)??;
        self.check_open()?;
        Ok(id)
    }

    /// The index of `origin`'s sub-log if it has one; an error if the partition is fenced
    /// (it takes no new sub-log).
    fn existing_sublog(&self, origin: &str) -> Result<Option<usize>> {
        let inner = self.lock();
        if let Some(i) = inner.arrival.origins().iter().position(|o| o == origin) {
            return Ok(Some(i));
        }
        match &inner.fenced {
            Some(reason) => Err(self.fenced(reason.clone())),
            None => Ok(None),
        }
    }
}

/// A creation task that did not finish: the runtime is going away, or it panicked.
fn joined(join: tokio::task::JoinError) -> BrokerError {
    if join.is_cancelled() {
        BrokerError::ShuttingDown
    } else {
        BrokerError::Io {
            action: "create sub-log",
            path: Default::default(),
            source: std::io::Error::other(join),
        }
    }
}
