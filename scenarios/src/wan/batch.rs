//! Batched UDP I/O for the relay (quinn-udp): many datagrams per receive (recvmmsg, GRO)
//! and one send for a run of equal-size datagrams (GSO), so the relay costs a syscall per
//! batch rather than per datagram. A relay handling one datagram per syscall caps a link
//! near 200 MB/s on this machine (docs/performance.md).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

pub struct BatchSocket {
    socket: UdpSocket,
    state: UdpSocketState,
}

/// Receive buffers for one batch.
pub struct RecvBufs {
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
}

impl BatchSocket {
    /// Binds a socket on a free loopback port.
    pub fn bind_loopback() -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        let sock = socket2::SockRef::from(&socket);
        sock.set_recv_buffer_size(8 << 20)?;
        sock.set_send_buffer_size(8 << 20)?;
        let state = UdpSocketState::new((&socket).into())?;
        Ok(BatchSocket {
            socket: UdpSocket::from_std(socket)?,
            state,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Buffers sized for this socket's batch and GRO.
    pub fn recv_bufs(&self) -> RecvBufs {
        let size = 65_536 * self.state.gro_segments().max(1);
        RecvBufs {
            bufs: (0..quinn_udp::BATCH_SIZE)
                .map(|_| vec![0u8; size])
                .collect(),
            metas: vec![RecvMeta::default(); quinn_udp::BATCH_SIZE],
        }
    }

    /// Waits for datagrams and calls `each(source, datagram)` for every one received.
    pub async fn recv(
        &self,
        bufs: &mut RecvBufs,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<()> {
        let n = loop {
            self.socket.readable().await?;
            let mut slices: Vec<IoSliceMut<'_>> =
                bufs.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            match self.socket.try_io(Interest::READABLE, || {
                self.state
                    .recv((&self.socket).into(), &mut slices, &mut bufs.metas)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        for (meta, buf) in bufs.metas.iter().zip(&bufs.bufs).take(n) {
            let stride = if meta.stride == 0 {
                meta.len
            } else {
                meta.stride
            };
            for datagram in buf[..meta.len].chunks(stride.max(1)) {
                each(meta.addr, datagram);
            }
        }
        Ok(())
    }

    /// The most datagrams one send may carry.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// Sends `contents` to `destination`: one datagram, or, with `segment_size`, datagrams
    /// of that size (the last may be shorter) in one GSO send.
    pub async fn send(
        &self,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state.send((&self.socket).into(), &transmit)
            }) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
