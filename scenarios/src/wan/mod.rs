//! An emulated WAN link: a UDP relay placed between two regions (QUIC runs through it).
//! The dialling region is given the relay's address instead of the peer's; the relay
//! forwards each client's datagrams from a socket of its own to the peer and the answers
//! back, impaired both ways as a [`Impairment`] says (one-way delay, jitter, random loss,
//! a bandwidth cap), and can cut the link (drop everything) and heal it at run time.
//!
//! Each direction is a lane: a datagram is admitted (or lost, or tail-dropped when the
//! lane's queue is full), given a release time — after the bandwidth cap's serialization
//! time, the delay and a uniform jitter, never before the previous datagram's (no
//! reordering, like netem with a rate) — and sent by the lane's delivery task at that time.
//! I/O is batched (`batch`): recvmmsg with GRO in, GSO sends out.

mod batch;

use batch::BatchSocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest datagram forwarded (QUIC sends at most 1452-byte packets, or 64 KiB with GSO
/// on the sending side, which the kernel splits before the relay sees it).
const MAX_DATAGRAM: usize = 65_536;
/// Datagrams held per lane (in flight in the emulated delay, or waiting for the bandwidth
/// cap) before tail drop: about 95 MB of full-size QUIC packets, more than the
/// bandwidth-delay product of 2 Gbit/s over a 100 ms one-way delay, so the emulator itself
/// does not drop what a real long, fat link would carry.
const LANE_QUEUE: usize = 65_536;

/// What the link does to datagrams, in each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    /// One-way delay.
    pub delay: Duration,
    /// Each datagram's delay varies uniformly within ± this (not below zero).
    pub jitter: Duration,
    /// Fraction of datagrams lost at random, 0.0 to 1.0.
    pub loss: f64,
    /// Bits per second, each way; `None` for no cap.
    pub bandwidth_bps: Option<u64>,
}

/// Datagram counts of a link, both directions together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub forwarded: u64,
    /// Dropped while the link was cut.
    pub cut: u64,
    /// Lost at random.
    pub lost: u64,
    /// Dropped because a lane's queue was full.
    pub overflow: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.forwarded += other.forwarded;
        self.cut += other.cut;
        self.lost += other.lost;
        self.overflow += other.overflow;
        self.bytes += other.bytes;
    }
}

#[derive(Default)]
struct Lane {
    /// When the cap lets the next datagram start.
    free_at: Option<Instant>,
    last_release: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    cut: AtomicBool,
    impairment: Mutex<Impairment>,
    up: Mutex<Lane>,
    down: Mutex<Lane>,
    forwarded: AtomicU64,
    dropped_cut: AtomicU64,
    lost: AtomicU64,
    overflow: AtomicU64,
    bytes: AtomicU64,
}

impl Shared {
    fn apply(&self, event: LinkEvent) {
        match event {
            LinkEvent::Cut => self.cut.store(true, Ordering::SeqCst),
            LinkEvent::Heal => self.cut.store(false, Ordering::SeqCst),
            LinkEvent::Impair(i) => *self.impairment.lock().expect("impairment lock") = i,
        }
    }

    /// When to release a datagram of `len` bytes entering `lane` now, or `None` to drop it.
    fn admit(&self, lane: &Mutex<Lane>, len: usize) -> Option<Instant> {
        if self.cut.load(Ordering::Relaxed) {
            self.dropped_cut.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let impairment = *self.impairment.lock().expect("impairment lock");
        if impairment.loss > 0.0 && rand::random::<f64>() < impairment.loss {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let now = Instant::now();
        let mut lane = lane.lock().expect("lane lock");
        let mut depart = now;
        if let Some(bps) = impairment.bandwidth_bps.filter(|b| *b > 0) {
            let start = lane.free_at.map_or(now, |f| f.max(now));
            let wire = Duration::from_secs_f64(len as f64 * 8.0 / bps as f64);
            lane.free_at = Some(start + wire);
            depart = start + wire;
        }
        let jitter = impairment.jitter.as_secs_f64();
        let offset = if jitter > 0.0 {
            (rand::random::<f64>() * 2.0 - 1.0) * jitter
        } else {
            0.0
        };
        let delay = Duration::from_secs_f64((impairment.delay.as_secs_f64() + offset).max(0.0));
        let release = lane
            .last_release
            .map_or(depart + delay, |l| l.max(depart + delay));
        lane.last_release = Some(release);
        Some(release)
    }

    fn queued(&self, queue: &mpsc::Sender<(Instant, Vec<u8>)>, release: Instant, data: &[u8]) {
        if queue.try_send((release, data.to_vec())).is_err() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        } else {
            self.forwarded.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A change a schedule makes to a link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LinkEvent {
    Cut,
    Heal,
    Impair(Impairment),
}

/// A running relay; dropping it stops it.
pub struct WanLink {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl WanLink {
    /// Starts an unimpaired relay on a free loopback port that forwards to `peer` (within
    /// a Tokio runtime).
    pub fn start(peer: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(peer, Impairment::default())
    }

    /// Starts a relay to `peer` with `impairment` both ways.
    pub fn start_with(peer: SocketAddr, impairment: Impairment) -> std::io::Result<Self> {
        let listen = Arc::new(BatchSocket::bind_loopback()?);
        let address = listen.local_addr()?;
        let shared = Arc::new(Shared::default());
        *shared.impairment.lock().expect("impairment lock") = impairment;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(clients(
            listen,
            peer,
            shared.clone(),
            stop.clone(),
            tracker.clone(),
        ));
        Ok(WanLink {
            address,
            shared,
            stop,
            tracker,
        })
    }

    /// Where the dialling region sends to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Drops every datagram, both ways, until `heal`.
    pub fn cut(&self) {
        self.shared.apply(LinkEvent::Cut);
    }

    pub fn heal(&self) {
        self.shared.apply(LinkEvent::Heal);
    }

    /// Changes the impairment from now on.
    pub fn set_impairment(&self, impairment: Impairment) {
        self.shared.apply(LinkEvent::Impair(impairment));
    }

    /// Applies each `(after, event)` once `after` has passed from now, in the order given
    /// (a partition schedule: cut at 5 s, heal at 20 s, …). Stops with the link.
    pub fn schedule(&self, events: Vec<(Duration, LinkEvent)>) {
        let shared = self.shared.clone();
        let stop = self.stop.clone();
        let start = Instant::now();
        self.tracker.spawn(async move {
            for (after, event) in events {
                tokio::select! {
                    () = tokio::time::sleep_until(start + after) => shared.apply(event),
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    pub fn counts(&self) -> Counts {
        let s = &self.shared;
        Counts {
            forwarded: s.forwarded.load(Ordering::Relaxed),
            cut: s.dropped_cut.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            overflow: s.overflow.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for WanLink {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tracker.close();
    }
}

/// Sends each queued datagram at its release time; datagrams due together go out in one
/// GSO send when they have the same size (the last may be shorter).
async fn deliver(
    mut queue: mpsc::Receiver<(Instant, Vec<u8>)>,
    socket: Arc<BatchSocket>,
    destination: SocketAddr,
    stop: CancellationToken,
) {
    let max_segments = socket.max_segments();
    let mut next: Option<(Instant, Vec<u8>)> = None;
    let mut run: Vec<u8> = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        let (release, first) = match next.take() {
            Some(item) => item,
            None => tokio::select! {
                d = queue.recv() => match d { Some(d) => d, None => return },
                () = stop.cancelled() => return,
            },
        };
        // A datagram already due goes at once: a timer fires on the next millisecond tick,
        // which at 0 ms one-way added up to a millisecond to every packet.
        if release > Instant::now() {
            tokio::select! {
                () = tokio::time::sleep_until(release) => {}
                () = stop.cancelled() => return,
            }
        }
        let size = first.len();
        run.clear();
        run.extend_from_slice(&first);
        let mut segments = 1;
        let now = Instant::now();
        while segments < max_segments && run.len() + size <= MAX_DATAGRAM {
            match queue.try_recv() {
                Ok((at, data)) if at <= now && data.len() == size => {
                    run.extend_from_slice(&data);
                    segments += 1;
                }
                Ok((at, data)) if at <= now && data.len() < size => {
                    // A shorter datagram may end the run.
                    run.extend_from_slice(&data);
                    segments += 1;
                    break;
                }
                Ok(item) => {
                    next = Some(item);
                    break;
                }
                Err(_) => break,
            }
        }
        let segment_size = (segments > 1).then_some(size);
        if let Err(e) = socket.send(destination, &run, segment_size).await {
            tracing::debug!(error = %e, %destination, "wan relay send failed");
        }
    }
}

/// Reads datagrams from the dialling side; each client address gets its own socket
/// towards the peer, so the peer's answers can be sent back to the right client.
async fn clients(
    listen: Arc<BatchSocket>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut upstreams: HashMap<SocketAddr, mpsc::Sender<(Instant, Vec<u8>)>> = HashMap::new();
    let mut bufs = listen.recv_bufs();
    loop {
        let received = tokio::select! {
            r = listen.recv(&mut bufs, |client, datagram| {
                let queue = match upstreams.get(&client) {
                    Some(q) => q.clone(),
                    None => {
                        let Ok(socket) = BatchSocket::bind_loopback() else {
                            return;
                        };
                        let socket = Arc::new(socket);
                        let (up_tx, up_rx) = mpsc::channel(LANE_QUEUE);
                        let (down_tx, down_rx) = mpsc::channel(LANE_QUEUE);
                        tracker.spawn(deliver(up_rx, socket.clone(), peer, stop.clone()));
                        tracker.spawn(deliver(down_rx, listen.clone(), client, stop.clone()));
                        tracker.spawn(answers(socket, peer, down_tx, shared.clone(), stop.clone()));
                        upstreams.insert(client, up_tx.clone());
                        up_tx
                    }
                };
                if let Some(release) = shared.admit(&shared.up, datagram.len()) {
                    shared.queued(&queue, release, datagram);
                }
            }) => r,
            () = stop.cancelled() => return,
        };
        if let Err(e) = received {
            tracing::debug!(error = %e, "wan relay receive failed");
        }
    }
}

/// Reads the peer's datagrams for one client into the down lane.
async fn answers(
    upstream: Arc<BatchSocket>,
    peer: SocketAddr,
    queue: mpsc::Sender<(Instant, Vec<u8>)>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut bufs = upstream.recv_bufs();
    loop {
        let received = tokio::select! {
            r = upstream.recv(&mut bufs, |from, datagram| {
                if from != peer {
                    return;
                }
                if let Some(release) = shared.admit(&shared.down, datagram.len()) {
                    shared.queued(&queue, release, datagram);
                }
            }) => r,
            () = stop.cancelled() => return,
        };
        // An error (the peer not listening yet: ICMP port unreachable) is passed over.
        let _ = received;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    /// A peer socket, a client socket and a relay between them.
    async fn setup(impairment: Impairment) -> (UdpSocket, UdpSocket, WanLink) {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let link = WanLink::start_with(peer.local_addr().unwrap(), impairment).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(link.address()).await.unwrap();
        (peer, client, link)
    }

    #[tokio::test]
    async fn delay_applies_both_ways() {
        let delay = Duration::from_millis(60);
        let (peer, client, _link) = setup(Impairment {
            delay,
            ..Default::default()
        })
        .await;
        let sent = std::time::Instant::now();
        client.send(b"ping").await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert!(sent.elapsed() >= delay, "one way took {:?}", sent.elapsed());
        peer.send_to(b"pong", from).await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong");
        assert!(
            sent.elapsed() >= delay * 2,
            "round trip took {:?}",
            sent.elapsed()
        );
    }

    #[tokio::test]
    async fn the_bandwidth_cap_paces_datagrams() {
        // 20 datagrams of 1000 B at 800 kbit/s: 10 ms each on the wire, 200 ms in all.
        let (peer, client, link) = setup(Impairment {
            bandwidth_bps: Some(800_000),
            ..Default::default()
        })
        .await;
        let sent = std::time::Instant::now();
        for _ in 0..20 {
            client.send(&[7u8; 1000]).await.unwrap();
        }
        let mut buf = [0u8; 2000];
        for _ in 0..20 {
            peer.recv_from(&mut buf).await.unwrap();
        }
        assert!(
            sent.elapsed() >= Duration::from_millis(190),
            "took {:?}",
            sent.elapsed()
        );
        assert_eq!(link.counts().forwarded, 20);
        assert_eq!(link.counts().bytes, 20_000);
    }

    /// Waits until the relay has counted what was sent (it reads asynchronously).
    async fn until(link: &WanLink, done: impl Fn(Counts) -> bool) {
        for _ in 0..500 {
            if done(link.counts()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("counts stayed {:?}", link.counts());
    }

    #[tokio::test]
    async fn loss_and_cuts_drop_datagrams() {
        let (peer, client, link) = setup(Impairment {
            loss: 1.0,
            ..Default::default()
        })
        .await;
        for _ in 0..10 {
            client.send(b"x").await.unwrap();
        }
        until(&link, |c| c.lost == 10).await;
        link.set_impairment(Impairment::default());
        link.cut();
        client.send(b"cut").await.unwrap();
        until(&link, |c| c.cut == 1).await;
        link.heal();
        client.send(b"through").await.unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = peer.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            &buf[..n],
            b"through",
            "only the datagram after the heal arrives"
        );
        assert_eq!(link.counts().forwarded, 1);
    }

    #[tokio::test]
    async fn a_schedule_cuts_and_heals_in_order() {
        let (peer, client, link) = setup(Impairment::default()).await;
        let start = Instant::now();
        let heal_at = Duration::from_millis(300);
        link.schedule(vec![
            (Duration::ZERO, LinkEvent::Cut),
            (heal_at, LinkEvent::Heal),
        ]);
        // Datagrams sent after the cut took effect are dropped until the heal.
        while link.counts().cut == 0 {
            client.send(b"cut").await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut buf = [0u8; 16];
        let through = async {
            loop {
                client.send(b"late").await.unwrap();
                let got =
                    tokio::time::timeout(Duration::from_millis(50), peer.recv_from(&mut buf)).await;
                if let Ok(received) = got {
                    let (n, _) = received.unwrap();
                    if &buf[..n] == b"late" {
                        return;
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), through)
            .await
            .expect("the scheduled heal let datagrams through");
        assert!(
            start.elapsed() >= heal_at,
            "delivered before the scheduled heal"
        );
    }
}
