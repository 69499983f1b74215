//! The serving side of replication: what a neighbour is offered (`advertise`), whether its
//! subscription is admitted (`admission`, pure), serving a stored sub-log (`stream`),
//! relaying one without storing it (`relay`), and what a neighbour may receive of each
//! batch (`filter`).

pub(crate) mod admission;
pub(crate) mod advertise;
mod filter;
mod relay;
pub(crate) mod stream;
