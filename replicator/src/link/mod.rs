//! A region's links: the QUIC endpoint with its accept and dial loops (`endpoint`), and
//! one link's life from the Hello exchange to its end (`session`), the streams the peer
//! opens on it (`streams`), and the congestion
//! controller (`congestion`), which also measures the path's delivery rate; data-only
//! connections under a link (`data`), and the pulls of a node that does not plan, over
//! them (`worker`).

pub(crate) mod congestion;
pub(crate) mod data;
pub(crate) mod endpoint;
pub(crate) mod session;
mod streams;
pub(crate) mod worker;
