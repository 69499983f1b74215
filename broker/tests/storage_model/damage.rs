//! Damage a crash can leave, applied to a closed partition and to the model alike: a torn
//! tail of a sub-log's active segment, and a cut arrival index.

use std::path::{Path, PathBuf};

use crate::common::{self, segment_files};
use crate::model::{Model, ModelBatch, ORIGINS, origin_index};

/// Cuts the active segment of `origin` (closed partition) as a torn write would, and
/// updates the model: the batches the cut touches are lost, the sub-log ends before them.
/// The first batch of the segment is always kept (an emptied active segment is covered by
/// the recovery tests). Returns the truncation recovery must report: path, valid bytes,
/// bytes cut.
pub fn tear_active_segment(
    dir: &Path,
    model: &mut Model,
    origin: usize,
    seed: u64,
) -> Vec<(PathBuf, u64, u64)> {
    let name = ORIGINS[origin];
    let Some(&(active_base, size)) = segment_files(dir, name).last() else {
        return Vec::new();
    };
    let in_active: Vec<(u64, u64)> = model
        .batches
        .iter()
        .filter(|b| b.origin == origin && b.base >= active_base)
        .map(|b| (b.base, b.len))
        .collect();
    assert_eq!(
        in_active.iter().map(|(_, len)| len).sum::<u64>(),
        size,
        "model and active segment of {name} disagree"
    );
    if in_active.len() < 2 {
        return Vec::new();
    }
    let first_len = in_active[0].1;
    let new_size = size - 1 - seed % (size - first_len);
    let path = common::segment_path(dir, name, active_base);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open segment")
        .set_len(new_size)
        .expect("cut segment");
    // The first batch that does not end within the new size, and everything after it.
    let mut position = 0;
    let mut lost_from = None;
    for (base, len) in &in_active {
        if position + len > new_size {
            lost_from = Some((*base, position));
            break;
        }
        position += len;
    }
    let (lost_base, valid) = lost_from.expect("the cut loses a batch");
    model
        .batches
        .retain(|b| b.origin != origin || b.base < lost_base);
    model.next[origin] = model
        .batches
        .iter()
        .rev()
        .find(|b| b.origin == origin)
        .expect("first batch kept")
        .last
        + 1;
    // Lost batches may be sent again and are then appended, not "already held".
    let next = model.next[origin];
    model.sent[origin].retain(|bytes| {
        let base = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        base < next
    });
    if valid == new_size {
        return Vec::new();
    }
    vec![(path, valid, new_size - valid)]
}

/// Cuts `arrival.log` (closed partition) at a seeded length and reorders the model as
/// recovery rebuilds it: held batches whose entry survived keep their order; the rest
/// follow, origin by origin in the order of the `origins` file, each in offset order.
pub fn cut_arrival_index(dir: &Path, model: &mut Model, seed: u64) {
    let path = dir.join("arrival.log");
    let raw = std::fs::read(&path).expect("read arrival index");
    let entries = raw.len() / 24;
    let keep = (seed % (entries as u64 + 1)) as usize;
    let extra = if keep < entries {
        (seed / 7 % 24) as usize
    } else {
        0
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open arrival index")
        .set_len((keep * 24 + extra) as u64)
        .expect("cut arrival index");
    // No origins file yet when nothing was ever appended.
    let origins: Vec<String> = std::fs::read_to_string(dir.join("origins"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let kept: Vec<(usize, u64)> = raw[..keep * 24]
        .chunks_exact(24)
        .map(|e| {
            let id = u16::from_le_bytes([e[0], e[1]]) as usize;
            let base = u64::from_le_bytes(e[4..12].try_into().expect("8 bytes"));
            (origin_index(&origins[id]), base)
        })
        .collect();
    let (mut order, mut rest): (Vec<ModelBatch>, Vec<ModelBatch>) =
        std::mem::take(&mut model.batches)
            .into_iter()
            .partition(|b| kept.contains(&(b.origin, b.base)));
    for name in &origins {
        let origin = origin_index(name);
        let mut of_origin: Vec<ModelBatch> = Vec::new();
        rest.retain(|b| {
            if b.origin == origin {
                of_origin.push(b.clone());
                false
            } else {
                true
            }
        });
        of_origin.sort_by_key(|b| b.base);
        order.extend(of_origin);
    }
    assert!(
        rest.is_empty(),
        "a held batch of an origin not in the origins file"
    );
    model.batches = order;
}
