//! The records every region shares, on the wire: `Tasks` control frames carry task records,
//! consumer groups' settings and principals (each a JSON `{spec, version, changed_by,
//! deleted}`), all of them when a link comes up and every few heartbeats, and each change
//! as it happens. Records from a neighbour are checked (`trust`: the author's seal, its
//! entitlement, the version step), then merged on the blocking pool (storing is an fsync)
//! under the one last-writer-wins rule, and what was newer is passed on to the other
//! neighbours, so the exchange stops by itself.

use broker::Broker;
use broker::catalog::{Book, ChangeError, GroupRecord, PrincipalRecord, Record, Shared};
use serde::de::DeserializeOwned;

use super::task_changes::persist;
use super::trust::{Authored, judge};
use super::{Authorship, Node};
use crate::tasks::TaskRecord;
use crate::wire::Frame;
use crate::wire::message as msg;

/// Records a neighbour sent, decoded.
#[derive(Default)]
pub(crate) struct Incoming {
    pub tasks: Vec<TaskRecord>,
    pub groups: Vec<GroupRecord>,
    pub principals: Vec<PrincipalRecord>,
}

fn as_json<T: serde::Serialize>(records: &[T]) -> Vec<String> {
    records
        .iter()
        .map(|r| serde_json::to_string(r).expect("a shared record encodes"))
        .collect()
}

/// A Tasks frame carrying these records.
pub(crate) fn catalog_frame(
    tasks: &[TaskRecord],
    groups: &[GroupRecord],
    principals: &[PrincipalRecord],
) -> Frame {
    Frame::Tasks(msg::Tasks {
        records: as_json(tasks),
        groups: as_json(groups),
        principals: as_json(principals),
    })
}

/// A kind of record the broker keeps and the replicator carries.
pub trait Carried: Shared + Authored {
    fn book(broker: &Broker) -> &Book<Self>;
    /// A frame carrying `records` of this kind.
    fn frame(records: &[Record<Self>]) -> Frame;
}

impl Carried for broker::catalog::GroupSpec {
    fn book(broker: &Broker) -> &Book<Self> {
        broker.groups()
    }

    fn frame(records: &[Record<Self>]) -> Frame {
        catalog_frame(&[], records, &[])
    }
}

impl Carried for auth::PrincipalSpec {
    fn book(broker: &Broker) -> &Book<Self> {
        broker.principals()
    }

    fn frame(records: &[Record<Self>]) -> Frame {
        catalog_frame(&[], &[], records)
    }
}

impl Node {
    /// Every shared record held here (sent when a link comes up, and periodically).
    pub(crate) fn full_catalog_frame(&self) -> Frame {
        catalog_frame(
            &self.tasks.snapshot().records(),
            &self.broker.groups().records(),
            &self.broker.principals().records(),
        )
    }

    /// A change of a group or a principal made here, passed on to every neighbour. It
    /// stores the record (an fsync): call it on a blocking thread.
    pub fn change_shared<S: Carried>(
        &self,
        change: broker::catalog::Change<'_, S>,
        by: &Authorship,
    ) -> Result<Record<S>, ChangeError> {
        let seal = |bytes: &[u8]| self.sealer.seal(bytes);
        let record = S::book(&self.broker).change(change, &self.author(by, &seal))?;
        tracing::info!(kind = S::NOUN, name = %record.spec.name(), version = record.version, deleted = record.deleted, "changed here");
        self.links
            .flood(&S::frame(std::slice::from_ref(&record)), None);
        Ok(record)
    }

    /// A Tasks frame from neighbour `from`: the records are queued to be merged on the
    /// blocking pool (this is called from a link's control reader).
    pub fn on_tasks(&self, from: &str, frame: msg::Tasks) {
        let incoming = Incoming {
            tasks: self.decode(from, frame.records),
            groups: self.decode(from, frame.groups),
            principals: self.decode(from, frame.principals),
        };
        if incoming.tasks.is_empty() && incoming.groups.is_empty() && incoming.principals.is_empty()
        {
            return;
        }
        if !self.tasks_inbox.offer((from.to_string(), incoming)) {
            self.metrics.control_frames_dropped("tasks");
            tracing::warn!(event = "shared_records_dropped", peer = %from, "shared records dropped: too many queued (the periodic catalog resend repairs this)");
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
                    tracing::warn!(event = "shared_record_undecodable", peer = %from, error = %e, "a shared record from a neighbour does not decode; ignored");
                }
            }
        }
        out
    }

    /// The records of `incoming` from neighbour `from` that pass the checks of `trust`
    /// against `held` (the record held of a name, tombstones included); the others are
    /// counted and logged.
    fn admit<S: Authored + broker::catalog::Spec>(
        &self,
        from: &str,
        incoming: Vec<Record<S>>,
        held: impl Fn(&str) -> Option<Record<S>>,
    ) -> Vec<Record<S>> {
        incoming
            .into_iter()
            .filter(|record| {
                let name = record.spec.name();
                match judge(record, held(name).as_ref(), &self.verifier) {
                    Ok(()) => true,
                    Err(refusal) => {
                        self.metrics.control_refused(S::KIND, refusal.reason());
                        tracing::warn!(event = "shared_record_refused", peer = %from, kind = S::KIND, %name, author = %record.changed_by, version = record.version, error = %refusal, "a shared record from a neighbour refused");
                        false
                    }
                }
            })
            .collect()
    }

    /// Merges `incoming` records of one kind from `from`, passing on what was newer.
    fn merge_kind<S: Carried>(&self, from: &str, incoming: Vec<Record<S>>) {
        let book = S::book(&self.broker);
        let incoming = self.admit(from, incoming, |name| book.any_record(name));
        let taken = book.merge(incoming);
        for r in &taken {
            tracing::info!(kind = S::NOUN, name = %r.spec.name(), version = r.version, by = %r.changed_by, deleted = r.deleted, "changed in another region");
        }
        if !taken.is_empty() {
            self.links.flood(&S::frame(&taken), Some(from));
        }
    }

    /// Records from neighbour `from`, taken from the inbox on the blocking pool.
    pub(super) fn merge_shared(&self, from: &str, incoming: Incoming) {
        self.merge_kind(from, incoming.groups);
        self.merge_kind(from, incoming.principals);
        let snapshot = self.tasks.snapshot();
        let tasks = self.admit(from, incoming.tasks, |name| {
            snapshot.records.get(name).cloned()
        });
        let store = |r: &TaskRecord| persist(&self.broker, r);
        let taken = self.tasks.merge(tasks, &self.topology, &store);
        if taken.is_empty() {
            return;
        }
        for r in &taken {
            tracing::info!(task = %r.spec.name, version = r.version, by = %r.changed_by, deleted = r.deleted, "task changed in another region");
        }
        self.tasks_changed(&taken, Some(from));
    }
}
