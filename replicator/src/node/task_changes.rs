//! What follows a change of the records every region shares, made here (the console) or
//! taken from a neighbour (`Tasks` frames). For a task: the record stored, new tasks' start
//! times recorded, routes and relay duties recomputed, pulls re-planned, serving streams
//! woken (they watch the task book). For a consumer group: the record stored in the
//! broker's group book. Either way the change is passed on to the other neighbours.

use crate::wire::message as msg;
use broker::Broker;
use broker::catalog::{GroupChangeError, GroupRecord, GroupSpec};
use serde::de::DeserializeOwned;

use super::Node;
use crate::tasks::book::Change;
use crate::tasks::{ChangeError, TaskRecord, TaskState};
use crate::wire::Frame;

/// Stores a task record in the region's metadata.
pub(crate) fn persist(broker: &Broker, record: &TaskRecord) -> Result<(), broker::meta::MetaError> {
    let bytes = serde_json::to_vec(record).expect("a task record encodes");
    broker.meta().put_task_record(&record.spec.name, &bytes)
}

/// Records a neighbour sent, decoded.
#[derive(Default)]
pub(crate) struct Incoming {
    pub tasks: Vec<TaskRecord>,
    pub groups: Vec<GroupRecord>,
}

fn as_json<T: serde::Serialize>(records: &[T]) -> Vec<String> {
    records
        .iter()
        .map(|r| serde_json::to_string(r).expect("a shared record encodes"))
        .collect()
}

/// A Tasks frame carrying task `records` and `groups`.
pub(crate) fn catalog_frame(records: &[TaskRecord], groups: &[GroupRecord]) -> Frame {
    Frame::Tasks(msg::Tasks {
        records: as_json(records),
        groups: as_json(groups),
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

    /// Every shared record held here (sent when a link comes up, and periodically).
    pub(crate) fn full_catalog_frame(&self) -> Frame {
        catalog_frame(
            &self.tasks.snapshot().records(),
            &self.broker.groups().records(),
        )
    }

    /// A change of a consumer group made here. It stores the record (an fsync): call it on
    /// a blocking thread.
    pub fn change_group(
        &self,
        change: broker::catalog::Change<'_, GroupSpec>,
    ) -> Result<GroupRecord, GroupChangeError> {
        let record = self.broker.groups().change(change, &self.region)?;
        tracing::info!(group = %record.spec.name, version = record.version, deleted = record.deleted, "group changed here");
        self.links
            .flood(&catalog_frame(&[], std::slice::from_ref(&record)), None);
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
        self.links.flood(&catalog_frame(records, &[]), from);
    }

    /// A Tasks frame from neighbour `from`: the records are queued to be merged on the
    /// blocking pool (storing is an fsync; this is called from a link's control reader).
    pub fn on_tasks(&self, from: &str, frame: msg::Tasks) {
        let incoming = Incoming {
            tasks: self.decode(from, frame.records),
            groups: self.decode(from, frame.groups),
        };
        if incoming.tasks.is_empty() && incoming.groups.is_empty() {
            return;
        }
        if !self.tasks_inbox.offer((from.to_string(), incoming)) {
            self.metrics.control_frames_dropped("tasks");
            tracing::warn!(peer = %from, "shared records dropped: too many queued (the periodic catalog resend repairs this)");
        }
    }

    /// The records of `texts` that decode; the others are counted and logged.
    fn decode<T: DeserializeOwned>(&self, from: &str, texts: Vec<String>) -> Vec<T> {
        let mut out = Vec::new();
        for text in texts {
            match serde_json::from_str::<T>(&text) {
                Ok(r) => out.push(r),
                Err(e) => {
                    self.metrics.frame_refused("malformed");
                    tracing::warn!(peer = %from, error = %e, "a shared record from a neighbour does not decode; ignored");
                }
            }
        }
        out
    }

    /// Records from neighbour `from`, taken from the inbox on the blocking pool.
    pub(super) fn merge_shared(&self, from: &str, incoming: Incoming) {
        let groups = self.broker.groups().merge(incoming.groups);
        for r in &groups {
            tracing::info!(group = %r.spec.name, version = r.version, by = %r.changed_by, deleted = r.deleted, "group changed in another region");
        }
        if !groups.is_empty() {
            self.links.flood(&catalog_frame(&[], &groups), Some(from));
        }
        let store = |r: &TaskRecord| persist(&self.broker, r);
        let taken = self.tasks.merge(incoming.tasks, &self.topology, &store);
        if taken.is_empty() {
            return;
        }
        for r in &taken {
            tracing::info!(task = %r.spec.name, version = r.version, by = %r.changed_by, deleted = r.deleted, "task changed in another region");
        }
        self.tasks_changed(&taken, Some(from));
    }
}
