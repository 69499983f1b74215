//! Control state every region shares, as versioned records under one last-writer-wins
//! rule (`record`): consumer groups' settings live here (`groups`); the replicator keeps
//! replication tasks as the same kind of record and carries both between regions.

pub mod groups;
pub mod record;

pub use groups::{GroupBook, GroupChangeError, GroupRecord, GroupSpec};
pub use record::{Change, Record, Spec, VersionError};
