//! Reading a partition as one stream: its sub-logs merged in arrival order, from a vector
//! cursor, never past the durable watermark.
//!
//! Per origin, arrival entries only move forward, so a record `(origin, offset)` has been
//! consumed exactly when `offset < cursor[origin]`. A read starts at the earliest arrival
//! entry that still holds an unconsumed record of some origin and skips consumed records,
//! so the same cursor gives the same next record in every region that holds it (with
//! records of different origins in that region's own arrival order).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::partition::Partition;
use super::segment::SegmentFile;
use crate::cursor::Cursor;
use crate::error::{BrokerError, Result};
use crate::record::StoredRecord;
use crate::storage::store::{BoxFuture, PartitionRead, PartitionStore, RecordFilter};

/// Entries planned per read call; bounds the time the partition lock is held.
const MAX_ENTRIES_PER_READ: usize = 512;

/// The result of one read call.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub records: Vec<StoredRecord>,
    /// Everything durable at the time of the call was read.
    pub caught_up: bool,
}

/// Where the next batch of an origin starts, to skip the index lookup on sequential reads.
struct Hint {
    file: Arc<SegmentFile>,
    position: u64,
    next_offset: u64,
}

struct Planned {
    seq: u64,
    origin: String,
    /// The sub-log's incarnation: the cursor's position of another one does not apply.
    incarnation: u64,
    target: u64,
    last: u64,
    location: Option<super::sublog::Location>,
}

pub struct PartitionReader {
    partition: Arc<Partition>,
    cursor: Cursor,
    filter: RecordFilter,
    next_seq: Option<u64>,
    /// The arrival index's generation `next_seq` belongs to.
    generation: u64,
    durable: watch::Receiver<u64>,
    hints: HashMap<String, Hint>,
}

impl PartitionReader {
    /// A reader from `cursor` (an origin missing from it is read from its start), delivering
    /// only records `filter` admits.
    pub fn new(partition: Arc<Partition>, cursor: Cursor, filter: RecordFilter) -> Self {
        let durable = partition.subscribe_durable();
        PartitionReader {
            partition,
            cursor,
            filter,
            next_seq: None,
            generation: 0,
            durable,
            hints: HashMap::new(),
        }
    }

    /// The position after everything read (or skipped by the tag filter) so far.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    /// Reads durable records past the cursor until about `max_bytes` of batches were read.
    /// Blocking file I/O (page cache reads).
    pub fn read(&mut self, max_bytes: usize) -> Result<ReadOutcome> {
        self.partition.is_open()?;
        let durable = *self.durable.borrow_and_update();
        let (plan, scanned_to, generation) = self.plan(durable);
        self.generation = generation;
        let mut outcome = ReadOutcome::default();
        let mut bytes = 0usize;
        let mut next_seq = scanned_to;
        for item in &plan {
            if bytes >= max_bytes {
                next_seq = item.seq;
                break;
            }
            let Some(location) = &item.location else {
                // Removed by retention while the cursor pointed into it: move past it.
                self.cursor
                    .advance_in(&item.origin, item.incarnation, item.last);
                continue;
            };
            if !self.read_entry(item, location, max_bytes, &mut bytes, &mut outcome)? {
                // The entry goes on past this segment or past the budget: plan it again.
                next_seq = item.seq;
                break;
            }
        }
        self.next_seq = Some(next_seq);
        outcome.caught_up = next_seq >= durable;
        Ok(outcome)
    }

    /// Reads the batches of one arrival entry from `item.target` on, within the segment
    /// `location` and the byte budget. An entry is usually one batch; below the index's
    /// floor (see `arrival`) it covers an origin's older batches, possibly across segments
    /// and gaps. Returns whether the whole entry was read.
    fn read_entry(
        &mut self,
        item: &Planned,
        location: &super::sublog::Location,
        max_bytes: usize,
        bytes: &mut usize,
        outcome: &mut ReadOutcome,
    ) -> Result<bool> {
        let mut position = match self.hints.get(&item.origin) {
            Some(h) if Arc::ptr_eq(&h.file, &location.file) && h.next_offset == item.target => {
                h.position
            }
            _ => location.position,
        };
        let from = self.cursor.next_offset_in(&item.origin, item.incarnation);
        while position < location.segment_size {
            let batch = match location
                .file
                .read_batch(position, crate::batch::MAX_BATCH_ON_DISK)
            {
                Ok(batch) => batch,
                // Retention removed the segment after it was located (its descriptor had
                // been closed): plan the entry again from what is held now (an entry below
                // the index's floor may go on in later segments that are still there).
                Err(e)
                    if e.is_not_found() && self.partition.removed(&item.origin, &location.file) =>
                {
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            let header = *batch.header();
            position += header.total_len as u64;
            if header.last_offset() < item.target {
                continue;
            }
            if header.base_offset > item.last {
                // Nothing of the entry is left past the target.
                self.cursor
                    .advance_in(&item.origin, item.incarnation, item.last);
                return Ok(true);
            }
            *bytes += header.total_len;
            for (offset, record) in batch.records() {
                if offset >= from && self.filter.admits(&record) {
                    outcome.records.push(StoredRecord {
                        origin: item.origin.clone(),
                        offset,
                        record,
                    });
                }
            }
            self.cursor
                .advance_in(&item.origin, item.incarnation, header.last_offset());
            self.hints.insert(
                item.origin.clone(),
                Hint {
                    file: location.file.clone(),
                    position,
                    next_offset: header.last_offset() + 1,
                },
            );
            if header.last_offset() >= item.last {
                return Ok(true);
            }
            if *bytes >= max_bytes {
                return Ok(false);
            }
        }
        // The segment ended inside the entry: the rest is in later segments (the cursor
        // moved past this one, so the entry's next plan locates the next).
        Ok(false)
    }

    /// Looks up, under the partition lock, where the next entries' batches are.
    fn plan(&self, durable: u64) -> (Vec<Planned>, u64, u64) {
        let cursor = &self.cursor;
        self.partition.with_inner(|arrival, sublogs| {
            // After a coalescing, sequence numbers below the floor moved: start from the
            // cursor again.
            let next_seq = self
                .next_seq
                .filter(|_| arrival.generation() == self.generation);
            let mut seq = next_seq
                .unwrap_or_else(|| {
                    sublogs
                        .iter()
                        .enumerate()
                        .filter_map(|(id, s)| {
                            arrival.first_seq_reaching(
                                id as u16,
                                cursor.next_offset_in(s.origin(), s.incarnation()),
                            )
                        })
                        .min()
                        .unwrap_or_else(|| arrival.end_seq())
                })
                .max(arrival.first_seq());
            let mut plan = Vec::new();
            while seq < durable && plan.len() < MAX_ENTRIES_PER_READ {
                let Some(entry) = arrival.get(seq) else { break };
                if entry.origin == super::arrival::RETIRED {
                    seq += 1;
                    continue;
                }
                let sublog = &sublogs[usize::from(entry.origin)];
                let next = cursor.next_offset_in(sublog.origin(), sublog.incarnation());
                if entry.last >= next {
                    // Retention may have removed the front of an entry that covers several
                    // batches (below the index's floor); what is left is still read.
                    let target = entry.base.max(next).max(sublog.start_offset());
                    plan.push(Planned {
                        seq,
                        origin: sublog.origin().to_string(),
                        incarnation: sublog.incarnation(),
                        target,
                        last: entry.last,
                        location: (target <= entry.last)
                            .then(|| sublog.locate(target))
                            .flatten(),
                    });
                }
                seq += 1;
            }
            (plan, seq, arrival.generation())
        })
    }

    /// Waits until records past what was read are durable, or the partition closes.
    pub async fn wait_for_data(&mut self) -> Result<()> {
        loop {
            self.partition.is_open()?;
            let Some(next_seq) = self.next_seq else {
                return Ok(());
            };
            if *self.durable.borrow_and_update() > next_seq {
                return Ok(());
            }
            if self.durable.changed().await.is_err() {
                return Err(BrokerError::ShuttingDown);
            }
        }
    }
}

impl PartitionRead for PartitionReader {
    fn cursor(&self) -> &Cursor {
        PartitionReader::cursor(self)
    }

    fn partition(&self) -> &dyn PartitionStore {
        self.partition.as_ref()
    }

    fn read(&mut self, max_bytes: usize) -> Result<ReadOutcome> {
        PartitionReader::read(self, max_bytes)
    }

    fn wait_for_data(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(PartitionReader::wait_for_data(self))
    }
}
