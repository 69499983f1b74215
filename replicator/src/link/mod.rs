//! A region's links: the QUIC endpoint with its accept and dial loops (`endpoint`), and
//! one link's life from the Hello exchange to its end (`session`).

pub(crate) mod congestion;
pub(crate) mod endpoint;
pub(crate) mod session;
