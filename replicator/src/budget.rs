//! A byte budget: how many bytes of batches one link may hold in memory in one direction,
//! whatever the number of sub-logs it carries. A serving stream takes its share before it
//! reads the sub-log and gives it back once the frame is written to QUIC; a pulling stream
//! takes the frame's length before it reads the frame and gives it back once the frame's
//! batches are applied. With 10 000 sub-logs catching up at once, the link so holds at
//! most its budget (plus QUIC's own windows), not 10 000 frames.
//!
//! [`Held`] also counts the bytes really held (not the permits), and the budget keeps the
//! peak of that count, so a path that held batches without taking its share would show
//! as a peak above the budget. A stream never waits for the budget while holding part of
//! it ([`ByteBudget::retake`]), so streams cannot deadlock on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct ByteBudget {
    permits: Arc<Semaphore>,
    total: usize,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    held: AtomicUsize,
    peak: AtomicUsize,
}

impl Counts {
    fn add(&self, bytes: usize) {
        let now = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A share of a budget; given back when dropped.
pub struct Held {
    permit: OwnedSemaphorePermit,
    counts: Arc<Counts>,
    bytes: usize,
}

impl ByteBudget {
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        ByteBudget {
            permits: Arc::new(Semaphore::new(total)),
            total,
            counts: Arc::default(),
        }
    }

    /// A share of `bytes` (at most the whole budget), waiting until it is free.
    pub async fn take(&self, bytes: usize) -> Held {
        let wanted = bytes.clamp(1, self.total) as u32;
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the budget's semaphore is never closed");
        Held {
            permit,
            counts: self.counts.clone(),
            bytes: 0,
        }
    }

    /// `held` resized to `bytes` now held under it. A share too small (a frame's unpacked
    /// size, or a batch larger than the read asked for, is known only once it is read) is
    /// given back and a share of `bytes` taken whole: a stream never waits for the budget
    /// while it holds part of it, so streams cannot wait on each other in a circle. Until
    /// the larger share is granted those bytes are in memory but not counted: the budget
    /// is exceeded by at most one frame per stream in that state.
    pub async fn retake(&self, mut held: Held, bytes: usize) -> Held {
        if held.permit.num_permits() < bytes.min(self.total) {
            drop(held);
            held = self.take(bytes).await;
        }
        held.holding(bytes);
        held
    }

    /// The most bytes held at once so far.
    pub fn peak(&self) -> usize {
        self.counts.peak.load(Ordering::Relaxed)
    }
}

impl Held {
    /// Records that `bytes` are held under this share, and gives back the permits beyond
    /// them (a read that came out shorter than asked).
    fn holding(&mut self, bytes: usize) {
        self.counts.sub(self.bytes);
        self.counts.add(bytes);
        self.bytes = bytes;
        let keep = bytes.max(1);
        if self.permit.num_permits() > keep {
            drop(self.permit.split(self.permit.num_permits() - keep));
        }
    }

    /// Adds `other`'s permits to this share (the bytes each records stay counted).
    pub fn merge(&mut self, mut other: Held) {
        let none = self.permit.split(0).expect("zero permits split off");
        let permits = std::mem::replace(&mut other.permit, none);
        self.permit.merge(permits);
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.counts.sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_wait_for_the_budget_and_the_peak_counts_bytes_held() {
        let budget = ByteBudget::new(100);
        let mut a = budget.take(80).await;
        a.holding(30);
        // 70 free now: a share of 60 is granted at once, one of 40 more waits.
        let mut b = budget.take(60).await;
        b.holding(60);
        let waiting = budget.take(40);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), &mut waiting)
                .await
                .is_err()
        );
        drop(a);
        let c = waiting.await;
        assert_eq!(budget.peak(), 90);
        drop((b, c));
        // A share asks at most the whole budget.
        let mut all = budget.take(1_000).await;
        all.holding(1_000);
        assert_eq!(budget.peak(), 1_000, "bytes held are counted, not permits");
    }

    #[tokio::test]
    async fn a_share_too_small_is_retaken_whole() {
        let budget = ByteBudget::new(100);
        let small = budget.take(10).await;
        let other = budget.take(50).await;
        // 40 free: the stream gives back its 10 and waits for 60 without holding any.
        let retaking = budget.retake(small, 60);
        tokio::pin!(retaking);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), &mut retaking)
                .await
                .is_err()
        );
        drop(other);
        let held = retaking.await;
        assert_eq!(held.permit.num_permits(), 60);
        // Enough already: kept, with the permits beyond the bytes given back.
        let held = budget.retake(held, 20).await;
        assert_eq!(held.permit.num_permits(), 20);
    }

    #[tokio::test]
    async fn merged_shares_are_given_back_together() {
        let budget = ByteBudget::new(10);
        let mut a = budget.take(4).await;
        a.holding(4);
        let mut b = budget.take(6).await;
        b.holding(6);
        a.merge(b);
        assert_eq!(budget.permits.available_permits(), 0);
        drop(a);
        assert_eq!(budget.permits.available_permits(), 10);
        assert_eq!(budget.counts.held.load(Ordering::Relaxed), 0);
    }
}
