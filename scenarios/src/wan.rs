//! An emulated WAN link: a UDP relay placed between two regions (QUIC runs through it).
//! The dialling region is given the relay's address instead of the peer's; the relay
//! forwards each client's datagrams from a socket of its own to the peer and the answers
//! back. It can cut the link (drop everything, both ways) and heal it at run time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Largest datagram forwarded (QUIC sends at most 1452-byte packets, or 64 KiB with GSO
/// on the sending side, which the kernel splits before the relay sees it).
const MAX_DATAGRAM: usize = 65_536;

#[derive(Default)]
struct Shared {
    cut: AtomicBool,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// A running relay; dropping it stops it.
pub struct WanLink {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl WanLink {
    /// Starts a relay on a free loopback port that forwards to `peer` (within a Tokio
    /// runtime).
    pub fn start(peer: SocketAddr) -> std::io::Result<Self> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        let listen = Arc::new(UdpSocket::from_std(socket)?);
        let address = listen.local_addr()?;
        let shared = Arc::new(Shared::default());
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
        self.shared.cut.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Datagrams forwarded and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.forwarded.load(Ordering::Relaxed),
            self.shared.dropped.load(Ordering::Relaxed),
        )
    }
}

impl Drop for WanLink {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tracker.close();
    }
}

impl Shared {
    /// Whether to pass a datagram on (counts it either way).
    fn passes(&self) -> bool {
        let cut = self.cut.load(Ordering::Relaxed);
        let counter = if cut { &self.dropped } else { &self.forwarded };
        counter.fetch_add(1, Ordering::Relaxed);
        !cut
    }
}

/// Reads datagrams from the dialling side; each client address gets its own socket
/// towards the peer, so the peer's answers can be sent back to the right client.
async fn clients(
    listen: Arc<UdpSocket>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            r = listen.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "wan relay receive failed");
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let upstream = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if socket.connect(peer).await.is_err() {
                    continue;
                }
                let socket = Arc::new(socket);
                upstreams.insert(client, socket.clone());
                tracker.spawn(answers(
                    socket.clone(),
                    listen.clone(),
                    client,
                    shared.clone(),
                    stop.clone(),
                ));
                socket
            }
        };
        if shared.passes() {
            let _ = upstream.send(&buf[..n]).await;
        }
    }
}

/// Carries the peer's datagrams back to one client.
async fn answers(
    upstream: Arc<UdpSocket>,
    listen: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = tokio::select! {
            r = upstream.recv(&mut buf) => match r {
                Ok(n) => n,
                Err(_) => continue,
            },
            () = stop.cancelled() => return,
        };
        if shared.passes() {
            let _ = listen.send_to(&buf[..n], client).await;
        }
    }
}
