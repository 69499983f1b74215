//! Active-active groups: which region's consumers deliver the messages of each origin.
//!
//! A group whose progress a task shares between regions (`groups` pattern) may consume in
//! all of them at once. Each message is delivered by one region while all are up, its
//! *home*: the region of the message's origin, or under a DR task the task's primary (its
//! consumers own everything, whichever region produced it). Another region takes a home's
//! messages over when, as it sees it, the home is unavailable:
//! - it has no route to the origin region, or
//! - the origin's messages have been waiting here (held beyond the group's frontier) for
//!   `takeover_after` without the frontier moving by progress made elsewhere (the origin's
//!   consumers are gone, or stuck).
//!
//! Among the regions available, the taker is chosen by a hash of the group and origin, so
//! every region with the same view picks the same one and the load of several lost origins
//! spreads. It delivers from the synced frontier; when the origin is available again (a
//! route, or progress of its own) it hands the messages back: it stops handing out fresh
//! ones and leaves its in-flight ones alone (they come back to the origin's consumers
//! through the frontier, which its acknowledgements moved).
//!
//! The guarantee: while every region is up and reachable, each message is delivered by one
//! region (plus the usual redeliveries of that region). A takeover may deliver again what
//! the origin's consumers had received but whose progress had not been synced: at most the
//! group's messages in flight there and those done in the last sync interval. While a
//! partition separates the origin from the taker and the origin's consumers still run,
//! both deliver the origin's new messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

/// What ownership needs to know of the deployment (the replicator, in a node).
pub trait Peers: Send + Sync {
    /// The regions where `group` consumes `topic` with shared progress, this one included;
    /// empty when no task shares it (then this region delivers everything).
    fn regions(&self, group: &str, topic: &str) -> Vec<String>;
    /// Whether this region has a route to `region` now.
    fn reachable(&self, region: &str) -> bool;
    /// The primary of a DR task that shares `group`'s progress on `topic`, if one does:
    /// the home of every origin's messages.
    fn primary(&self, group: &str, topic: &str) -> Option<String>;
}

/// Who delivers the messages whose home is `home` of `group`, given the group's regions
/// (sorted or not) and which of them are available: the home itself when available, else
/// one of the available regions chosen by a hash of group and home. `None`: no one
/// available.
pub fn owner<'r>(
    group: &str,
    home: &str,
    regions: &'r [String],
    available: impl Fn(&str) -> bool,
) -> Option<&'r str> {
    if let Some(o) = regions.iter().find(|r| *r == home)
        && available(home)
    {
        return Some(o.as_str());
    }
    let mut candidates: Vec<&String> = regions
        .iter()
        .filter(|r| *r != home && available(r))
        .collect();
    candidates.sort();
    candidates.dedup();
    if candidates.is_empty() {
        return None;
    }
    let pick =
        crc32fast::hash(format!("{group}\u{0}{home}").as_bytes()) as usize % candidates.len();
    Some(candidates[pick].as_str())
}

/// `(group, topic, partition, origin)`.
type Key = (String, String, u32, String);

/// A takeover in force here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Takeover {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub origin: String,
    pub since_ms: i64,
    /// Messages of the origin delivered here since.
    pub delivered: u64,
}

#[derive(Default)]
struct Watch {
    /// Since when the origin's messages wait here with no progress made elsewhere.
    waiting_since: Option<i64>,
    /// When this region took the origin over, while it has.
    taken_since: Option<i64>,
    delivered: u64,
}

/// Ownership as this region decides it, with its counters.
pub struct Ownership {
    region: String,
    peers: OnceLock<(Arc<dyn Peers>, Duration)>,
    watches: Mutex<HashMap<Key, Watch>>,
    takeovers: Counter,
    handbacks: Counter,
    on_behalf: Counter,
}

impl Ownership {
    pub fn new(region: &str) -> Self {
        Ownership {
            region: region.to_string(),
            peers: OnceLock::new(),
            watches: Mutex::new(HashMap::new()),
            takeovers: Counter::default(),
            handbacks: Counter::default(),
            on_behalf: Counter::default(),
        }
    }

    /// Turns ownership on (once): `peers` tell the group's regions and routes;
    /// `takeover_after` is how long an origin's messages may wait without progress.
    pub fn set_peers(&self, peers: Arc<dyn Peers>, takeover_after: Duration) {
        let _ = self.peers.set((peers, takeover_after));
    }

    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("georouter");
        r.register(
            "group_takeovers",
            "Times this region took over another origin's messages for an active-active group",
            self.takeovers.clone(),
        );
        r.register(
            "group_handbacks",
            "Times this region handed an origin's messages back to it",
            self.handbacks.clone(),
        );
        r.register(
            "group_deliveries_on_behalf",
            "Messages delivered here on behalf of another origin's consumers during a takeover",
            self.on_behalf.clone(),
        );
    }

    /// Whether this region delivers `origin`'s messages of `group` in `topic`'s
    /// `partition` now; `waiting` says whether such messages wait here (held beyond the
    /// group's frontier). Records takeovers and hand-backs.
    pub fn owns(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        origin: &str,
        waiting: bool,
        now_ms: i64,
    ) -> bool {
        let Some((peers, after)) = self.peers.get() else {
            return true;
        };
        let home = peers
            .primary(group, topic)
            .unwrap_or_else(|| origin.to_string());
        if home == self.region {
            return true;
        }
        let regions = peers.regions(group, topic);
        if !regions.contains(&home) {
            return true;
        }
        let key = (
            group.to_string(),
            topic.to_string(),
            partition,
            origin.to_string(),
        );
        let mut watches = self.watches.lock().expect("ownership lock");
        let watch = watches.entry(key).or_default();
        watch.waiting_since = match (waiting, watch.waiting_since) {
            (false, _) => None,
            (true, None) => Some(now_ms),
            (true, since) => since,
        };
        let stalled = watch
            .waiting_since
            .is_some_and(|since| now_ms - since >= after.as_millis() as i64);
        let available =
            |r: &str| r == self.region || (peers.reachable(r) && (r != home || !stalled));
        let mine = owner(group, &home, &regions, available) == Some(self.region.as_str());
        match (mine, watch.taken_since) {
            (true, None) => {
                watch.taken_since = Some(now_ms);
                watch.delivered = 0;
                self.takeovers.inc();
                tracing::warn!(event = "group_takeover", %group, %topic, partition, %origin, "taking over another origin's messages for an active-active group");
            }
            (false, Some(_)) => {
                watch.taken_since = None;
                self.handbacks.inc();
                tracing::info!(event = "group_handback", %group, %topic, partition, %origin, "handing an origin's messages back");
            }
            _ => {}
        }
        mine
    }

    /// Progress on `origin`'s messages made elsewhere reached this region: they are not
    /// waiting on a lost consumer.
    pub fn progressed(&self, group: &str, topic: &str, partition: u32, origin: &str) {
        let key = (
            group.to_string(),
            topic.to_string(),
            partition,
            origin.to_string(),
        );
        if let Some(w) = self.watches.lock().expect("ownership lock").get_mut(&key) {
            w.waiting_since = None;
        }
    }

    /// A message of `origin` was delivered here.
    pub fn delivered(&self, group: &str, topic: &str, partition: u32, origin: &str) {
        if origin == self.region {
            return;
        }
        let key = (
            group.to_string(),
            topic.to_string(),
            partition,
            origin.to_string(),
        );
        if let Some(w) = self.watches.lock().expect("ownership lock").get_mut(&key)
            && w.taken_since.is_some()
        {
            w.delivered += 1;
            self.on_behalf.inc();
        }
    }

    /// The takeovers in force here.
    pub fn takeovers(&self) -> Vec<Takeover> {
        let mut out: Vec<Takeover> = self
            .watches
            .lock()
            .expect("ownership lock")
            .iter()
            .filter_map(|((group, topic, partition, origin), w)| {
                Some(Takeover {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    origin: origin.clone(),
                    since_ms: w.taken_since?,
                    delivered: w.delivered,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_available_origin_owns_its_messages() {
        let all = regions(&["ap", "eu", "us"]);
        assert_eq!(owner("g", "eu", &all, |_| true), Some("eu"));
    }

    #[test]
    fn a_lost_origin_goes_to_one_available_region_that_every_view_agrees_on() {
        let all = regions(&["ap", "eu", "us"]);
        let taker = owner("g", "eu", &all, |r| r != "eu").unwrap();
        assert_ne!(taker, "eu");
        let reordered = regions(&["us", "eu", "ap"]);
        assert_eq!(owner("g", "eu", &reordered, |r| r != "eu"), Some(taker));
        let other = if taker == "ap" { "us" } else { "ap" };
        assert_eq!(
            owner("g", "eu", &all, |r| r == other),
            Some(other),
            "the only one available"
        );
        assert_eq!(owner("g", "eu", &all, |_| false), None);
    }

    struct Fixed {
        regions: Vec<String>,
        reachable: Mutex<bool>,
        primary: Option<String>,
    }

    impl Peers for Fixed {
        fn regions(&self, _: &str, _: &str) -> Vec<String> {
            self.regions.clone()
        }
        fn reachable(&self, _: &str) -> bool {
            *self.reachable.lock().unwrap()
        }
        fn primary(&self, _: &str, _: &str) -> Option<String> {
            self.primary.clone()
        }
    }

    #[test]
    fn waiting_without_progress_elsewhere_takes_over_and_progress_hands_back() {
        let peers = Arc::new(Fixed {
            regions: regions(&["eu", "us"]),
            reachable: Mutex::new(true),
            primary: None,
        });
        let us = Ownership::new("us");
        assert!(us.owns("g", "t", 0, "eu", true, 0), "no peers: everything");
        us.set_peers(peers.clone(), Duration::from_millis(1_000));
        assert!(us.owns("g", "t", 0, "us", true, 0), "its own origin");
        assert!(!us.owns("g", "t", 0, "eu", true, 0));
        assert!(!us.owns("g", "t", 0, "eu", true, 999));
        assert!(us.owns("g", "t", 0, "eu", true, 1_000), "waited too long");
        us.delivered("g", "t", 0, "eu");
        let taken = us.takeovers();
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].since_ms, taken[0].delivered), (1_000, 1));
        us.progressed("g", "t", 0, "eu");
        assert!(
            !us.owns("g", "t", 0, "eu", true, 1_001),
            "eu progresses again"
        );
        assert!(us.takeovers().is_empty());
        assert_eq!((us.takeovers.get(), us.handbacks.get()), (1, 1));
        // No route to eu: taken over at once, whatever waits.
        *peers.reachable.lock().unwrap() = false;
        assert!(us.owns("g", "t", 0, "eu", false, 1_002));
        *peers.reachable.lock().unwrap() = true;
        assert!(!us.owns("g", "t", 0, "eu", false, 1_003));
    }

    #[test]
    fn under_a_dr_task_the_primary_owns_every_origin() {
        let peers = Arc::new(Fixed {
            regions: regions(&["eu", "us"]),
            reachable: Mutex::new(true),
            primary: Some("us".into()),
        });
        let (eu, us) = (Ownership::new("eu"), Ownership::new("us"));
        eu.set_peers(peers.clone(), Duration::from_secs(1));
        us.set_peers(peers, Duration::from_secs(1));
        assert!(
            us.owns("g", "t", 0, "eu", true, 0),
            "the promoted primary, at once"
        );
        assert!(
            !eu.owns("g", "t", 0, "eu", true, 0),
            "not the old primary's own origin"
        );
        assert!(us.takeovers().is_empty(), "its own home: no takeover");
    }

    #[test]
    fn a_group_no_task_shares_delivers_everything() {
        let peers = Arc::new(Fixed {
            regions: Vec::new(),
            reachable: Mutex::new(true),
            primary: None,
        });
        let us = Ownership::new("us");
        us.set_peers(peers, Duration::from_secs(1));
        assert!(us.owns("g", "t", 0, "eu", false, 0));
    }
}
