//! The PoP consumption state of one group in one partition, pure: which messages are done
//! (acknowledged, dead-lettered, or filtered out by the group's subscription), and which
//! are in flight (handed out, invisible until a deadline, with their delivery attempt and
//! the nonce that makes their receipt handle valid).
//!
//! A message is named by its identity `(origin, offset)`, the same in every region. Per
//! origin, everything below `done_below` is done; `done` holds what was acknowledged out of
//! order above it and is folded into `done_below` as the gaps fill; offsets that hold no
//! record (a filtered replication range, retention) are passed by `skip_to` when the
//! frontier reaches them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One handed-out message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// When it becomes visible again (ms since the epoch).
    pub visible_at_ms: i64,
    /// Deliveries so far (1 for the first).
    pub attempt: u32,
    /// Matches the receipt handle given out last; an older handle is invalid.
    pub nonce: u64,
    /// The message group of a FIFO topic's message: later messages of the group wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// Per origin: the incarnation of its sub-log this state is of (0: not known yet).
    pub incarnations: BTreeMap<String, u64>,
    /// Per origin: every offset below is done.
    pub done_below: BTreeMap<String, u64>,
    /// Done above the origin's `done_below`.
    pub done: BTreeSet<(String, u64)>,
    pub in_flight: BTreeMap<(String, u64), InFlight>,
}

/// Why an acknowledgement or a change of invisibility was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error(
        "message {origin}@{offset} is not in flight (acknowledged already, or never handed out)"
    )]
    NotInFlight { origin: String, offset: u64 },
    #[error(
        "the receipt handle of message {origin}@{offset} is stale: it was handed out again or its invisibility was changed since"
    )]
    Stale { origin: String, offset: u64 },
}

/// The stored form (JSON keys must be strings; the state's maps are keyed by pairs).
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default)]
    incarnations: BTreeMap<String, u64>,
    done_below: BTreeMap<String, u64>,
    done: Vec<(String, u64)>,
    in_flight: Vec<(String, u64, InFlight)>,
}

impl PartitionState {
    /// The bytes stored in the region's metadata.
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored = Stored {
            incarnations: self.incarnations.clone(),
            done_below: self.done_below.clone(),
            done: self.done.iter().cloned().collect(),
            in_flight: self
                .in_flight
                .iter()
                .map(|((o, off), f)| (o.clone(), *off, f.clone()))
                .collect(),
        };
        serde_json::to_vec(&stored).expect("a PoP state encodes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let stored: Stored = serde_json::from_slice(bytes)?;
        Ok(PartitionState {
            incarnations: stored.incarnations,
            done_below: stored.done_below,
            done: stored.done.into_iter().collect(),
            in_flight: stored
                .in_flight
                .into_iter()
                .map(|(o, off, f)| ((o, off), f))
                .collect(),
        })
    }

    /// Follows `origin`'s sub-log to `incarnation`: a sub-log replaced by another
    /// incarnation (its topic deleted and created again at the origin) is consumed from
    /// its start, and what was done or in flight of the old one is forgotten. Returns
    /// whether anything was forgotten.
    pub fn follow(&mut self, origin: &str, incarnation: u64) -> bool {
        let held = self.incarnations.get(origin).copied().unwrap_or(0);
        if held == incarnation || incarnation == 0 {
            return false;
        }
        self.incarnations.insert(origin.to_string(), incarnation);
        if held == 0 {
            return false;
        }
        self.done_below.remove(origin);
        self.done.retain(|(o, _)| o != origin);
        self.in_flight.retain(|(o, _), _| o != origin);
        true
    }

    /// Where the first not-done offset of `origin` may be.
    pub fn frontier(&self, origin: &str) -> u64 {
        self.done_below.get(origin).copied().unwrap_or(0)
    }

    pub fn is_done(&self, origin: &str, offset: u64) -> bool {
        offset < self.frontier(origin) || self.done.contains(&(origin.to_string(), offset))
    }

    /// Neither done nor in flight: may be handed out.
    pub fn is_fresh(&self, origin: &str, offset: u64) -> bool {
        !self.is_done(origin, offset) && !self.in_flight.contains_key(&(origin.to_string(), offset))
    }

    /// In-flight messages whose invisibility ended at `now_ms`, oldest first.
    pub fn expired(&self, now_ms: i64) -> Vec<((String, u64), InFlight)> {
        let mut expired: Vec<_> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.visible_at_ms <= now_ms)
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        expired.sort_by_key(|(_, f)| f.visible_at_ms);
        expired
    }

    /// Hands `(origin, offset)` out as `flight` says (until when, which attempt, which
    /// nonce, which message group).
    pub fn hand_out(&mut self, origin: &str, offset: u64, flight: InFlight) {
        self.in_flight.insert((origin.to_string(), offset), flight);
    }

    /// The message groups of `origin` with a message in flight: their later messages wait.
    pub fn busy_groups(&self, origin: &str) -> std::collections::HashSet<String> {
        self.in_flight
            .iter()
            .filter(|((o, _), _)| o == origin)
            .filter_map(|(_, f)| f.group.clone())
            .collect()
    }

    /// The in-flight message `(origin, offset)` if `nonce` is its handle's.
    pub fn check(&self, origin: &str, offset: u64, nonce: u64) -> Result<InFlight, HandleError> {
        let flight = self
            .in_flight
            .get(&(origin.to_string(), offset))
            .ok_or_else(|| HandleError::NotInFlight {
                origin: origin.to_string(),
                offset,
            })?;
        if flight.nonce != nonce {
            return Err(HandleError::Stale {
                origin: origin.to_string(),
                offset,
            });
        }
        Ok(flight.clone())
    }

    /// Acknowledges an in-flight message whose handle carries `nonce`: done for good.
    pub fn ack(&mut self, origin: &str, offset: u64, nonce: u64) -> Result<(), HandleError> {
        self.check(origin, offset, nonce)?;
        self.in_flight.remove(&(origin.to_string(), offset));
        self.finish(origin, offset);
        Ok(())
    }

    /// Makes an in-flight message invisible until `visible_at_ms` under a new `nonce` (the
    /// old handle stops being valid).
    pub fn change_invisible(
        &mut self,
        origin: &str,
        offset: u64,
        nonce: u64,
        visible_at_ms: i64,
        new_nonce: u64,
    ) -> Result<InFlight, HandleError> {
        let mut flight = self.check(origin, offset, nonce)?.clone();
        flight.visible_at_ms = visible_at_ms;
        flight.nonce = new_nonce;
        self.in_flight
            .insert((origin.to_string(), offset), flight.clone());
        Ok(flight)
    }

    /// Marks `(origin, offset)` done (acknowledged, dead-lettered or filtered out).
    pub fn finish(&mut self, origin: &str, offset: u64) {
        self.in_flight.remove(&(origin.to_string(), offset));
        if offset < self.frontier(origin) {
            return;
        }
        self.done.insert((origin.to_string(), offset));
        self.fold(origin);
    }

    /// The sub-log holds nothing of `origin` from the frontier up to `offset` (a gap: a
    /// filtered replication range, retention): the frontier moves to `offset`. Nothing can
    /// be in flight or done in between, since only records that exist are handed out.
    pub fn skip_to(&mut self, origin: &str, offset: u64) {
        if offset > self.frontier(origin) {
            self.done_below.insert(origin.to_string(), offset);
            self.fold(origin);
        }
    }

    /// Hands `(origin, offset)` out again at the next receive (an operator's redelivery):
    /// in flight and visible now, keeping its attempts, whether it was done or not.
    pub fn redeliver(&mut self, origin: &str, offset: u64, now_ms: i64) {
        let key = (origin.to_string(), offset);
        self.done.remove(&key);
        let flight = self.in_flight.entry(key).or_insert(InFlight {
            visible_at_ms: now_ms,
            attempt: 0,
            nonce: 0,
            group: None,
        });
        flight.visible_at_ms = now_ms;
    }

    /// The frontier as a vector cursor (per origin the first offset not known done, and
    /// the incarnation it is of): valid in every region, since identities are.
    pub fn cursor(&self) -> broker::Cursor {
        broker::Cursor {
            next: self.done_below.clone(),
            incarnations: self
                .incarnations
                .iter()
                .filter(|(origin, _)| self.done_below.contains_key(*origin))
                .map(|(o, i)| (o.clone(), *i))
                .collect(),
            epoch: 0,
        }
    }

    /// Everything of `origin` below `next` (of `incarnation`; 0: unknown) was done in the
    /// group elsewhere: the frontier moves up to it, and what was in flight below is
    /// dropped (its handles are refused as not in flight). A position of another
    /// incarnation than the one followed is ignored. Returns whether anything changed.
    pub fn done_to(&mut self, origin: &str, next: u64, incarnation: u64) -> bool {
        let held = self.incarnations.get(origin).copied().unwrap_or(0);
        if (held != 0 && incarnation != 0 && held != incarnation) || next <= self.frontier(origin) {
            return false;
        }
        if held == 0 && incarnation != 0 {
            self.incarnations.insert(origin.to_string(), incarnation);
        }
        // What was in flight below the old frontier is an operator's redelivery: it stays.
        let old = self.frontier(origin);
        self.done.retain(|(o, off)| o != origin || *off >= next);
        self.in_flight
            .retain(|(o, off), _| o != origin || *off >= next || *off < old);
        self.done_below.insert(origin.to_string(), next);
        self.fold(origin);
        true
    }

    /// Moves the frontier over consecutive done offsets.
    fn fold(&mut self, origin: &str) {
        let mut front = self.frontier(origin);
        while self.done.remove(&(origin.to_string(), front)) {
            front += 1;
        }
        self.done_below.insert(origin.to_string(), front);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flight(visible_at_ms: i64, attempt: u32, nonce: u64) -> InFlight {
        InFlight {
            visible_at_ms,
            attempt,
            nonce,
            group: None,
        }
    }

    #[test]
    fn acks_in_any_order_move_the_frontier_over_consecutive_offsets() {
        let mut s = PartitionState::default();
        for off in 0..4 {
            s.hand_out("eu", off, flight(100, 1, off + 10));
        }
        s.ack("eu", 2, 12).unwrap();
        assert_eq!(s.frontier("eu"), 0);
        assert!(s.is_done("eu", 2) && !s.is_fresh("eu", 1));
        s.ack("eu", 0, 10).unwrap();
        s.ack("eu", 1, 11).unwrap();
        assert_eq!(s.frontier("eu"), 3);
        assert!(s.done.is_empty(), "folded");
        assert_eq!(s.in_flight.len(), 1);
        assert_eq!(s.frontier("us"), 0, "origins are independent");
    }

    #[test]
    fn the_stored_form_round_trips() {
        let mut s = PartitionState::default();
        s.hand_out("eu", 3, flight(100, 2, 9));
        s.finish("us", 5);
        s.finish("eu", 0);
        assert_eq!(PartitionState::from_bytes(&s.to_bytes()).unwrap(), s);
        assert!(PartitionState::from_bytes(b"{").is_err());
    }

    #[test]
    fn a_stale_or_unknown_handle_is_refused() {
        let mut s = PartitionState::default();
        s.hand_out("eu", 5, flight(100, 1, 7));
        let changed = s.change_invisible("eu", 5, 7, 500, 8).unwrap();
        assert_eq!((changed.visible_at_ms, changed.attempt), (500, 1));
        assert!(matches!(s.ack("eu", 5, 7), Err(HandleError::Stale { .. })));
        s.ack("eu", 5, 8).unwrap();
        assert!(matches!(
            s.ack("eu", 5, 8),
            Err(HandleError::NotInFlight { .. })
        ));
    }

    #[test]
    fn a_new_incarnation_of_an_origin_starts_again() {
        let mut s = PartitionState::default();
        assert!(
            !s.follow("us", 7),
            "the first incarnation seen is just noted"
        );
        s.finish("us", 0);
        s.hand_out("us", 1, flight(100, 1, 1));
        s.finish("eu", 0);
        assert!(!s.follow("us", 7));
        assert!(s.follow("us", 9));
        assert_eq!(s.frontier("us"), 0);
        assert!(s.in_flight.is_empty());
        assert_eq!(s.frontier("eu"), 1, "other origins keep their progress");
        assert_eq!(PartitionState::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn a_message_group_in_flight_is_busy() {
        let mut s = PartitionState::default();
        s.hand_out(
            "eu",
            1,
            InFlight {
                group: Some("g1".into()),
                ..flight(100, 1, 1)
            },
        );
        s.hand_out("eu", 2, flight(100, 1, 2));
        s.hand_out(
            "us",
            0,
            InFlight {
                group: Some("g2".into()),
                ..flight(100, 1, 3)
            },
        );
        assert_eq!(s.busy_groups("eu"), ["g1".to_string()].into());
        s.ack("eu", 1, 1).unwrap();
        assert!(s.busy_groups("eu").is_empty());
        let bytes = s.to_bytes();
        assert_eq!(PartitionState::from_bytes(&bytes).unwrap(), s);
    }

    #[test]
    fn expired_messages_come_back_oldest_first() {
        let mut s = PartitionState::default();
        s.hand_out("eu", 1, flight(300, 1, 1));
        s.hand_out("eu", 2, flight(200, 2, 2));
        s.hand_out("us", 0, flight(900, 1, 3));
        let expired: Vec<u64> = s.expired(300).iter().map(|((_, off), _)| *off).collect();
        assert_eq!(expired, [2, 1]);
    }

    #[test]
    fn progress_made_elsewhere_moves_the_frontier_and_drops_what_was_in_flight_below() {
        let mut s = PartitionState::default();
        s.follow("eu", 5);
        s.hand_out("eu", 3, flight(0, 1, 1));
        s.hand_out("eu", 12, flight(0, 1, 2));
        s.finish("eu", 11);
        assert!(s.done_to("eu", 10, 5));
        assert_eq!(s.frontier("eu"), 10);
        assert!(!s.in_flight.contains_key(&("eu".to_string(), 3)));
        assert!(s.in_flight.contains_key(&("eu".to_string(), 12)));
        s.finish("eu", 10);
        assert_eq!(s.frontier("eu"), 12, "folds over what was done above");
        assert!(!s.done_to("eu", 11, 5), "never back");
        assert!(!s.done_to("eu", 50, 9), "another incarnation's position");
        assert_eq!(s.cursor().next, [("eu".to_string(), 12)].into());
        assert_eq!(s.cursor().incarnations, [("eu".to_string(), 5)].into());
    }

    #[test]
    fn a_gap_at_the_frontier_is_passed_at_once() {
        let mut s = PartitionState::default();
        s.finish("eu", 1_000_001);
        s.skip_to("eu", 1_000_000);
        assert_eq!(s.frontier("eu"), 1_000_000);
        s.finish("eu", 1_000_000);
        assert_eq!(
            s.frontier("eu"),
            1_000_002,
            "what was done after it folds in"
        );
        s.skip_to("eu", 5);
        assert_eq!(s.frontier("eu"), 1_000_002, "never back");
    }
}
