//! A region's nodes dividing its pulls (`replicator::crew`), through the region's shared
//! metadata: every node that can replicate holds a lease of its own (`member-<instance>`)
//! for as long as it runs, and so is alive to the others; the holder of the replication
//! lease reads who is alive and stores its division of the pulls; every other node reads
//! the division and pulls its share — only while the division's author still holds the
//! replication lease, and only while this node's own lease is held (a node cut off from
//! the metadata stops pulling before the planning node gives its share to another).

use std::sync::Arc;
use std::time::Duration;

use jetstream_engine::meta::JetStreamMetaStore;
use replicator::crew::{Assignment, Share, mine};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the planning node reads which nodes are alive.
const MEMBERS_REFRESH: Duration = Duration::from_millis(500);
/// Member leases whose time ended longer ago than this are removed by the planning node
/// (each start of a node makes a key of its own).
const MEMBER_FORGOTTEN_AFTER: Duration = Duration::from_secs(60);
/// How often a node reads the division.
const DIVISION_REFRESH: Duration = Duration::from_millis(250);
/// How often the planning node writes its division again unchanged: a write that failed,
/// or an old holder's late write over it, is mended within this.
const DIVISION_REWRITE: Duration = Duration::from_secs(1);

/// The stored division a node read last, and what it holds.
type LastRead = std::sync::Mutex<Option<(Vec<u8>, Assignment)>>;

/// The lease duty every node holds of its own: `member-<instance>`.
pub const MEMBER_DUTY: &str = "member-";

/// One node's view of its region's crew.
#[derive(Clone)]
pub struct CrewIo {
    pub meta: Arc<JetStreamMetaStore>,
    /// This node's lease id.
    pub me: String,
    /// The duty of this node's own lease while it pulls a share (`member-<instance>`).
    pub member_duty: String,
}

impl CrewIo {
    /// The region's live nodes, read every [`MEMBERS_REFRESH`] until `stop`.
    pub fn members(&self, stop: CancellationToken) -> watch::Receiver<Vec<String>> {
        let (tx, rx) = watch::channel(Vec::new());
        let meta = self.meta.clone();
        tokio::spawn(async move {
            let mut pruned_at: Option<std::time::Instant> = None;
            loop {
                if pruned_at.is_none_or(|at| at.elapsed() >= MEMBER_FORGOTTEN_AFTER) {
                    pruned_at = Some(std::time::Instant::now());
                    let m = meta.clone();
                    let pruned = tokio::task::spawn_blocking(move || {
                        m.prune_lapsed_leases(MEMBER_DUTY, MEMBER_FORGOTTEN_AFTER)
                    })
                    .await;
                    if let Ok(Err(e)) = pruned {
                        tracing::warn!(event = "crew_write_failed", error = %e, "could not remove lapsed member leases; trying again later");
                    }
                }
                let m = meta.clone();
                match tokio::task::spawn_blocking(move || m.lease_holders(MEMBER_DUTY)).await {
                    Ok(Ok(mut live)) => {
                        live.sort();
                        tx.send_if_modified(|now| std::mem::replace(now, live.clone()) != live);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(event = "crew_read_failed", error = %e, "could not read which nodes of the region are alive; dividing among those read last");
                    }
                    Err(_) => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(MEMBERS_REFRESH) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
        rx
    }

    /// Holds this node's own lease, making it one of the nodes the planning node divides
    /// the pulls among, until `stop` (then releases it); whether it is held now.
    pub fn membership(&self, stop: CancellationToken) -> watch::Receiver<bool> {
        self.meta.hold_lease(
            &self.member_duty,
            &self.me,
            crate::replication::REPLICATION_LEASE,
            stop,
        )
    }

    /// Stores the division `divisions` holds, whenever it changes and every
    /// [`DIVISION_REWRITE`], until its sender is gone or `stop`.
    pub async fn store_divisions(
        self,
        mut divisions: watch::Receiver<Assignment>,
        stop: CancellationToken,
    ) {
        loop {
            let division = divisions.borrow_and_update().clone();
            let bytes = division.encode();
            let meta = self.meta.clone();
            if let Ok(Err(e)) =
                tokio::task::spawn_blocking(move || meta.put_replication_division(bytes)).await
            {
                tracing::warn!(event = "crew_write_failed", error = %e, "could not store the division of the region's pulls; the other nodes pull by the one stored before");
            }
            tokio::select! {
                changed = divisions.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(DIVISION_REWRITE) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// What the stored division gives this node to pull, read every [`DIVISION_REFRESH`]
    /// until `stop`; nothing while `member` says this node's own lease is not held.
    pub fn follow(
        &self,
        mut member: watch::Receiver<bool>,
        stop: CancellationToken,
    ) -> watch::Receiver<Share> {
        let (tx, rx) = watch::channel(Share::default());
        let crew = self.clone();
        let last: Arc<LastRead> = Arc::default();
        tokio::spawn(async move {
            loop {
                // A node whose own lease lapsed pulls nothing, whatever it read last, also
                // while a read is still waiting for the metadata.
                let read = if *member.borrow_and_update() {
                    let c = crew.clone();
                    tokio::select! {
                        read = tokio::task::spawn_blocking({
                            let last = last.clone();
                            move || c.read_share(&last)
                        }) => match read {
                            Ok(read) => read.map(|share| if *member.borrow() { share } else { Share::default() }),
                            Err(_) => return,
                        },
                        () = lapsed(&mut member) => Ok(Share::default()),
                    }
                } else {
                    Ok(Share::default())
                };
                match read {
                    Ok(share) => {
                        tx.send_if_modified(|now| std::mem::replace(now, share.clone()) != share);
                    }
                    Err(e) => {
                        tracing::warn!(event = "crew_read_failed", error = %format!("{e:#}"), "could not read the division of the region's pulls; pulling by the one read last");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(DIVISION_REFRESH) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
        rx
    }

    /// This node's share of the stored division (blocking I/O); a stored value the same
    /// as `last`'s is not unpacked again (the planning node writes it every second).
    fn read_share(&self, last: &LastRead) -> anyhow::Result<Share> {
        let holder = self
            .meta
            .lease_holder(crate::replication::REPLICATION_DUTY)?;
        let stored = self.meta.replication_division()?.unwrap_or_default();
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        let division = match last.take() {
            Some((bytes, division)) if bytes == stored => division,
            _ if stored.is_empty() => Assignment::default(),
            _ => Assignment::decode(&stored)?,
        };
        let share = mine(&division, holder.as_deref(), &self.me);
        *last = Some((stored, division));
        Ok(share)
    }
}

/// Returns once `member` says the lease is not held (or can no longer say).
async fn lapsed(member: &mut watch::Receiver<bool>) {
    let _ = member.wait_for(|held| !*held).await;
}
