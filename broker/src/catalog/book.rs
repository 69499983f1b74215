//! A book of shared records of one kind (consumer groups, principals): the records held,
//! stored in the region's metadata, changed here or merged from other regions under the
//! one rule of `record`. Readers take the published map without waiting on a change being
//! stored; changes are serialized by the book's writer lock, held across the store (an
//! fsync), so a change is visible only once it is durable. Subscribers are woken after each
//! change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::record::{self, Author, Change, Record, Seal, Spec, VersionError};
use crate::meta::{MetaError, MetaStore, SharedKind};

/// What a book holds.
pub trait Shared: Spec + Serialize + DeserializeOwned + PartialEq + Send + Sync + 'static {
    const KIND: SharedKind;
    /// What one is called in messages ("group").
    const NOUN: &'static str;
    /// The field that is wrong and why.
    fn validate(&self) -> Result<(), (&'static str, String)>;
}

/// Why a change was refused. Only `Meta` is transient.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("{reason}")]
    Invalid { field: &'static str, reason: String },
    /// Storing the record failed: the change was not made; retry.
    #[error("storing the record: {0}")]
    Meta(#[from] MetaError),
}

pub struct Book<S> {
    /// The writer lock (see the module documentation).
    writer: Mutex<()>,
    published: RwLock<Arc<BTreeMap<String, Record<S>>>>,
    changes: watch::Sender<u64>,
    meta: Arc<dyn MetaStore>,
}

impl<S: Shared> Book<S> {
    /// The records stored in `meta`.
    pub fn load(meta: Arc<dyn MetaStore>) -> Result<Self, MetaError> {
        let mut records = BTreeMap::new();
        for (name, bytes) in meta.shared_records(S::KIND)? {
            let record: Record<S> =
                serde_json::from_slice(&bytes).map_err(|source| MetaError::Decode {
                    key: format!("{}/{name}", S::KIND.tree()),
                    source,
                })?;
            records.insert(name, record);
        }
        Ok(Book {
            writer: Mutex::new(()),
            published: RwLock::new(Arc::new(records)),
            changes: watch::Sender::new(0),
            meta,
        })
    }

    fn load_published(&self) -> Arc<BTreeMap<String, Record<S>>> {
        self.published.read().expect("book").clone()
    }

    fn publish(&self, records: BTreeMap<String, Record<S>>) {
        *self.published.write().expect("book") = Arc::new(records);
        self.changes.send_modify(|version| *version += 1);
    }

    /// Wakes after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The spec of `name`, if it is live.
    pub fn get(&self, name: &str) -> Option<S> {
        self.record(name).map(|r| r.spec)
    }

    /// The live record of `name`.
    pub fn record(&self, name: &str) -> Option<Record<S>> {
        self.load_published()
            .get(name)
            .filter(|r| !r.deleted)
            .cloned()
    }

    /// The record of `name`, a deletion included.
    pub fn any_record(&self, name: &str) -> Option<Record<S>> {
        self.load_published().get(name).cloned()
    }

    /// Every record, deletions included (what is sent to other regions).
    pub fn records(&self) -> Vec<Record<S>> {
        self.load_published().values().cloned().collect()
    }

    /// The live records, by name.
    pub fn live(&self) -> Vec<Record<S>> {
        self.load_published()
            .values()
            .filter(|r| !r.deleted)
            .cloned()
            .collect()
    }

    /// A change made here by `author`: checked, stored (an fsync: call it where blocking is
    /// allowed), then published.
    pub fn change(
        &self,
        change: Change<'_, S>,
        author: &Author<'_>,
    ) -> Result<Record<S>, ChangeError> {
        if let Some(spec) = &change.spec {
            spec.validate()
                .map_err(|(field, reason)| ChangeError::Invalid { field, reason })?;
            if spec.name() != change.name {
                return Err(ChangeError::Invalid {
                    field: "name",
                    reason: format!(
                        "the body names {} \"{}\", the path \"{}\"",
                        S::NOUN,
                        spec.name(),
                        change.name
                    ),
                });
            }
        }
        let _writer = self.writer.lock().expect("book writer");
        let held = self.load_published();
        let record = record::prepare(&held, change, S::NOUN, author)?;
        self.store(&record)?;
        let mut records = (*held).clone();
        records.insert(record.spec.name().to_string(), record.clone());
        self.publish(records);
        Ok(record)
    }

    /// Records from another region: those newer than what is held are stored, published
    /// and returned (to be passed on). A record that cannot be stored is still taken (it is
    /// sent again by the periodic resend).
    pub fn merge(&self, incoming: Vec<Record<S>>) -> Vec<Record<S>> {
        let _writer = self.writer.lock().expect("book writer");
        let mut records = (*self.load_published()).clone();
        let taken = record::merge(&mut records, incoming);
        for record in &taken {
            if let Err(e) = self.store(record) {
                tracing::error!(event = "shared_record_store_failed", kind = S::NOUN, name = %record.spec.name(), error = %e, "storing a shared record failed");
            }
        }
        if !taken.is_empty() {
            self.publish(records);
        }
        taken
    }

    /// Seals the records `region` made that carry no seal (made before replication ran
    /// here, or by an older version), storing them again; returns how many.
    pub fn seal_own(&self, region: &str, sealer: &dyn Fn(&[u8]) -> Seal) -> usize {
        let _writer = self.writer.lock().expect("book writer");
        let mut records = (*self.load_published()).clone();
        let mut sealed = 0;
        for record in records
            .values_mut()
            .filter(|r| r.changed_by == region && r.seal.is_none())
        {
            record.seal = Some(sealer(&record::signed_bytes(S::NOUN, record)));
            if let Err(e) = self.store(record) {
                tracing::error!(event = "sealed_record_store_failed", kind = S::NOUN, name = %record.spec.name(), error = %e, "storing a sealed record failed");
            }
            sealed += 1;
        }
        if sealed > 0 {
            self.publish(records);
        }
        sealed
    }

    fn store(&self, record: &Record<S>) -> Result<(), MetaError> {
        let bytes = serde_json::to_vec(record).expect("a record encodes");
        self.meta
            .put_shared_record(S::KIND, record.spec.name(), &bytes)
    }
}
