//! What follows a change of the task set, made here (the console) or taken from a
//! neighbour (`catalog_frames`): the record stored, new tasks' start times recorded, routes
//! and relay duties recomputed, pulls re-planned, serving streams woken (they watch the
//! task book), and the change passed on to the other neighbours.

use broker::Broker;

use broker::catalog::record::Author;

use super::{Authorship, Node};
use crate::tasks::book::Change;
use crate::tasks::{ChangeError, TaskRecord, TaskState};

/// Stores a task record in the region's metadata.
pub(crate) fn persist(broker: &Broker, record: &TaskRecord) -> Result<(), broker::meta::MetaError> {
    let bytes = serde_json::to_vec(record).expect("a task record encodes");
    broker.meta().put_task_record(&record.spec.name, &bytes)
}

impl Node {
    /// A change made here at `by`'s request. It stores the record (an fsync): call it on a
    /// blocking thread.
    pub fn change_task(
        &self,
        change: Change<'_>,
        by: &Authorship,
    ) -> Result<TaskRecord, ChangeError> {
        let name = change.name.to_string();
        let store = |r: &TaskRecord| persist(&self.broker, r);
        let seal = |bytes: &[u8]| self.sealer.seal(bytes);
        let author = self.author(by, &seal);
        let record = self.tasks.change(change, &author, &self.topology, &store)?;
        tracing::info!(task = %name, version = record.version, deleted = record.deleted, state = ?record.spec.state, "task changed here");
        self.tasks_changed(std::slice::from_ref(&record), None);
        Ok(record)
    }

    /// This region as the author of a change `by` asked for, sealing with `seal`.
    pub(crate) fn author<'a>(
        &'a self,
        by: &'a Authorship,
        seal: &'a dyn Fn(&[u8]) -> broker::catalog::Seal,
    ) -> Author<'a> {
        Author {
            region: &self.region,
            principal: by.principal.as_deref(),
            admin: by.admin,
            sealer: Some(seal),
        }
    }

    /// After tasks changed (here, or taken from `from`).
    pub fn tasks_changed(&self, records: &[TaskRecord], from: Option<&str>) {
        for record in records
            .iter()
            .filter(|r| !r.deleted && r.spec.state == TaskState::Running)
        {
            if let Err(e) = self
                .broker
                .meta()
                .task_started(&record.spec.name, broker::record::now_ms())
            {
                tracing::error!(event = "task_start_record_failed", task = %record.spec.name, error = %e, "recording a task's start failed");
            }
        }
        self.routes_for_tasks();
        self.links.flood(
            &super::catalog_frames::catalog_frame(records, &[], &[]),
            from,
        );
    }
}
