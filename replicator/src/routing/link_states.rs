//! The link-state database of a node: every region's latest link state (its own included),
//! and this region's sequence number. Each region floods its own state every heartbeat
//! interval and at once when a link changes; a received state newer than the one held is
//! stored and passed on to the other neighbours. States are sealed by their region
//! (`identity::seal`; the node checks a received one before it comes here) and kept as
//! received, so what is passed on still carries its region's seal. Pure: the node holds it
//! under the routing lock and does the sending.

use std::collections::BTreeMap;

use crate::wire::message as msg;
use topology::{LinkState, LinkStates};

use crate::wire::Frame;

pub(crate) struct LinkStateDb {
    pub states: LinkStates,
    /// Each region's latest state as sealed by it.
    sealed: BTreeMap<String, msg::LinkState>,
    seq: u64,
}

impl LinkStateDb {
    /// `now_ms` seeds the sequence number, so a restarted region's states are newer than
    /// those it sent before.
    pub fn new(now_ms: u64) -> Self {
        LinkStateDb {
            states: LinkStates::default(),
            sealed: BTreeMap::new(),
            seq: now_ms,
        }
    }

    /// Takes this region's own state (links by neighbour: up, smoothed RTT in µs) under a
    /// new sequence number, never below `now_ms`, sealed by `seal`; returns the frame
    /// that floods it.
    pub fn own(
        &mut self,
        region: &str,
        mut own: LinkState,
        now_ms: u64,
        seal: impl FnOnce(&mut msg::LinkState),
    ) -> Frame {
        self.seq = (self.seq + 1).max(now_ms);
        own.seq = self.seq;
        let mut sealed = to_message(region, &own);
        seal(&mut sealed);
        self.states.update(region, own);
        self.sealed.insert(region.to_string(), sealed.clone());
        Frame::LinkState(sealed)
    }

    /// A state flooded by `region`; whether it was newer than the one held.
    pub fn heard(&mut self, state: &msg::LinkState) -> bool {
        let parsed = LinkState {
            seq: state.seq,
            links: state
                .links
                .iter()
                .map(|l| (l.peer.clone(), (l.up, l.srtt_us)))
                .collect(),
        };
        let newer = self.states.update(&state.region, parsed);
        if newer {
            self.sealed.insert(state.region.clone(), state.clone());
        }
        newer
    }

    /// Every state held, as frames (for a neighbour whose link just came up).
    pub fn frames(&self) -> Vec<Frame> {
        self.sealed
            .values()
            .cloned()
            .map(Frame::LinkState)
            .collect()
    }
}

fn to_message(region: &str, state: &LinkState) -> msg::LinkState {
    msg::LinkState {
        region: region.to_string(),
        seq: state.seq,
        links: state
            .links
            .iter()
            .map(|(peer, (up, srtt))| msg::LinkHealth {
                peer: peer.clone(),
                up: *up,
                srtt_us: *srtt,
            })
            .collect(),
        seal: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(up: bool) -> LinkState {
        LinkState {
            seq: 0,
            links: [("b".to_string(), (up, 1000))].into_iter().collect(),
        }
    }

    #[test]
    fn own_states_get_rising_sequence_numbers_and_round_trip() {
        let mut db = LinkStateDb::new(100);
        let Frame::LinkState(first) = db.own("a", state(true), 50, |_| {}) else {
            panic!("a link state frame")
        };
        let Frame::LinkState(second) = db.own("a", state(false), 50, |_| {}) else {
            panic!("a link state frame")
        };
        assert!(second.seq > first.seq && first.seq > 100);
        let mut other = LinkStateDb::new(0);
        assert!(other.heard(&second));
        assert!(!other.heard(&first), "an older state is not taken");
        assert_eq!(other.frames().len(), 1);
    }
}
