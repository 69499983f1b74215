//! Readers of a JetStream partition behind the broker's seam: one origin's sub-log as
//! stored batches (replication, PoP), and the partition merged in arrival order from a
//! vector cursor (fetch). The arrival order is the stream's sequence: a merged read starts
//! at the earliest sequence holding a record some origin of the cursor has not consumed,
//! and skips what the cursor consumed, so the same cursor gives the same next record as it
//! does on the embedded engine. Reads block on the cluster (the seam's readers may block).

use std::sync::Arc;

use broker::batch::Batch;
use broker::cursor::Cursor;
use broker::error::{BrokerError, Result};
use broker::record::StoredRecord;
use broker::storage::ReadOutcome;
use broker::storage::store::{BoxFuture, PartitionRead, PartitionStore, RecordFilter, SubLogRead};
use tokio::sync::watch;

use crate::partition::JetStreamPartition;
use crate::sublog::Stored;

/// Batches asked of the cluster per request.
const CHUNK: usize = 64;

pub struct JetStreamSubLogReader {
    partition: Arc<JetStreamPartition>,
    origin: String,
    next: u64,
    durable: watch::Receiver<u64>,
}

impl JetStreamSubLogReader {
    pub fn new(partition: Arc<JetStreamPartition>, origin: &str, from: u64) -> Self {
        let durable = partition.subscribe_durable();
        JetStreamSubLogReader {
            partition,
            origin: origin.to_string(),
            next: from,
            durable,
        }
    }
}

impl SubLogRead for JetStreamSubLogReader {
    fn next_offset(&self) -> u64 {
        self.next
    }

    fn read(&mut self, max_bytes: usize) -> Result<Vec<Batch>> {
        self.partition.is_open()?;
        self.durable.borrow_and_update();
        let Some(held) = self.partition.held(&self.origin) else {
            return Ok(Vec::new());
        };
        if held.tail.end <= self.next {
            return Ok(Vec::new());
        }
        let logs = self.partition.logs().clone();
        let id = self.partition.id(&self.origin);
        let from = self.next;
        let stored = logs
            .engine()
            .clone()
            .run_fallible(async move { logs.read(&id, from, CHUNK).await })?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for Stored { batch, .. } in stored {
            // At most `max_bytes`, or the one batch when it alone is larger.
            let len = batch.header().total_len;
            if !out.is_empty() && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            out.push(batch);
        }
        if let Some(last) = out.last() {
            self.next = last.header().last_offset() + 1;
        }
        Ok(out)
    }

    fn wait_for_data(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            loop {
                self.partition.is_open()?;
                let end = self.partition.held(&self.origin).map_or(0, |h| h.tail.end);
                if end > self.next {
                    return Ok(());
                }
                if self.durable.changed().await.is_err() {
                    return Err(BrokerError::ShuttingDown);
                }
            }
        })
    }
}

pub struct JetStreamPartitionReader {
    partition: Arc<JetStreamPartition>,
    cursor: Cursor,
    filter: RecordFilter,
    /// The stream sequence the next read starts at, once known.
    next_sequence: Option<u64>,
    durable: watch::Receiver<u64>,
}

impl JetStreamPartitionReader {
    pub fn new(partition: Arc<JetStreamPartition>, cursor: Cursor, filter: RecordFilter) -> Self {
        let durable = partition.subscribe_durable();
        JetStreamPartitionReader {
            partition,
            cursor,
            filter,
            next_sequence: None,
            durable,
        }
    }

    /// The earliest stream sequence holding a record the cursor has not consumed, or past
    /// the stream's last when it consumed everything: asked of the cluster, origin by
    /// origin, not taken from what this node has heard (another node's batches may not
    /// have reached its follower yet, and a start past them would skip them).
    fn start_sequence(&self) -> Result<u64> {
        let partition = self.partition.clone();
        let cursor = self.cursor.clone();
        let logs = partition.logs().clone();
        let start = logs.engine().clone().run_fallible(async move {
            let (topic, incarnation, index) = (
                partition.topic().to_string(),
                partition.incarnation(),
                partition.index(),
            );
            // The stream's last sequence is read before the origins are listed: a batch
            // stored between the two is then either listed or past it. Read after the
            // listing, a first batch stored meanwhile was skipped (a consumer starting on
            // an empty partition as producers began lost the partition's first batches).
            let last = logs.last_sequence(&topic, incarnation).await?;
            let mut start = None::<u64>;
            for origin in logs.origins(&topic, incarnation, index).await? {
                let from = cursor.next_offset_in(&origin, partition.incarnation_of(&origin));
                let id = partition.id(&origin);
                if let Some(first) = logs.read(&id, from, 1).await?.first() {
                    start = Some(start.map_or(first.sequence, |s| s.min(first.sequence)));
                }
            }
            Ok(start.unwrap_or(last + 1))
        })?;
        Ok(start)
    }
}

impl PartitionRead for JetStreamPartitionReader {
    fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    fn partition(&self) -> &dyn PartitionStore {
        self.partition.as_ref()
    }

    fn read(&mut self, max_bytes: usize) -> Result<ReadOutcome> {
        self.partition.is_open()?;
        self.durable.borrow_and_update();
        let mut sequence = match self.next_sequence {
            Some(s) => s,
            None => self.start_sequence()?,
        };
        let mut outcome = ReadOutcome::default();
        let mut bytes = 0usize;
        loop {
            let logs = self.partition.logs().clone();
            let (topic, incarnation, index) = (
                self.partition.topic().to_string(),
                self.partition.incarnation(),
                self.partition.index(),
            );
            let arrivals = logs.engine().clone().run_fallible(async move {
                logs.arrivals(&topic, incarnation, index, sequence, CHUNK)
                    .await
            })?;
            let ended = arrivals.len() < CHUNK;
            for (origin, stored) in arrivals {
                let incarnation = self.partition.incarnation_of(&origin);
                let from = self.cursor.next_offset_in(&origin, incarnation);
                let header = *stored.batch.header();
                sequence = stored.sequence + 1;
                if header.last_offset() < from {
                    continue;
                }
                bytes += header.total_len;
                for (offset, record) in stored.batch.records() {
                    if offset >= from && self.filter.admits(&record) {
                        outcome.records.push(StoredRecord {
                            origin: origin.clone(),
                            offset,
                            record,
                        });
                    }
                }
                self.cursor
                    .advance_in(&origin, incarnation, header.last_offset());
                if bytes >= max_bytes {
                    self.next_sequence = Some(sequence);
                    return Ok(outcome);
                }
            }
            if ended {
                self.next_sequence = Some(sequence);
                outcome.caught_up = true;
                return Ok(outcome);
            }
        }
    }

    fn wait_for_data(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            loop {
                self.partition.is_open()?;
                let Some(next) = self.next_sequence else {
                    return Ok(());
                };
                if *self.durable.borrow_and_update() >= next {
                    return Ok(());
                }
                if self.durable.changed().await.is_err() {
                    return Err(BrokerError::ShuttingDown);
                }
            }
        })
    }
}
