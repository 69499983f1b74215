//! `georouter repair`: the operator's explicit answer to damage inside a segment.
//!
//! Recovery never cuts damage that valid batches follow (they may be acknowledged), so
//! reads stop at it with `corrupt-batch`, loudly, and replication of that sub-log stops
//! there too. With the node stopped, an operator repairs a partition in one of two ways:
//! - **skip**: each damaged segment is rewritten without its damaged bytes (a new file,
//!   fsynced, renamed over the old one). The offsets the damage held become a gap: readers
//!   move past it, and a region pulling this sub-log from here accepts the gap as the
//!   origin's announcement (like records retention removed) — what was in it is lost, and
//!   the report names the offsets.
//! - **refetch** (a sub-log replicated from another origin only): the sub-log is cut at
//!   its first damage, later segments removed; replication pulls the rest again from its
//!   source, so nothing is lost.
//!
//! Index files of rewritten or cut segments are removed; the next start rebuilds them and
//! reconciles the arrival index.

use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::segment::{batch_at, find_next_batch, parse_log_name, remove_files};
use super::sublog::sync_dir;
use crate::error::{BrokerError, Result};

/// How to repair damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairMode {
    /// Drop the damaged bytes; their offsets become a gap.
    Skip,
    /// Cut the sub-log at its first damage, to be pulled again from its source.
    Refetch,
}

/// What a repair did to one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repaired {
    pub path: PathBuf,
    pub origin: String,
    /// Bytes removed from the segment (and, for refetch, the later segments' bytes).
    pub removed_bytes: u64,
    /// Offset ranges `[first, last]` whose records are gone (skip), or from which the
    /// sub-log will be pulled again (refetch: `[first, u64::MAX]`).
    pub offsets: Vec<(u64, u64)>,
}

/// The valid batches and damaged ranges of a segment's bytes, in order.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Batch {
        start: usize,
        end: usize,
        base: u64,
        last: u64,
    },
    Damage {
        start: usize,
        end: usize,
    },
}

/// Splits a segment's bytes into valid batches and damage (a torn tail is damage too).
fn pieces(bytes: &Bytes, segment_base: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut next_offset = segment_base;
    while at < bytes.len() {
        match batch_at(bytes, at, next_offset, segment_base) {
            Some(h) => {
                out.push(Piece::Batch {
                    start: at,
                    end: at + h.total_len,
                    base: h.base_offset,
                    last: h.last_offset(),
                });
                next_offset = h.last_offset() + 1;
                at += h.total_len;
            }
            None => {
                let rest = bytes.slice(at + 1..);
                let end = find_next_batch(&rest, next_offset, segment_base)
                    .map_or(bytes.len(), |found| at + 1 + found);
                out.push(Piece::Damage { start: at, end });
                at = end;
            }
        }
    }
    out
}

/// Repairs the damage in `partition_dir`'s sub-logs (all, or `origin`'s alone).
/// `local_origin` is this region: its sub-log cannot be pulled again, so refetch refuses it.
/// The node must be stopped.
pub fn repair_partition(
    partition_dir: &Path,
    origin: Option<&str>,
    local_origin: &str,
    mode: RepairMode,
) -> Result<Vec<Repaired>> {
    let logs = partition_dir.join("logs");
    let mut repaired = Vec::new();
    let mut origins: Vec<String> = std::fs::read_dir(&logs)
        .map_err(BrokerError::io("list partition", &logs))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| origin.is_none_or(|o| o == name))
        .collect();
    origins.sort();
    for name in origins {
        if mode == RepairMode::Refetch && name == local_origin {
            return Err(BrokerError::InvalidCursor {
                reason: format!(
                    "the sub-log of origin '{name}' is this region's own: it cannot be pulled again; repair it with skip"
                ),
            });
        }
        repaired.extend(repair_sublog(&logs.join(&name), &name, mode)?);
    }
    Ok(repaired)
}

fn repair_sublog(dir: &Path, origin: &str, mode: RepairMode) -> Result<Vec<Repaired>> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .map_err(BrokerError::io("list sub-log directory", dir))?
        .filter_map(|e| parse_log_name(e.ok()?.file_name().to_str()?))
        .collect();
    bases.sort_unstable();
    let mut out = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let path = super::segment::log_path(dir, base);
        let bytes =
            Bytes::from(std::fs::read(&path).map_err(BrokerError::io("read segment", &path))?);
        let pieces = pieces(&bytes, base);
        let Some(first_damage) = pieces
            .iter()
            .position(|p| matches!(p, Piece::Damage { .. }))
        else {
            continue;
        };
        match mode {
            RepairMode::Skip => {
                let mut kept = Vec::with_capacity(bytes.len());
                let mut offsets = Vec::new();
                let mut previous_last: Option<u64> = None;
                for (j, piece) in pieces.iter().enumerate() {
                    match piece {
                        Piece::Batch {
                            start, end, last, ..
                        } => {
                            kept.extend_from_slice(&bytes[*start..*end]);
                            previous_last = Some(*last);
                        }
                        Piece::Damage { .. } => {
                            let first = previous_last.map_or(base, |l| l + 1);
                            let next = pieces[j + 1..].iter().find_map(|p| match p {
                                Piece::Batch { base, .. } => Some(*base),
                                Piece::Damage { .. } => None,
                            });
                            let last = next.map_or(u64::MAX, |n| n.saturating_sub(1));
                            if next.is_none_or(|n| n > first) {
                                offsets.push((first, last));
                            }
                        }
                    }
                }
                replace_file(&path, &kept)?;
                out.push(Repaired {
                    path: path.clone(),
                    origin: origin.to_string(),
                    removed_bytes: (bytes.len() - kept.len()) as u64,
                    offsets,
                });
            }
            RepairMode::Refetch => {
                let Piece::Damage { start, .. } = pieces[first_damage] else {
                    unreachable!("position found a damage piece");
                };
                let first = pieces[..first_damage]
                    .iter()
                    .rev()
                    .find_map(|p| match p {
                        Piece::Batch { last, .. } => Some(last + 1),
                        Piece::Damage { .. } => None,
                    })
                    .unwrap_or(base);
                let mut removed = (bytes.len() - start) as u64;
                replace_file(&path, &bytes[..start])?;
                for &later in &bases[i + 1..] {
                    let later_path = super::segment::log_path(dir, later);
                    removed += std::fs::metadata(&later_path).map(|m| m.len()).unwrap_or(0);
                    remove_files(&later_path)?;
                }
                sync_dir(dir)?;
                out.push(Repaired {
                    path,
                    origin: origin.to_string(),
                    removed_bytes: removed,
                    offsets: vec![(first, u64::MAX)],
                });
                return Ok(out);
            }
        }
    }
    if !out.is_empty() {
        sync_dir(dir)?;
    }
    Ok(out)
}

/// Writes `bytes` as the new content of the segment at `path` (temporary file, fsync,
/// rename) and removes its index files (rebuilt at the next start).
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("log.repair");
    std::fs::write(&tmp, bytes)
        .and_then(|()| File::open(&tmp)?.sync_all())
        .map_err(BrokerError::io("write repaired segment", &tmp))?;
    std::fs::rename(&tmp, path).map_err(BrokerError::io("replace segment", path))?;
    super::index::remove_files(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::PendingBatch;
    use crate::record::Record;

    fn batch(base: u64, n: usize) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                body: Bytes::from(format!("r{base}.{i}")),
                timestamp_ms: 1,
                ..Record::default()
            })
            .collect();
        PendingBatch::consecutive(&records).seal(base)
    }

    #[test]
    fn pieces_find_damage_between_valid_batches_and_a_torn_tail() {
        let (a, b, c) = (batch(0, 2), batch(2, 3), batch(5, 1));
        let mut bytes = [a.clone(), b.clone(), c.clone()].concat();
        let b_start = a.len();
        bytes[b_start + 50] ^= 0xff;
        bytes.extend_from_slice(&batch(6, 1)[..20]);
        let got = pieces(&Bytes::from(bytes.clone()), 0);
        let c_start = a.len() + b.len();
        assert_eq!(
            got,
            vec![
                Piece::Batch {
                    start: 0,
                    end: a.len(),
                    base: 0,
                    last: 1
                },
                Piece::Damage {
                    start: b_start,
                    end: c_start
                },
                Piece::Batch {
                    start: c_start,
                    end: c_start + c.len(),
                    base: 5,
                    last: 5
                },
                Piece::Damage {
                    start: c_start + c.len(),
                    end: bytes.len()
                },
            ]
        );
    }
}
