//! Reading one origin sub-log as stored batches, for replication: whole batches, verified
//! (length and CRC) but not re-encoded, never past the sub-log's durable end.

use std::sync::Arc;

use tokio::sync::watch;

use super::partition::Partition;
use super::segment::SegmentFile;
use crate::batch::Batch;
use crate::error::{BrokerError, Result};
use crate::storage::store::{BoxFuture, SubLogRead};

pub struct SubLogReader {
    partition: Arc<Partition>,
    origin: String,
    next: u64,
    /// Where the batch holding `next` starts, when known from the previous read.
    hint: Option<(Arc<SegmentFile>, u64)>,
    durable: watch::Receiver<u64>,
}

impl SubLogReader {
    /// A reader of `origin`'s sub-log from the batch holding `from`.
    pub fn new(partition: Arc<Partition>, origin: &str, from: u64) -> Self {
        let durable = partition.subscribe_durable();
        SubLogReader {
            partition,
            origin: origin.to_string(),
            next: from,
            hint: None,
            durable,
        }
    }

    /// The offset the next read starts from.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Reads durable batches holding offsets from [`next_offset`](Self::next_offset) on,
    /// at most `max_bytes` of them (or the one batch, when it alone is larger); empty when
    /// caught up. When retention removed
    /// `next`, reading moves on to the oldest batch held (its base tells the caller).
    /// Blocking file I/O (page cache reads).
    pub fn read(&mut self, max_bytes: usize) -> Result<Vec<Batch>> {
        self.partition.is_open()?;
        self.durable.borrow_and_update();
        let Some((start, durable_end, location)) =
            self.partition.locate_in(&self.origin, self.next)
        else {
            return Ok(Vec::new());
        };
        if self.next < start {
            self.next = start;
            self.hint = None;
            return self.read(max_bytes);
        }
        let Some(location) = location.filter(|_| self.next < durable_end) else {
            return Ok(Vec::new());
        };
        let max_len = crate::batch::MAX_BATCH_ON_DISK;
        let mut position = match &self.hint {
            Some((file, position)) if Arc::ptr_eq(file, &location.file) => *position,
            _ => location.position,
        };
        let mut batches = Vec::new();
        let mut bytes = 0usize;
        while position < location.segment_size && self.next < durable_end && bytes < max_bytes {
            let batch = match location.file.read_batch(position, max_len) {
                Ok(batch) => batch,
                // Retention removed the segment after it was located (its descriptor had
                // been closed): start again from what is held now.
                Err(e)
                    if e.is_not_found() && self.partition.removed(&self.origin, &location.file) =>
                {
                    if !batches.is_empty() {
                        break;
                    }
                    self.hint = None;
                    return self.read(max_bytes);
                }
                Err(e) => return Err(e),
            };
            let header = *batch.header();
            if !batches.is_empty() && bytes + header.total_len > max_bytes {
                break;
            }
            position += header.total_len as u64;
            if header.last_offset() < self.next {
                continue;
            }
            self.next = header.last_offset() + 1;
            bytes += header.total_len;
            batches.push(batch);
        }
        self.hint = Some((location.file.clone(), position));
        Ok(batches)
    }

    /// Waits until the sub-log's durable end passes [`next_offset`](Self::next_offset), or
    /// the partition closes.
    pub async fn wait_for_data(&mut self) -> Result<()> {
        loop {
            self.partition.is_open()?;
            let durable_end = self
                .partition
                .locate_in(&self.origin, self.next)
                .map_or(0, |(_, durable_end, _)| durable_end);
            if durable_end > self.next {
                return Ok(());
            }
            if self.durable.changed().await.is_err() {
                return Err(BrokerError::ShuttingDown);
            }
        }
    }
}

impl SubLogRead for SubLogReader {
    fn next_offset(&self) -> u64 {
        SubLogReader::next_offset(self)
    }

    fn read(&mut self, max_bytes: usize) -> Result<Vec<Batch>> {
        SubLogReader::read(self, max_bytes)
    }

    fn wait_for_data(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(SubLogReader::wait_for_data(self))
    }
}
