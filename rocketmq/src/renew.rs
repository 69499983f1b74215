//! Invisibility renewed by the server for push consumers (`auto_renew` on a receive, as
//! the SDKs' push consumers ask). While the client that received a message is alive (a
//! request or heartbeat from it within [`CLIENT_TIMEOUT`], and no NotifyClientTermination),
//! the message's invisibility is pushed forward by the receive's invisible duration each
//! time half of it is left, for at most [`MAX_RENEWED`] in all. The receipt handle stays
//! the same: the client acknowledges with the one it got. A client that dies or leaves
//! stops the renewals, so its messages become visible again when their current
//! invisibility ends. An acknowledgement, a change of invisibility or a forward to the
//! dead-letter topic ends a lease.
//!
//! Leases are kept in memory: after a restart the stored invisibility runs out and the
//! messages come back, as any message in flight does. Each renewal is stored like every
//! other change of the group's state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::pop::Consumption;
use crate::pop::handle::Handle;

/// A client not heard from for this long is taken for gone (the SDKs send a heartbeat
/// every 10 s).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one message's invisibility is renewed for at most, from its receipt.
pub const MAX_RENEWED: Duration = Duration::from_secs(3 * 3600);
/// How often leases are looked at.
const TICK: Duration = Duration::from_millis(200);

/// The clients seen lately.
#[derive(Default)]
pub struct Clients {
    seen: Mutex<HashMap<String, Instant>>,
}

impl Clients {
    /// A request or heartbeat from `client`.
    pub fn touch(&self, client: Option<&str>) {
        if let Some(id) = client {
            let mut seen = self.seen.lock().expect("clients lock");
            let now = Instant::now();
            seen.retain(|_, at| now.duration_since(*at) < CLIENT_TIMEOUT);
            seen.insert(id.to_string(), now);
        }
    }

    /// `client` said it terminates.
    pub fn leave(&self, client: Option<&str>) {
        if let Some(id) = client {
            self.seen.lock().expect("clients lock").remove(id);
        }
    }

    pub fn alive(&self, client: &str) -> bool {
        self.seen
            .lock()
            .expect("clients lock")
            .get(client)
            .is_some_and(|at| at.elapsed() < CLIENT_TIMEOUT)
    }
}

/// A message in flight whose invisibility the server renews.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub group: String,
    pub topic: String,
    pub handle: Handle,
    pub client: String,
    /// The receive's invisible duration: each renewal's length.
    pub slice: Duration,
    pub visible_at_ms: i64,
    pub received_ms: i64,
}

/// What to do with a lease now.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Wait,
    /// Make the message invisible until this time.
    Renew(i64),
    /// The client is gone or the renewals reached their limit: let it become visible.
    End,
}

/// The decision for `lease` at `now_ms`, pure.
pub fn decide(lease: &Lease, now_ms: i64, client_alive: bool) -> Decision {
    let slice = lease.slice.as_millis() as i64;
    if !client_alive || now_ms - lease.received_ms >= MAX_RENEWED.as_millis() as i64 {
        return Decision::End;
    }
    if lease.visible_at_ms - now_ms > slice / 2 {
        return Decision::Wait;
    }
    let cap = lease.received_ms + MAX_RENEWED.as_millis() as i64;
    Decision::Renew((now_ms + slice).min(cap))
}

type LeaseKey = (String, String, String);

fn key(group: &str, topic: &str, handle: &str) -> LeaseKey {
    (group.to_string(), topic.to_string(), handle.to_string())
}

/// The leases held, by (group, topic, receipt handle).
#[derive(Default)]
pub struct Leases {
    held: Mutex<HashMap<LeaseKey, Lease>>,
}

impl Leases {
    pub fn hold(&self, lease: Lease) {
        let k = key(&lease.group, &lease.topic, &lease.handle.encode());
        self.held.lock().expect("leases lock").insert(k, lease);
    }

    pub fn release(&self, group: &str, topic: &str, handle: &str) {
        self.held
            .lock()
            .expect("leases lock")
            .remove(&key(group, topic, handle));
    }

    pub fn len(&self) -> usize {
        self.held.lock().expect("leases lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leases to renew now with their new visibility time; leases that end are
    /// removed.
    fn due(&self, now_ms: i64, clients: &Clients) -> Vec<(Lease, i64)> {
        let mut held = self.held.lock().expect("leases lock");
        let mut due = Vec::new();
        held.retain(
            |_, lease| match decide(lease, now_ms, clients.alive(&lease.client)) {
                Decision::Wait => true,
                Decision::Renew(until) => {
                    due.push((lease.clone(), until));
                    true
                }
                Decision::End => false,
            },
        );
        due
    }

    /// After a renewal was stored (`Some`), or found the message no longer in flight
    /// under that handle (`None`: acknowledged, or delivered again).
    fn renewed(&self, lease: &Lease, until: Option<i64>) {
        let mut held = self.held.lock().expect("leases lock");
        let k = key(&lease.group, &lease.topic, &lease.handle.encode());
        match until {
            Some(until) => {
                if let Some(l) = held.get_mut(&k) {
                    l.visible_at_ms = until;
                }
            }
            None => {
                held.remove(&k);
            }
        }
    }
}

/// Renews due leases until `stop`.
pub async fn run(
    leases: Arc<Leases>,
    clients: Arc<Clients>,
    consumption: Arc<Consumption>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let due = leases.due(broker::record::now_ms(), &clients);
        if due.is_empty() {
            continue;
        }
        // One store per partition touched.
        let mut by_partition: BTreeMap<(String, String, u32), Vec<(Lease, i64)>> = BTreeMap::new();
        for (lease, until) in due {
            by_partition
                .entry((
                    lease.group.clone(),
                    lease.topic.clone(),
                    lease.handle.partition,
                ))
                .or_default()
                .push((lease, until));
        }
        let (c, l) = (consumption.clone(), leases.clone());
        let renewing = tokio::task::spawn_blocking(move || {
            for ((group, topic, partition), batch) in by_partition {
                let wanted: Vec<(Handle, i64)> = batch
                    .iter()
                    .map(|(lease, until)| (lease.handle.clone(), *until))
                    .collect();
                match c.renew(&group, &topic, partition, &wanted) {
                    Ok(done) => {
                        for ((lease, until), renewed) in batch.iter().zip(done) {
                            l.renewed(lease, renewed.then_some(*until));
                        }
                    }
                    Err(refusal) => {
                        // Not stored: tried again at the next tick.
                        tracing::warn!(event = "invisibility_renewal_failed", %group, %topic, partition, error = %refusal.message, "renewing invisibility failed");
                    }
                }
            }
        });
        if let Err(e) = renewing.await {
            tracing::error!(event = "renewal_task_failed", error = %e, "the renewal task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(visible_at_ms: i64) -> Lease {
        Lease {
            group: "g".into(),
            topic: "t".into(),
            handle: Handle {
                partition: 0,
                origin: "eu".into(),
                offset: 4,
                nonce: 9,
            },
            client: "c1".into(),
            slice: Duration::from_secs(30),
            visible_at_ms,
            received_ms: 0,
        }
    }

    #[test]
    fn a_lease_is_renewed_once_half_its_slice_is_left() {
        assert_eq!(decide(&lease(30_000), 10_000, true), Decision::Wait);
        assert_eq!(
            decide(&lease(30_000), 15_000, true),
            Decision::Renew(45_000)
        );
    }

    #[test]
    fn a_lease_ends_with_its_client_or_at_the_limit() {
        assert_eq!(decide(&lease(30_000), 20_000, false), Decision::End);
        let limit = MAX_RENEWED.as_millis() as i64;
        assert_eq!(
            decide(&lease(limit), limit - 1_000, true),
            Decision::Renew(limit),
            "never past the limit"
        );
        assert_eq!(decide(&lease(limit), limit, true), Decision::End);
    }

    #[test]
    fn a_client_that_left_is_not_alive() {
        let clients = Clients::default();
        clients.touch(Some("c1"));
        assert!(clients.alive("c1") && !clients.alive("c2"));
        clients.leave(Some("c1"));
        assert!(!clients.alive("c1"));
    }

    #[test]
    fn due_leases_of_gone_clients_are_dropped() {
        let leases = Leases::default();
        let clients = Clients::default();
        leases.hold(lease(1_000));
        assert!(leases.due(900, &clients).is_empty());
        assert!(leases.is_empty(), "its client was never seen");
        clients.touch(Some("c1"));
        leases.hold(lease(1_000));
        let due = leases.due(900, &clients);
        assert_eq!(due.len(), 1);
        leases.renewed(&due[0].0, None);
        assert!(leases.is_empty(), "no longer in flight under that handle");
    }
}
