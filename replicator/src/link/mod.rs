//! A region's links: the QUIC endpoint with its accept and dial loops (`endpoint`), and
//! one link's life from the Hello exchange to its end (`session`), the streams the peer
//! opens on it (`streams`), and the congestion
//! controller (`congestion`), which also measures the path's delivery rate.

pub(crate) mod congestion;
pub(crate) mod endpoint;
pub(crate) mod session;
mod streams;
