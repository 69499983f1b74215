//! A bounded queue of blocking work (metadata writes: fsyncs) taken from async code, done
//! on the blocking pool one item at a time, in order.
//!
//! Backpressure: none flows back to the sender. `offer` never waits; when the queue is
//! full the item is dropped and the caller counts it. Only work that something else
//! repairs goes here (the periodic resend of the task catalog and of group cursors), so a
//! burst costs at most a resend interval of delay, never unbounded memory or threads.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct Inbox<T> {
    tx: mpsc::Sender<T>,
}

impl<T: Send + 'static> Inbox<T> {
    /// Starts the worker (on `tracker`, until `stop` or until the inbox is dropped), which
    /// runs `handle` on each item on the blocking pool.
    pub fn start(
        tracker: &TaskTracker,
        stop: CancellationToken,
        capacity: usize,
        handle: impl Fn(T) + Send + Sync + 'static,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<T>(capacity);
        let handle = Arc::new(handle);
        tracker.spawn(async move {
            loop {
                let item = tokio::select! {
                    item = rx.recv() => item,
                    () = stop.cancelled() => return,
                };
                let Some(item) = item else { return };
                let handle = handle.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || handle(item)).await {
                    tracing::error!(event = "metadata_write_failed", error = %e, "a queued metadata write failed");
                }
            }
        });
        Inbox { tx }
    }

    /// Queues `item`; `false` when the queue is full or stopped (the item is dropped).
    pub fn offer(&self, item: T) -> bool {
        self.tx.try_send(item).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn items_are_done_in_order_and_a_full_queue_drops() {
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let done = Arc::new(Mutex::new(Vec::new()));
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate_rx = Mutex::new(gate_rx);
        let seen = done.clone();
        let inbox = Inbox::start(&tracker, stop.clone(), 2, move |n: u32| {
            // The first item waits until the test has filled the queue.
            if n == 0 {
                gate_rx.lock().unwrap().recv().unwrap();
            }
            seen.lock().unwrap().push(n);
        });
        assert!(inbox.offer(0));
        // Wait until the worker took item 0 (the queue is empty again).
        while inbox.tx.capacity() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(inbox.offer(1));
        assert!(inbox.offer(2));
        assert!(!inbox.offer(3), "a full queue drops");
        gate_tx.send(()).unwrap();
        drop(inbox);
        tracker.close();
        tracker.wait().await;
        assert_eq!(*done.lock().unwrap(), vec![0, 1, 2]);
    }
}
