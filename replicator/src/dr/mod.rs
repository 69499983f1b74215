//! Disaster recovery: DR tasks (`dr = { primary = "..." }`), the produce fence, failover
//! and failback, and the RPO per origin (`observe::rpo`).
//!
//! - **Fence.** A region of a DR task accepts produce on the task's topics only while it
//!   is the task's primary and no planned failover is draining ([`Gate`], installed as the
//!   broker's write gate). The refusal names the primary and the epoch.
//! - **Failover** runs in the region to promote (its console). *Planned*: the task record
//!   gets `promoting = here` and a new epoch, so no region accepts produce; once this region
//!   holds everything the others advertise for the task (lag 0, held through a quiet period
//!   that covers an advertisement round and a round trip) it becomes the primary. If that
//!   does not happen in time the primary stays where it was. *Forced*: this region becomes
//!   the primary now; the report gives, per origin, what had not arrived (the realised RPO).
//! - **Failback** is a planned failover back to the task's first source.
//!
//! Task records travel to every region (`tasks::catalog`), so the fence follows the record. Data
//! of a DR task flows both ways between its regions, so nothing written on either side is
//! lost by a switch: records an old primary acknowledged before it learnt of a forced
//! failover still reach the new primary when the link returns, at their own offsets.

mod failover;
mod fence;

pub use crate::observe::{OriginRpo, rpo_by_origin};
pub use failover::{FailoverError, FailoverMode, FailoverReport, NotCaughtUp};
pub(crate) use failover::{Host, failback, failover};
pub use fence::StoredTasks;
pub(crate) use fence::{Gate, refusal};
