//! The task set of a running node. Changes (made here, or merged from a neighbour) are
//! serialized by one writer lock, held across storing the record (an fsync) so that a
//! change is in effect only once it is stored and snapshots appear in the order of the
//! changes. That lock is only ever taken on blocking threads. Readers (every produce
//! through the DR write gate, serving streams, the planner, the console) load the
//! published [`Snapshot`] without a lock and subscribe to its changes.

use std::sync::{Arc, Mutex};

use broker::catalog::record::Author;
use broker::meta::MetaError;
use tokio::sync::watch;
use topology::Topology;

pub(crate) use super::catalog::Change;
use super::catalog::{Catalog, ChangeError, Snapshot, TaskRecord};
use super::spec::Task;
use crate::published::Published;

/// What stores a record (the region's metadata, in a node).
pub(crate) type Store<'a> = &'a dyn Fn(&TaskRecord) -> Result<(), MetaError>;

pub struct TaskBook {
    /// The writer lock (see the module documentation).
    catalog: Mutex<Catalog>,
    published: Published<Snapshot>,
}

impl TaskBook {
    pub(crate) fn new(catalog: Catalog) -> Self {
        TaskBook {
            published: Published::new(catalog.snapshot()),
            catalog: Mutex::new(catalog),
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load()
    }

    /// The live tasks now.
    pub fn active(&self) -> Arc<Vec<Arc<Task>>> {
        self.published.load().active.clone()
    }

    pub fn task(&self, name: &str) -> Option<Arc<Task>> {
        self.active().iter().find(|t| t.name() == name).cloned()
    }

    /// Whether `task` is still the live, running version of itself (not paused, changed or
    /// deleted since it was read).
    pub fn is_live(&self, task: &Arc<Task>) -> bool {
        self.task(task.name())
            .is_some_and(|live| Arc::ptr_eq(&live, task) && live.running())
    }

    /// Wakes on every change of the task set.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// A change made in this region: checked against the catalog, stored, then published.
    pub(crate) fn change(
        &self,
        change: Change<'_>,
        author: &Author<'_>,
        topology: &Topology,
        store: Store<'_>,
    ) -> Result<TaskRecord, ChangeError> {
        let mut catalog = self.catalog.lock().expect("task book writer lock");
        let record = catalog.prepare(change, author, topology)?;
        store(&record)?;
        catalog.apply(record.clone(), topology);
        self.published.publish(catalog.snapshot());
        Ok(record)
    }

    /// Records from a neighbour: those newer than what is held are stored, published and
    /// returned (to be passed on). A record that cannot be stored is still taken (it is in
    /// effect here and will be re-sent by the periodic catalog refresh after a restart).
    pub(crate) fn merge(
        &self,
        incoming: Vec<TaskRecord>,
        topology: &Topology,
        store: Store<'_>,
    ) -> Vec<TaskRecord> {
        let mut catalog = self.catalog.lock().expect("task book writer lock");
        let taken = catalog.merge(incoming, topology);
        for record in &taken {
            if let Err(e) = store(record) {
                tracing::error!(event = "task_record_store_failed", task = %record.spec.name, error = %e, "storing a task record failed");
            }
        }
        if !taken.is_empty() {
            self.published.publish(catalog.snapshot());
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::catalog::tests::{catalog, topology};

    fn book() -> TaskBook {
        TaskBook::new(catalog())
    }

    #[test]
    fn a_change_that_cannot_be_stored_is_not_published() {
        let book = book();
        let before = book.task("t").unwrap();
        let failing: Store<'_> = &|_| {
            Err(MetaError::Corrupt {
                key: "task/t".into(),
                reason: "disk full".into(),
            })
        };
        let mut spec = before.spec.clone();
        spec.max_records_per_s = Some(1);
        let change = Change {
            name: "t",
            spec: Some(spec),
            if_version: Some(1),
            create_only: false,
        };
        let error = book
            .change(change, &Author::region("a"), &topology(), failing)
            .unwrap_err();
        assert!(matches!(error, ChangeError::Meta(_)), "{error:?}");
        assert!(book.is_live(&before), "the old task is still the live one");
    }

    #[test]
    fn a_stored_change_replaces_the_live_task_and_wakes_subscribers() {
        let book = book();
        let before = book.task("t").unwrap();
        let changes = book.subscribe();
        let stored: Store<'_> = &|_| Ok(());
        let mut spec = before.spec.clone();
        spec.state = crate::tasks::TaskState::Paused;
        let change = Change {
            name: "t",
            spec: Some(spec),
            if_version: Some(1),
            create_only: false,
        };
        let record = book
            .change(change, &Author::region("a"), &topology(), stored)
            .unwrap();
        assert_eq!(record.version, 2);
        assert!(!book.is_live(&before));
        assert!(changes.has_changed().unwrap());
        assert_eq!(book.snapshot().record("t").unwrap().version, 2);
    }
}
