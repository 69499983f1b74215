//! The open links of a node, published as an immutable table: readers (flooding, cursor
//! sync, relays looking for their upstream, status) never lock it; a link's session adds
//! and removes its own entry through [`LinkTable::modify`].

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wire::message as msg;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use topology::LinkHealth;

use crate::budget::ByteBudget;
use crate::compression::LinkCompression;
use crate::inbox::Inbox;
use crate::published::Published;
use crate::wire::{Frame, FrameLimits};

/// What the pulling and serving code needs of a link.
pub(crate) struct LinkCtx {
    pub id: u64,
    pub peer: String,
    pub connection: quinn::Connection,
    /// Cancelled when the link ends: every stream of the link stops.
    pub stop: CancellationToken,
    /// Group cursors received on this link, waiting to be merged (one worker per link).
    pub cursors: Inbox<Vec<msg::GroupCursor>>,
    /// Frame limits on this link: this region's, raised to what the peer may send.
    pub limits: FrameLimits,
    /// Whether batches sent on this link are packed, and how.
    pub compression: LinkCompression,
    /// Bytes of batches read to be sent on this link, and received on it and not yet
    /// applied (`budget`).
    pub send_budget: ByteBudget,
    pub receive_budget: ByteBudget,
    /// The peer serves data-only connections under this link (`link::data`).
    pub serves_data_connections: bool,
    /// A data-only connection served without the region's links and routes (by a node
    /// pulling its share, `link::data`): only this region's own sub-logs are served on it.
    pub alone: bool,
}

/// A link whose connection is open (its health says whether it is up for routing).
pub(crate) struct LinkHandle {
    pub ctx: Arc<LinkCtx>,
    /// Heartbeat RTT and up/down state; a leaf lock.
    pub health: Mutex<LinkHealth>,
    /// The region that dialled this connection.
    pub dialer: String,
    /// The link's control stream (advertisements, heartbeats, link states, tasks,
    /// cursors), bounded: see `link::session`.
    pub control: mpsc::Sender<Frame>,
    /// UDP bytes already counted in the link metrics.
    pub counted_tx: AtomicU64,
    pub counted_rx: AtomicU64,
}

impl LinkHandle {
    pub fn id(&self) -> u64 {
        self.ctx.id
    }

    /// Whether the link is up by its heartbeats, and its smoothed RTT.
    pub fn health_now(&self) -> (bool, Option<Duration>) {
        let health = self.health.lock().expect("link health lock");
        (health.is_up(), health.srtt())
    }
}

/// The open links by peer region.
pub(crate) type LinkTable = Published<HashMap<String, Arc<LinkHandle>>>;

impl LinkTable {
    /// The open link to `peer`.
    pub fn get(&self, peer: &str) -> Option<Arc<LinkHandle>> {
        self.load().get(peer).cloned()
    }

    /// Sends `frame` on every link's control stream but `except`'s. A full control queue
    /// drops it: everything flooded is also re-sent periodically.
    pub fn flood(&self, frame: &Frame, except: Option<&str>) {
        for (peer, link) in self.load().iter() {
            if Some(peer.as_str()) != except {
                let _ = link.control.try_send(frame.clone());
            }
        }
    }
}
