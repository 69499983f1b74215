//! What follows a change of the task set, made here (the console) or taken from a
//! neighbour (`Tasks` frames): the record stored, new tasks' start times recorded, routes
//! and relay duties recomputed, pulls re-planned, serving streams woken (they watch the
//! task book), and the change passed on to the other neighbours.

use crate::wire::message as msg;
use broker::Broker;

use super::Node;
use crate::tasks::book::Change;
use crate::tasks::{ChangeError, TaskRecord, TaskState};
use crate::wire::Frame;

/// Stores a task record in the region's metadata.
pub(crate) fn persist(broker: &Broker, record: &TaskRecord) -> Result<(), broker::meta::MetaError> {
    let bytes = serde_json::to_vec(record).expect("a task record encodes");
    broker.meta().put_task_record(&record.spec.name, &bytes)
}

/// A Tasks frame carrying `records`.
pub(crate) fn tasks_frame(records: &[TaskRecord]) -> Frame {
    Frame::Tasks(msg::Tasks {
        records: records
            .iter()
            .map(|r| serde_json::to_string(r).expect("a task record encodes"))
            .collect(),
    })
}

impl Node {
    /// A change made here. It stores the record (an fsync): call it on a blocking thread.
    pub fn change_task(&self, change: Change<'_>) -> Result<TaskRecord, ChangeError> {
        let name = change.name.to_string();
        let store = |r: &TaskRecord| persist(&self.broker, r);
        let record = self
            .tasks
            .change(change, &self.region, &self.topology, &store)?;
        tracing::info!(task = %name, version = record.version, deleted = record.deleted, state = ?record.spec.state, "task changed here");
        self.tasks_changed(std::slice::from_ref(&record), None);
        Ok(record)
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
                tracing::error!(task = %record.spec.name, error = %e, "recording a task's start failed");
            }
        }
        self.routes_for_tasks();
        self.links.flood(&tasks_frame(records), from);
    }

    /// A Tasks frame from neighbour `from`: the records are queued to be merged on the
    /// blocking pool (storing is an fsync; this is called from a link's control reader).
    pub fn on_tasks(&self, from: &str, tasks: msg::Tasks) {
        let mut incoming = Vec::new();
        for text in tasks.records {
            match serde_json::from_str::<TaskRecord>(&text) {
                Ok(r) => incoming.push(r),
                Err(e) => {
                    self.metrics.frame_refused("malformed");
                    tracing::warn!(peer = %from, error = %e, "a task record from a neighbour does not decode; ignored");
                }
            }
        }
        if incoming.is_empty() {
            return;
        }
        if !self.tasks_inbox.offer((from.to_string(), incoming)) {
            self.metrics.control_frames_dropped("tasks");
            tracing::warn!(peer = %from, "task records dropped: too many queued (the periodic catalog resend repairs this)");
        }
    }

    /// Task records from neighbour `from`, taken from the inbox on the blocking pool.
    pub(super) fn merge_tasks(&self, from: &str, incoming: Vec<TaskRecord>) {
        let store = |r: &TaskRecord| persist(&self.broker, r);
        let taken = self.tasks.merge(incoming, &self.topology, &store);
        if taken.is_empty() {
            return;
        }
        for r in &taken {
            tracing::info!(task = %r.spec.name, version = r.version, by = %r.changed_by, deleted = r.deleted, "task changed in another region");
        }
        self.tasks_changed(&taken, Some(from));
    }
}
