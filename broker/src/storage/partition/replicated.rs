//! Appending batches replicated from another origin: offsets kept, idempotent, gaps
//! refused or allowed, overlaps refused, and a held sub-log of another incarnation of the
//! topic retired or the run refused (see [`crate::incarnation`]).

use super::Partition;
use crate::batch::{Batch, BatchHeader};
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

impl ReplicatedRun {
    /// Counts a batch the run stored.
    pub fn count_appended(&mut self, header: &BatchHeader) {
        self.appended += 1;
        self.records += u64::from(header.record_count);
        self.bytes += header.total_len as u64;
    }
}

/// Whether batches of `origin` may be replicated into a partition of region
/// `local_origin`: a valid region name, not this region's own origin.
pub fn check_replicated_origin(origin: &str, local_origin: &str) -> Result<()> {
    names::validate("region", origin)?;
    if origin == local_origin {
        return Err(BrokerError::OwnOrigin {
            origin: origin.to_string(),
        });
    }
    Ok(())
}

/// Where a replicated batch goes in a sub-log whose next offset is `expected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Every offset of it is below the end: nothing to write.
    AlreadyHeld,
    /// At the end, or past it where `gap` allows a gap.
    Append,
    /// It overlaps the end, or leaves a gap `gap` refuses ([`refusal`] says which).
    Refused,
}

/// The one rule of where a replicated batch goes, for every storage engine.
pub fn place(expected: u64, header: &BatchHeader, gap: GapPolicy) -> Placement {
    if header.last_offset() < expected {
        Placement::AlreadyHeld
    } else if header.base_offset < expected
        || (header.base_offset > expected && gap == GapPolicy::Refuse)
    {
        Placement::Refused
    } else {
        Placement::Append
    }
}

/// The error of a batch [`place`] refused.
pub fn refusal(
    topic: &str,
    partition: u32,
    origin: &str,
    expected: u64,
    header: &BatchHeader,
) -> BrokerError {
    if header.base_offset < expected {
        BrokerError::OverlappingBatch {
            topic: topic.to_string(),
            partition,
            origin: origin.to_string(),
            expected,
            base: header.base_offset,
            last: header.last_offset(),
        }
    } else {
        BrokerError::OffsetGap {
            topic: topic.to_string(),
            partition,
            origin: origin.to_string(),
            expected,
            base: header.base_offset,
        }
    }
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
        check_replicated_origin(origin, &self.local_origin)?;
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
                match place(expected, &header, gap) {
                    Placement::AlreadyHeld => run.already_held += 1,
                    Placement::Append => {
                        self.write(&mut inner, id, batch.bytes(), &header)?;
                        run.count_appended(&header);
                    }
                    Placement::Refused => {
                        refused = Some(refusal(
                            &self.shared.topic,
                            self.shared.index,
                            origin,
                            expected,
                            &header,
                        ));
                        break;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::PendingBatch;
    use crate::record::Record;

    fn header(base: u64, records: usize) -> BatchHeader {
        let bytes = PendingBatch::consecutive(&vec![Record::default(); records]).seal(base);
        BatchHeader::parse(&bytes, usize::MAX).unwrap()
    }

    #[test]
    fn a_batch_goes_at_the_end_is_held_below_it_and_is_refused_across_it() {
        let refuse = GapPolicy::Refuse;
        assert_eq!(place(5, &header(5, 2), refuse), Placement::Append);
        assert_eq!(place(7, &header(5, 2), refuse), Placement::AlreadyHeld);
        assert_eq!(place(6, &header(5, 2), refuse), Placement::Refused);
        assert_eq!(place(3, &header(5, 2), refuse), Placement::Refused);
        assert_eq!(place(3, &header(5, 2), GapPolicy::Allow), Placement::Append);
        assert!(matches!(
            refusal("t", 0, "o", 6, &header(5, 2)),
            BrokerError::OverlappingBatch { .. }
        ));
        assert!(matches!(
            refusal("t", 0, "o", 3, &header(5, 2)),
            BrokerError::OffsetGap { .. }
        ));
    }
}
