//! [`Published<T>`]: a value that many tasks read and few change (the task set, the route
//! view, the table of open links, heard advertisements), held as an immutable snapshot.
//!
//! - Readers `load` the current `Arc<T>` without taking a lock (an `ArcSwap`), so a reader
//!   on the produce path never waits on a writer.
//! - A change publishes a whole new value and bumps a version on a `watch` channel: a task
//!   that must react to changes (a serving stream watching its task, a relay watching its
//!   route) waits on `subscribe()` and is woken by exactly the changes of what it watches.
//! - Writers are serialized by their owner (the task book's writer lock, the routing lock,
//!   the planner task), or by [`Published::modify`], which takes this value's own writer
//!   lock (a leaf lock: nothing else is taken under it).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub(crate) struct Published<T> {
    current: ArcSwap<T>,
    version: watch::Sender<u64>,
    writer: Mutex<()>,
}

impl<T> Published<T> {
    pub fn new(value: T) -> Self {
        Published {
            current: ArcSwap::from_pointee(value),
            version: watch::Sender::new(0),
            writer: Mutex::new(()),
        }
    }

    /// The value now, without a lock.
    pub fn load(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Makes `value` the current one and wakes the subscribers. The caller serializes its
    /// writes (see the module documentation).
    pub fn publish(&self, value: T) {
        self.current.store(Arc::new(value));
        self.version.send_modify(|v| *v += 1);
    }

    /// A receiver that sees a change whenever a new value is published.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

impl<T: Clone> Published<T> {
    /// Changes a copy of the current value with `f` and publishes it when `f` says it
    /// changed something (`(true, _)`); returns `f`'s result. Serialized by this value's
    /// own writer lock.
    pub fn modify<R>(&self, f: impl FnOnce(&mut T) -> (bool, R)) -> R {
        let _writer = self.writer.lock().expect("published writer lock");
        let mut value = T::clone(&self.current.load());
        let (changed, result) = f(&mut value);
        if changed {
            self.publish(value);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_see_whole_values_and_subscribers_wake_on_change() {
        let published = Published::new(vec![1]);
        let mut changes = published.subscribe();
        let before = published.load();
        published.modify(|v| {
            v.push(2);
            (true, ())
        });
        assert_eq!(*before, vec![1], "a loaded snapshot never changes");
        assert_eq!(*published.load(), vec![1, 2]);
        changes.changed().await.unwrap();
        // A modification that changes nothing publishes nothing.
        published.modify(|_| (false, ()));
        assert!(!changes.has_changed().unwrap());
        published.publish(vec![3]);
        assert!(changes.has_changed().unwrap());
    }
}
