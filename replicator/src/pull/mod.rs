//! The pulling side of replication: which neighbour pulls which sub-log (`plan`, pure),
//! the planner task that owns that decision's state and starts and stops pulls
//! (`planner`), one pull's stream (`stream`), and why a pull stops (`error`).

mod adopt;
mod error;
pub mod plan;
pub(crate) mod planner;
mod stream;

pub(crate) use planner::REFUSAL_HOLD_HEARTBEATS;
pub(crate) use stream::{PullSpec, run as run_pull};
