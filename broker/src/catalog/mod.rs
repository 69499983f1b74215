//! Control state every region shares, as versioned records under one last-writer-wins
//! rule (`record`), kept in books (`book`) stored in the region's metadata: consumer
//! groups' settings (`groups`) and principals (`principals`). The replicator keeps
//! replication tasks as the same kind of record and carries all of them between regions.

pub mod book;
pub mod groups;
pub mod principals;
pub mod record;

pub use book::{Book, ChangeError, Shared};
pub use groups::{GroupBook, GroupChangeError, GroupRecord, GroupSpec};
pub use principals::{PrincipalBook, PrincipalRecord};
pub use record::{Author, Change, Record, Seal, Spec, VersionError};
