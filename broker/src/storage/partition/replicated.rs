//! Appending batches replicated from another origin: offsets kept, idempotent, gaps
//! refused or allowed, overlaps refused, and a held sub-log of another incarnation of the
//! topic retired or the run refused (see [`crate::incarnation`]).

use super::Partition;
use crate::batch::Batch;
use crate::error::{BrokerError, Result};
use crate::incarnation::Meeting;
use crate::names;

/// What `append_replicated` did with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicatedAppend {
    /// Stored, covering `[base, last]`.
    Appended { base: u64, last: u64 },
    /// Every offset of the batch lies below the sub-log's end — held, or inside an earlier
    /// gap the sub-log accepted (offsets a filter or retention skipped, never stored);
    /// nothing was written.
    AlreadyHeld,
}

/// Whether `append_replicated` may accept a batch that starts past the sub-log's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapPolicy {
    /// A gap is loss: refuse it.
    Refuse,
    /// The gap is intended (records filtered out by a task, or a start past the origin's
    /// beginning).
    Allow,
}

/// What `append_replicated_run` did with a run of batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicatedRun {
    /// Batches stored.
    pub appended: usize,
    /// Batches whose offsets were all held already.
    pub already_held: usize,
    /// Records in the stored batches.
    pub records: u64,
    /// Bytes of the stored batches.
    pub bytes: u64,
    /// The sub-log's end after the run (durable).
    pub end_offset: u64,
    /// The incarnation of the sub-log this run replaced (the origin re-created the topic).
    pub replaced: Option<u64>,
}

impl Partition {
    /// Appends verified batches replicated from `origin` in order, keeping their offsets,
    /// with one wait for durability for the whole run. Idempotent: a batch whose offsets
    /// are all held is skipped. A batch may be larger than this region's `max_batch_bytes`
    /// (a produce limit), up to the format's limit. A batch starting past the end is
    /// refused unless `gap` allows it; one that overlaps the end is refused. When a batch
    /// is refused, the batches before it are kept (and made durable) and the refusal is
    /// returned. The records are of `incarnation` of the origin's topic (0: unknown). When the sub-log held here is of another
    /// incarnation, [`incarnation::meet`](crate::incarnation::meet) decides: a newer one
    /// retires the held sub-log and starts from scratch (reported in the run), an older one
    /// is refused with `stale-incarnation`; the two are never merged.
    pub async fn append_replicated_run_in(
        &self,
        origin: &str,
        incarnation: u64,
        batches: Vec<Batch>,
        gap: GapPolicy,
    ) -> Result<ReplicatedRun> {
        self.check_open()?;
        names::validate("region", origin)?;
        if origin == self.local_origin {
            return Err(BrokerError::OwnOrigin {
                origin: origin.to_string(),
            });
        }
        // Bounded by the format, not by this region's `max_batch_bytes`: that setting limits
        // what is produced here; an origin with a larger one wrote batches that must still
        // replicate (the link's frame limit bounds what arrives).
        let max_len = crate::batch::MAX_BATCH_ON_DISK;
        let mut run = ReplicatedRun::default();
        let id = self.sublog_for(origin, incarnation).await?;
        let (refused, wait_for) = {
            let mut inner = self.lock();
            let held = inner.sublogs[id].incarnation();
            match crate::incarnation::meet(held, incarnation) {
                Meeting::Same => {}
                Meeting::Adopt => inner.sublogs[id].set_incarnation(incarnation)?,
                Meeting::Replace => {
                    self.retire(&mut inner, id, incarnation)?;
                    run.replaced = Some(held);
                }
                Meeting::Stale => {
                    return Err(BrokerError::StaleIncarnation {
                        topic: self.shared.topic.clone(),
                        partition: self.shared.index,
                        origin: origin.to_string(),
                        held,
                        offered: incarnation,
                    });
                }
            }
            let mut refused = None;
            for batch in &batches {
                let header = *batch.header();
                let expected = inner.sublogs[id].next_offset();
                if header.total_len > max_len {
                    refused = Some(BrokerError::MalformedBatch(
                        crate::batch::BatchFormatError::BadLength {
                            len: header.total_len,
                            min: crate::batch::HEADER_LEN,
                            max: max_len,
                        },
                    ));
                    break;
                }
                if header.last_offset() < expected {
                    run.already_held += 1;
                } else if header.base_offset < expected {
                    refused = Some(BrokerError::OverlappingBatch {
                        topic: self.shared.topic.clone(),
                        partition: self.shared.index,
                        origin: origin.to_string(),
                        expected,
                        base: header.base_offset,
                        last: header.last_offset(),
                    });
                    break;
                } else if header.base_offset > expected && gap == GapPolicy::Refuse {
                    refused = Some(BrokerError::OffsetGap {
                        topic: self.shared.topic.clone(),
                        partition: self.shared.index,
                        origin: origin.to_string(),
                        expected,
                        base: header.base_offset,
                    });
                    break;
                } else {
                    self.write(&mut inner, id, batch.bytes(), &header)?;
                    run.appended += 1;
                    run.records += u64::from(header.record_count);
                    run.bytes += header.total_len as u64;
                }
            }
            run.end_offset = inner.sublogs[id].next_offset();
            // Held batches may not be durable yet either: wait for everything written.
            (refused, inner.arrival.end_seq())
        };
        self.commit_and_wait(wait_for).await?;
        match refused {
            Some(e) => Err(e),
            None => Ok(run),
        }
    }
}
