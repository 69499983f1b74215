//! The serving side of replication: what a neighbour is offered (`advertise`), whether its
//! subscription is admitted (`admission`, pure), serving a stored sub-log (`stream`),
//! serving a new one of its own before the neighbour asks (`push`), relaying one without
//! storing it (`relay`), what a neighbour may receive of each batch
//! (`filter`), and writing batches to a stream, packed or not (`send`).

pub(crate) mod admission;
pub(crate) mod advertise;
mod filter;
pub(crate) mod push;
mod relay;
mod send;
pub(crate) mod stream;
