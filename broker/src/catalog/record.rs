//! A versioned record of control state that every region shares (replication tasks,
//! consumer groups), and the one last-writer-wins rule they all follow:
//!
//! - a record is `{spec, version, changed_by, deleted}`; a change made in a region names
//!   the version it read (`if_version`; a stale one is a conflict) and gets `version + 1`;
//! - a deletion keeps a tombstone, so a later copy of the old record cannot bring it back;
//! - records from another region are taken when they are newer by `(version, deleted,
//!   changed_by)`: concurrent changes in two regions converge on the same winner everywhere
//!   (by version, then a deletion over a change, then the region name);
//! - a record names who made it: the region (`changed_by`), the principal who asked (`by`),
//!   whether that principal was a cluster administrator (`admin`), and carries the
//!   region's seal over all of it (`seal`, made by the replicator with the region's key;
//!   `signed_bytes` is what it signs). Receivers check the seal and the author's
//!   entitlement before the rule above applies;
//! - a version grows by one per change: a record whose version is more than
//!   `MAX_VERSION_STEP` past the one held is refused, so no record can jump to a version
//!   that nothing could ever supersede (or wrap).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a record holds: something with a name.
pub trait Spec: Clone {
    fn name(&self) -> &str;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<S> {
    pub spec: S,
    pub version: u64,
    /// The region where this version was made.
    pub changed_by: String,
    #[serde(default)]
    pub deleted: bool,
    /// The principal who asked for this version (none: the region itself, for example a
    /// failover or its configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Made by a cluster administrator (or the configuration): such a change may touch a
    /// task of other regions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// The authoring region's signature over `signed_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<Seal>,
}

/// A region's signature over a record: the TLS signature scheme (IANA code) of its key,
/// the signature and the region's certificate (DER), both base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub scheme: u16,
    pub signature: String,
    pub certificate: String,
}

/// How far past the version held a record's version may be (see the module documentation).
pub const MAX_VERSION_STEP: u64 = 1 << 20;

/// Whether `version` may follow the version held (`0`: nothing held).
pub fn version_fits(version: u64, held: u64) -> bool {
    version <= held.saturating_add(MAX_VERSION_STEP)
}

/// What a region seals of a record of `kind` ("task", "group", "principal"): a label, the
/// kind and the record's JSON without its seal.
pub fn signed_bytes<S: Serialize + Clone>(kind: &str, record: &Record<S>) -> Vec<u8> {
    let mut unsealed = record.clone();
    unsealed.seal = None;
    let mut bytes = format!("georouter/record/1\0{kind}\0").into_bytes();
    serde_json::to_writer(&mut bytes, &unsealed).expect("a record encodes");
    bytes
}

/// Signs `signed_bytes` with the region's key.
pub type SealFn<'a> = &'a dyn Fn(&[u8]) -> Seal;

/// Who makes a change here, and how its record is sealed.
#[derive(Clone, Copy)]
pub struct Author<'a> {
    pub region: &'a str,
    /// The principal who asked (none: the region itself).
    pub principal: Option<&'a str>,
    pub admin: bool,
    /// Signs `signed_bytes` with the region's key (none where nothing is replicated).
    pub sealer: Option<SealFn<'a>>,
}

impl<'a> Author<'a> {
    /// The region itself, unsealed (tests, a region without replication).
    pub fn region(region: &'a str) -> Self {
        Author {
            region,
            principal: None,
            admin: false,
            sealer: None,
        }
    }

    /// Version `version` of `spec` (a deletion when `deleted`), made and sealed by this
    /// author.
    pub fn record<S: Serialize + Clone>(
        &self,
        kind: &str,
        spec: S,
        version: u64,
        deleted: bool,
    ) -> Record<S> {
        let mut record = Record {
            spec,
            version,
            changed_by: String::new(),
            deleted,
            by: None,
            admin: false,
            seal: None,
        };
        self.stamp(kind, &mut record);
        record
    }

    /// Stamps `record` with this authorship and seals it.
    pub fn stamp<S: Serialize + Clone>(&self, kind: &str, record: &mut Record<S>) {
        record.changed_by = self.region.to_string();
        record.by = self.principal.map(str::to_string);
        record.admin = self.admin;
        record.seal = None;
        if let Some(sealer) = self.sealer {
            record.seal = Some(sealer(&signed_bytes(kind, record)));
        }
    }
}

impl<S> Record<S> {
    /// The order every region applies (see the module documentation).
    pub fn newer_than(&self, other: &Record<S>) -> bool {
        (self.version, self.deleted, &self.changed_by)
            > (other.version, other.deleted, &other.changed_by)
    }
}

/// A change asked for in this region.
pub struct Change<'a, S> {
    pub name: &'a str,
    /// The new spec; `None` deletes.
    pub spec: Option<S>,
    /// The version the caller read (0: absent); `None` changes whatever is there.
    pub if_version: Option<u64>,
    pub create_only: bool,
}

/// Why a change does not fit the records held. `kind` names what the records are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("{kind} \"{name}\" is at version {current}, not {given}")]
    Conflict {
        kind: &'static str,
        name: String,
        current: u64,
        given: u64,
    },
    #[error("no {kind} \"{name}\"")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} \"{name}\" already exists")]
    Exists { kind: &'static str, name: String },
}

/// The record `change` makes over `records` in `region`, if it fits the versions held (the
/// caller validates the spec, stores the record, then inserts it).
pub fn prepare<S: Spec + Serialize>(
    records: &BTreeMap<String, Record<S>>,
    change: Change<'_, S>,
    kind: &'static str,
    author: &Author<'_>,
) -> Result<Record<S>, VersionError> {
    let Change {
        name,
        spec,
        if_version,
        create_only,
    } = change;
    let current = records.get(name);
    let live = current.filter(|r| !r.deleted);
    if create_only && live.is_some() {
        return Err(VersionError::Exists {
            kind,
            name: name.to_string(),
        });
    }
    let deleted = spec.is_none();
    let Some(spec) = spec.or_else(|| live.map(|r| r.spec.clone())) else {
        return Err(VersionError::NotFound {
            kind,
            name: name.to_string(),
        });
    };
    let live_version = live.map_or(0, |r| r.version);
    if let Some(given) = if_version
        && given != live_version
    {
        return Err(VersionError::Conflict {
            kind,
            name: name.to_string(),
            current: live_version,
            given,
        });
    }
    let version = current.map_or(0, |r| r.version) + 1;
    Ok(author.record(kind, spec, version, deleted))
}

/// Takes from `incoming` the records newer than those held in `records`; returns them.
pub fn merge<S: Spec>(
    records: &mut BTreeMap<String, Record<S>>,
    incoming: Vec<Record<S>>,
) -> Vec<Record<S>> {
    let mut taken = Vec::new();
    for record in incoming {
        let newer = records
            .get(record.spec.name())
            .is_none_or(|held| record.newer_than(held));
        if newer {
            records.insert(record.spec.name().to_string(), record.clone());
            taken.push(record);
        }
    }
    taken
}
