//! A bound on the descriptors that sealed segments hold open, for the whole process.
//!
//! An active segment keeps its file open (it is written and fsynced). A sealed segment's
//! file is opened when it is read and stays open while it is among the
//! [`MAX_OPEN_SEALED`] most recently opened ones; past that, the cache closes the least
//! recently used (second chance: a file read since the last pass gets another round). A
//! reader in the middle of a read holds its own reference to the descriptor, so closing
//! never cuts a read short. The bound is per process because the descriptor limit is:
//! several in-process nodes (the scenarios) share it.

use std::collections::VecDeque;
use std::sync::{Mutex, Weak};

use super::segment::SegmentFile;

/// Sealed segment files kept open at most, per process.
pub const MAX_OPEN_SEALED: usize = 256;

static OPEN_SEALED: Mutex<VecDeque<Weak<SegmentFile>>> = Mutex::new(VecDeque::new());

/// Takes a sealed segment file whose descriptor was just opened (or unpinned) into the
/// bound, closing others past it.
pub(crate) fn admit(file: Weak<SegmentFile>) {
    let mut open = OPEN_SEALED.lock().unwrap_or_else(|p| p.into_inner());
    open.push_back(file);
    // Each file is looked at most twice: once to clear its "used" mark, once to close it.
    let mut budget = 2 * open.len();
    while open.len() > MAX_OPEN_SEALED && budget > 0 {
        budget -= 1;
        let Some(victim) = open.pop_front() else {
            break;
        };
        let Some(victim) = victim.upgrade() else {
            continue; // dropped: its descriptor is closed already
        };
        if victim.second_chance() {
            open.push_back(std::sync::Arc::downgrade(&victim));
        }
    }
}

/// How many sealed segment files hold a descriptor now (for tests and metrics).
pub fn open_sealed() -> usize {
    OPEN_SEALED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|f| f.upgrade().is_some_and(|f| f.is_open()))
        .count()
}
