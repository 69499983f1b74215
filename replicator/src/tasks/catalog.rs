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
//! - Readers (every produce, through the DR write gate; serving streams; the console) see a
//!   [`Snapshot`], published whole after each change and read without a lock, so a change
//!   being stored (an fsync) never holds them up. Changes are serialized by the catalog's
//!   own lock, and a change is published only once it is stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use broker::catalog::record::{self, Author, Record, VersionError};
use topology::Topology;

use crate::tasks::spec::{self, Task, TaskError, TaskSpec};

/// A task's record: `{spec, version, changed_by, deleted}`, under the rule every shared
/// record follows (`broker::catalog::record`).
pub type TaskRecord = Record<TaskSpec>;

impl broker::catalog::Spec for TaskSpec {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Why a change was refused. Only `Meta` is transient.
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
    /// A region may change a task it is not part of only at a cluster administrator's
    /// request (docs/security.md).
    #[error(
        "region \"{region}\" is not a region of task \"{task}\": only a cluster administrator may change it here"
    )]
    NotEntitled { task: String, region: String },
    #[error(transparent)]
    Invalid(#[from] TaskError),
    /// Storing the record failed (transient: the change was not made; retry).
    #[error("storing the task record: {0}")]
    Meta(#[from] broker::meta::MetaError),
}

impl From<VersionError> for ChangeError {
    fn from(e: VersionError) -> Self {
        match e {
            VersionError::Conflict {
                name,
                current,
                given,
                ..
            } => ChangeError::Conflict {
                name,
                current,
                given,
            },
            VersionError::NotFound { name, .. } => ChangeError::NotFound(name),
            VersionError::Exists { name, .. } => ChangeError::Exists(name),
        }
    }
}

/// Whether `region` may change a task from `held` (the live spec, if any) to `spec` without
/// a cluster administrator: it must be a region of the task before and after.
pub(crate) fn may_change_task(region: &str, spec: &TaskSpec, held: Option<&TaskSpec>) -> bool {
    spec.involves(region) && held.is_none_or(|h| h.involves(region))
}

/// A change asked for in this region.
pub(crate) type Change<'a> = record::Change<'a, TaskSpec>;

pub(crate) struct Catalog {
    records: BTreeMap<String, TaskRecord>,
    active: Arc<Vec<Arc<Task>>>,
}

/// What readers see of the catalog at one moment.
#[derive(Default)]
pub(crate) struct Snapshot {
    /// Every record, tombstones included.
    pub records: Arc<BTreeMap<String, TaskRecord>>,
    /// The live tasks valid here.
    pub active: Arc<Vec<Arc<Task>>>,
}

impl Snapshot {
    /// The live record of `name`.
    pub fn record(&self, name: &str) -> Option<&TaskRecord> {
        self.records.get(name).filter(|r| !r.deleted)
    }

    pub fn records(&self) -> Vec<TaskRecord> {
        self.records.values().cloned().collect()
    }
}

impl Catalog {
    /// The catalog as it is now, for readers.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            records: Arc::new(self.records.clone()),
            active: self.active.clone(),
        }
    }

    /// The stored records, with config tasks not stored yet added at version 1 (made by
    /// `author`, the region's configuration: an administrator's), and the records this
    /// region made without a seal sealed.
    pub fn load(
        stored: Vec<TaskRecord>,
        config: &[TaskSpec],
        author: &Author<'_>,
        topology: &Topology,
    ) -> Result<Self, TaskError> {
        // The config's tasks are validated as a set, so errors name their index there.
        spec::validate(config, topology)?;
        let mut records: BTreeMap<String, TaskRecord> = stored
            .into_iter()
            .map(|r| (r.spec.name.clone(), r))
            .collect();
        for record in records
            .values_mut()
            .filter(|r| r.changed_by == author.region && r.seal.is_none())
        {
            let by = record.by.clone();
            let own = Author {
                principal: by.as_deref(),
                admin: record.admin,
                ..*author
            };
            own.stamp("task", record);
        }
        for spec in config {
            records
                .entry(spec.name.clone())
                .or_insert_with(|| author.record("task", spec.clone(), 1, false));
        }
        let mut catalog = Catalog {
            records,
            active: Arc::default(),
        };
        catalog.active = catalog.build(topology, &catalog.records);
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

    /// The live tasks of `records` that are valid here, keeping the `Task` (and its rate
    /// limiter, and the pulls that use it) of every task whose spec did not change. When
    /// the whole set does not validate (a record from another region naming a region this
    /// one does not know, two tasks renaming into one topic), tasks are taken in name order
    /// and those that break the set are left inactive: every region with the same records
    /// makes the same choice.
    fn build(
        &self,
        topology: &Topology,
        records: &BTreeMap<String, TaskRecord>,
    ) -> Arc<Vec<Arc<Task>>> {
        let specs: Vec<TaskSpec> = records
            .values()
            .filter(|r| !r.deleted)
            .map(|r| r.spec.clone())
            .collect();
        let fresh = match spec::validate(&specs, topology) {
            Ok(tasks) => tasks,
            Err(_) => {
                let mut taken: Vec<TaskSpec> = Vec::new();
                for spec in specs {
                    let mut trial = taken.clone();
                    trial.push(spec.clone());
                    match spec::validate(&trial, topology) {
                        Ok(_) => taken = trial,
                        Err(e) => {
                            tracing::error!(event = "task_invalid_here", task = %spec.name, error = %e, "task is not valid in this region; inactive here");
                        }
                    }
                }
                spec::validate(&taken, topology).unwrap_or_default()
            }
        };
        Arc::new(
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
        )
    }

    /// A change made in this region: `spec` (create or replace) or a deletion of `name`,
    /// if the current version is `if_version` (when given). Returns the new record, not yet
    /// applied: the caller stores it, then `apply`s it.
    pub fn prepare(
        &self,
        change: Change<'_>,
        author: &Author<'_>,
        topology: &Topology,
    ) -> Result<TaskRecord, ChangeError> {
        let name = change.name;
        let record = record::prepare(&self.records, change, "task", author)?;
        let held = self.record(name).map(|r| &r.spec);
        if !author.admin && !may_change_task(author.region, &record.spec, held) {
            return Err(ChangeError::NotEntitled {
                task: name.to_string(),
                region: author.region.to_string(),
            });
        }
        if !record.deleted {
            // Strict for changes made here: the task must fit with the active ones.
            let mut specs: Vec<TaskSpec> = self
                .active
                .iter()
                .filter(|t| t.name() != name)
                .map(|t| t.spec.clone())
                .collect();
            specs.push(record.spec.clone());
            specs.sort_by(|a, b| a.name.cmp(&b.name));
            spec::validate(&specs, topology)?;
        }
        Ok(record)
    }

    /// Takes a record made by `prepare` (after it was stored).
    pub fn apply(&mut self, record: TaskRecord, topology: &Topology) {
        let mut records = self.records.clone();
        records.insert(record.spec.name.clone(), record);
        self.active = self.build(topology, &records);
        self.records = records;
    }

    #[cfg(test)]
    fn change(
        &mut self,
        name: &str,
        spec: Option<TaskSpec>,
        if_version: Option<u64>,
        create_only: bool,
        region: &str,
        topology: &Topology,
    ) -> Result<TaskRecord, ChangeError> {
        let change = Change {
            name,
            spec,
            if_version,
            create_only,
        };
        // As an administrator: these tests are of versions, not of entitlement.
        let author = Author {
            admin: true,
            ..Author::region(region)
        };
        let record = self.prepare(change, &author, topology)?;
        self.apply(record.clone(), topology);
        Ok(record)
    }

    /// Records from another region; returns those that were newer than what is held, now
    /// taken (whether or not they are valid here: they are kept and passed on all the same,
    /// and `build` decides what is active).
    pub fn merge(&mut self, incoming: Vec<TaskRecord>, topology: &Topology) -> Vec<TaskRecord> {
        let mut records = self.records.clone();
        let taken = record::merge(&mut records, incoming);
        if !taken.is_empty() {
            self.active = self.build(topology, &records);
            self.records = records;
        }
        taken
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn topology() -> Topology {
        let spec = topology::TopologySpec::mesh(&["a", "b"]);
        Topology::new(&spec, &Default::default(), "b").unwrap()
    }

    pub(crate) fn catalog() -> Catalog {
        let config = [TaskSpec::new("t", &["a"], &["b"], "orders")];
        let config_author = Author {
            admin: true,
            ..Author::region("a")
        };
        Catalog::load(vec![], &config, &config_author, &topology()).unwrap()
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

    #[test]
    fn a_record_invalid_here_is_kept_and_passed_on_but_inactive() {
        let t = topology();
        let mut c = catalog();
        let alien = TaskRecord {
            spec: TaskSpec::new("alien", &["a"], &["mars"], "x"),
            version: 1,
            changed_by: "mars".into(),
            deleted: false,
            by: None,
            admin: true,
            seal: None,
        };
        assert_eq!(c.merge(vec![alien.clone()], &t), vec![alien]);
        assert!(c.records().iter().any(|r| r.spec.name == "alien"));
        let active: Vec<String> = c.active().iter().map(|t| t.name().to_string()).collect();
        assert_eq!(active, ["t"]);
    }

    #[test]
    fn a_deletion_wins_over_a_change_at_the_same_version() {
        let t = topology();
        let (mut a, mut z) = (catalog(), catalog());
        let deleted = a.change("t", None, Some(1), false, "a", &t).unwrap();
        let mut spec = z.record("t").unwrap().spec.clone();
        spec.state = crate::tasks::TaskState::Paused;
        let paused = z.change("t", Some(spec), Some(1), false, "z", &t).unwrap();
        assert!(a.merge(vec![paused], &t).is_empty());
        assert_eq!(z.merge(vec![deleted], &t).len(), 1);
        assert!(a.record("t").is_none() && z.record("t").is_none());
    }

    #[test]
    fn a_region_changes_a_task_it_is_not_part_of_only_as_an_administrator() {
        let t = topology();
        let c = catalog();
        let mut spec = c.record("t").unwrap().spec.clone();
        spec.max_records_per_s = Some(5);
        let change = || Change {
            name: "t",
            spec: Some(spec.clone()),
            if_version: Some(1),
            create_only: false,
        };
        assert!(matches!(
            c.prepare(change(), &Author::region("c"), &t),
            Err(ChangeError::NotEntitled { .. })
        ));
        assert!(c.prepare(change(), &Author::region("b"), &t).is_ok());
        let admin = Author {
            principal: Some("root"),
            admin: true,
            ..Author::region("c")
        };
        let record = c.prepare(change(), &admin, &t).unwrap();
        assert_eq!((record.by.as_deref(), record.admin), (Some("root"), true));
    }
}
