//! The task catalog: every replication task with its version, changed at run time,
//! persisted in the region's metadata and shared with every other region.
//!
//! - A record is `{spec, version, changed_by, deleted}`. A change made here (the console
//!   API) must name the version it read (`if_version`); a stale one is a conflict. The new
//!   record gets `version + 1`.
//! - Records travel between regions in `Tasks` control frames: in full when a link comes
//!   up, and each change as it happens, passed on to the other neighbours. A region keeps
//!   the record with the higher `(version, changed_by)`: concurrent changes in two regions
//!   converge on the same winner everywhere (last writer wins, by version then region).
//! - The config's `[[tasks]]` seed the catalog at version 1; a task changed or deleted
//!   through the API stays so across restarts (deletions are kept as tombstones).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use topology::Topology;

use crate::task::{self, Task, TaskError, TaskSpec};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub spec: TaskSpec,
    pub version: u64,
    /// The region where this version was made.
    pub changed_by: String,
    #[serde(default)]
    pub deleted: bool,
}

impl TaskRecord {
    fn newer_than(&self, other: &TaskRecord) -> bool {
        (self.version, &self.changed_by) > (other.version, &other.changed_by)
    }
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    #[error("task \"{name}\" is at version {current}, not {given}")]
    Conflict {
        name: String,
        current: u64,
        given: u64,
    },
    #[error("no task \"{0}\"")]
    NotFound(String),
    #[error("task \"{0}\" already exists")]
    Exists(String),
    #[error(transparent)]
    Invalid(#[from] TaskError),
    #[error("metadata: {0}")]
    Meta(String),
}

pub(crate) struct Catalog {
    records: BTreeMap<String, TaskRecord>,
    active: Arc<Vec<Arc<Task>>>,
}

impl Catalog {
    /// The stored records, with config tasks not stored yet added at version 1.
    pub fn load(
        stored: Vec<TaskRecord>,
        config: &[TaskSpec],
        region: &str,
        topology: &Topology,
    ) -> Result<Self, TaskError> {
        // The config's tasks are validated as a set, so errors name their index there.
        task::validate(config, topology)?;
        let mut records: BTreeMap<String, TaskRecord> = stored
            .into_iter()
            .map(|r| (r.spec.name.clone(), r))
            .collect();
        for spec in config {
            records
                .entry(spec.name.clone())
                .or_insert_with(|| TaskRecord {
                    spec: spec.clone(),
                    version: 1,
                    changed_by: region.to_string(),
                    deleted: false,
                });
        }
        let mut catalog = Catalog {
            records,
            active: Arc::default(),
        };
        catalog.active = catalog.build(topology, &catalog.records)?;
        Ok(catalog)
    }

    pub fn active(&self) -> Arc<Vec<Arc<Task>>> {
        self.active.clone()
    }

    pub fn records(&self) -> Vec<TaskRecord> {
        self.records.values().cloned().collect()
    }

    pub fn record(&self, name: &str) -> Option<&TaskRecord> {
        self.records.get(name).filter(|r| !r.deleted)
    }

    /// Validates the live tasks of `records`, keeping the `Task` (and its rate limiter,
    /// and the pulls that use it) of every task whose spec did not change.
    fn build(
        &self,
        topology: &Topology,
        records: &BTreeMap<String, TaskRecord>,
    ) -> Result<Arc<Vec<Arc<Task>>>, TaskError> {
        let specs: Vec<TaskSpec> = records
            .values()
            .filter(|r| !r.deleted)
            .map(|r| r.spec.clone())
            .collect();
        let fresh = task::validate(&specs, topology)?;
        Ok(Arc::new(
            fresh
                .into_iter()
                .map(|t| {
                    self.active
                        .iter()
                        .find(|old| old.spec == t.spec)
                        .cloned()
                        .unwrap_or(t)
                })
                .collect(),
        ))
    }

    /// A change made in this region: `spec` (create or replace) or a deletion of `name`,
    /// if the current version is `if_version` (when given). Returns the new record.
    pub fn change(
        &mut self,
        name: &str,
        spec: Option<TaskSpec>,
        if_version: Option<u64>,
        create_only: bool,
        region: &str,
        topology: &Topology,
    ) -> Result<TaskRecord, ChangeError> {
        let current = self.records.get(name);
        let live = current.filter(|r| !r.deleted);
        if create_only && live.is_some() {
            return Err(ChangeError::Exists(name.to_string()));
        }
        if spec.is_none() && live.is_none() {
            return Err(ChangeError::NotFound(name.to_string()));
        }
        let version = current.map_or(0, |r| r.version);
        if let Some(given) = if_version
            && given != live.map_or(0, |r| r.version)
        {
            return Err(ChangeError::Conflict {
                name: name.to_string(),
                current: live.map_or(0, |r| r.version),
                given,
            });
        }
        let record = TaskRecord {
            spec: spec
                .clone()
                .unwrap_or_else(|| live.expect("checked").spec.clone()),
            version: version + 1,
            changed_by: region.to_string(),
            deleted: spec.is_none(),
        };
        let mut records = self.records.clone();
        records.insert(name.to_string(), record.clone());
        self.active = self.build(topology, &records)?;
        self.records = records;
        Ok(record)
    }

    /// Records from another region; returns those that were newer than what is held (and
    /// valid here), now taken.
    pub fn merge(&mut self, incoming: Vec<TaskRecord>, topology: &Topology) -> Vec<TaskRecord> {
        let mut taken = Vec::new();
        for record in incoming {
            let name = record.spec.name.clone();
            if self
                .records
                .get(&name)
                .is_some_and(|held| !record.newer_than(held))
            {
                continue;
            }
            let mut records = self.records.clone();
            records.insert(name.clone(), record.clone());
            match self.build(topology, &records) {
                Ok(active) => {
                    self.active = active;
                    self.records = records;
                    taken.push(record);
                }
                Err(e) => {
                    tracing::error!(task = %name, version = record.version, from = %record.changed_by, error = %e, "a task change from another region is not valid here; ignored");
                }
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        let spec = topology::TopologySpec::mesh(&["a", "b"]);
        Topology::new(&spec, &Default::default(), "b").unwrap()
    }

    fn catalog() -> Catalog {
        let config = [TaskSpec::new("t", &["a"], &["b"], "orders")];
        Catalog::load(vec![], &config, "a", &topology()).unwrap()
    }

    #[test]
    fn versions_guard_changes() {
        let t = topology();
        let mut c = catalog();
        assert_eq!(c.record("t").unwrap().version, 1);
        let mut spec = c.record("t").unwrap().spec.clone();
        spec.max_records_per_s = Some(10);
        let r = c
            .change("t", Some(spec.clone()), Some(1), false, "a", &t)
            .unwrap();
        assert_eq!(r.version, 2);
        let stale = c
            .change("t", Some(spec), Some(1), false, "a", &t)
            .unwrap_err();
        assert!(matches!(
            stale,
            ChangeError::Conflict {
                current: 2,
                given: 1,
                ..
            }
        ));
        let gone = c.change("t", None, Some(2), false, "a", &t).unwrap();
        assert!(gone.deleted && gone.version == 3);
        assert!(c.active().is_empty());
        assert!(matches!(
            c.change("t", None, None, false, "a", &t),
            Err(ChangeError::NotFound(_))
        ));
    }

    #[test]
    fn an_unchanged_task_keeps_its_object() {
        let t = topology();
        let mut c = catalog();
        let before = c.active()[0].clone();
        c.change(
            "u",
            Some(TaskSpec::new("u", &["b"], &["a"], "x")),
            None,
            true,
            "a",
            &t,
        )
        .unwrap();
        assert!(Arc::ptr_eq(&before, &c.active()[0]));
    }

    #[test]
    fn merges_converge_on_the_same_winner() {
        let t = topology();
        let (mut a, mut b) = (catalog(), catalog());
        let mut spec = a.record("t").unwrap().spec.clone();
        spec.max_records_per_s = Some(5);
        let from_a = a
            .change("t", Some(spec.clone()), Some(1), false, "a", &t)
            .unwrap();
        spec.max_records_per_s = Some(7);
        let from_b = b.change("t", Some(spec), Some(1), false, "b", &t).unwrap();
        assert_eq!(a.merge(vec![from_b.clone()], &t), vec![from_b.clone()]);
        assert!(b.merge(vec![from_a], &t).is_empty());
        assert_eq!(a.records(), b.records());
        assert_eq!(a.record("t").unwrap().spec.max_records_per_s, Some(7));
    }
}
