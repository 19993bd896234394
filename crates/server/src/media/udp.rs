//! Batched datagram I/O for a relay shard: up to [`BATCH`] datagrams per system call
//! each way (`recvmmsg` / `sendmmsg` on Linux, one call per datagram elsewhere), with
//! buffers allocated once per shard, not per packet.

use std::io;
use std::net::SocketAddr;

use str0m::net::Transmit;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub(super) const BATCH: usize = 32;
/// Room for one datagram: more than any MTU a WebRTC peer uses.
const DATAGRAM: usize = 2048;

/// Received datagrams: `len` of them, each in its slot, taken one by one from `next`.
pub(super) struct RecvBatch {
    bufs: Vec<[u8; DATAGRAM]>,
    lens: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    len: usize,
    next: usize,
}

impl RecvBatch {
    pub(super) fn new() -> Self {
        RecvBatch {
            bufs: vec![[0u8; DATAGRAM]; BATCH],
            lens: [0; BATCH],
            from: [None; BATCH],
            len: 0,
            next: 0,
        }
    }

    /// Whether datagrams of the last [`RecvBatch::recv`] are still to be taken.
    pub(super) fn has_pending(&self) -> bool {
        self.next < self.len
    }

    /// The next datagram of the last [`RecvBatch::recv`], with its sender.
    pub(super) fn take(&mut self) -> Option<(SocketAddr, &[u8])> {
        while self.next < self.len {
            let i = self.next;
            self.next += 1;
            if let Some(from) = self.from[i] {
                return Some((from, &self.bufs[i][..self.lens[i]]));
            }
        }
        None
    }

    /// Reads what the socket holds, up to [`BATCH`] datagrams, without waiting: the
    /// count, or `WouldBlock` when there is none (which also clears the socket's
    /// readiness, so the next `readable()` waits for more). Datagrams of the previous
    /// batch not yet taken are dropped: take them first.
    pub(super) fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.len = 0;
        self.next = 0;
        let n = socket.try_io(Interest::READABLE, || self.recv_now(socket))?;
        self.len = n;
        Ok(n)
    }

    #[cfg(target_os = "linux")]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: all-zero sockaddr_storage, iovec and mmsghdr are valid empty values.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, buf) in self.bufs.iter_mut().enumerate() {
            iovs[i] = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: DATAGRAM };
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live buffer, iovec and address of this
        // frame or of `self.bufs`, which outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = (msgs[i].msg_len as usize).min(DATAGRAM);
            self.from[i] = from_storage(&addrs[i]);
        }
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let (n, from) = socket.try_recv_from(&mut self.bufs[0])?;
        self.lens[0] = n;
        self.from[0] = Some(from);
        Ok(1)
    }
}

/// Datagrams waiting to be sent, written out [`BATCH`] at a time.
#[derive(Default)]
pub(super) struct SendBatch {
    queue: Vec<Transmit>,
}

impl SendBatch {
    /// Queues one datagram; a full batch goes out at once.
    pub(super) fn push(&mut self, socket: &UdpSocket, t: Transmit) -> u64 {
        self.queue.push(t);
        if self.queue.len() >= BATCH {
            self.flush(socket)
        } else {
            0
        }
    }

    /// Sends everything queued; the count the kernel refused (a full send buffer drops
    /// the datagram, as the network might).
    pub(super) fn flush(&mut self, socket: &UdpSocket) -> u64 {
        let mut dropped = 0;
        for chunk in self.queue.chunks(BATCH) {
            dropped += send(socket, chunk);
        }
        self.queue.clear();
        dropped
    }
}

#[cfg(target_os = "linux")]
fn send(socket: &UdpSocket, batch: &[Transmit]) -> u64 {
    use std::os::fd::AsRawFd;
    let n = batch.len().min(BATCH);
    // SAFETY: all-zero sockaddr_storage, iovec and mmsghdr are valid empty values.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, t) in batch.iter().take(n).enumerate() {
        let len = to_storage(t.destination, &mut addrs[i]);
        iovs[i] =
            libc::iovec { iov_base: t.contents.as_ptr() as *mut libc::c_void, iov_len: t.contents.len() };
        msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen = len;
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut sent = 0;
    let mut dropped = 0;
    while sent < n {
        let rest = &mut msgs[sent..n];
        // SAFETY: `rest` holds initialized headers whose addresses and buffers (this
        // frame's arrays, `batch`'s contents) are alive during the call.
        let r =
            unsafe { libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
        if r <= 0 {
            // The first of the rest was refused (send buffer full, unreachable): drop
            // it, as the network might, and go on with the next.
            dropped += 1;
            sent += 1;
        } else {
            sent += r as usize;
        }
    }
    dropped
}

#[cfg(not(target_os = "linux"))]
fn send(socket: &UdpSocket, batch: &[Transmit]) -> u64 {
    batch.iter().filter(|t| socket.try_send_to(&t.contents, t.destination).is_err()).count() as u64
}

/// The address the kernel wrote (IPv4 or IPv6).
#[cfg(target_os = "linux")]
fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{SocketAddrV4, SocketAddrV6};
    match libc::c_int::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it fits.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `s` as the kernel expects it; its length.
#[cfg(target_os = "linux")]
fn to_storage(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: a sockaddr_in fits a sockaddr_storage, which is aligned for it.
            let out = unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = a.port().to_be();
            out.sin_addr = libc::in_addr { s_addr: u32::from(*a.ip()).to_be() };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, a sockaddr_in6.
            let out = unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            out.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn addresses_go_to_the_kernel_and_back() {
        for a in ["127.0.0.1:5000", "[::1]:443", "[fe80::1%2]:9"] {
            let a: SocketAddr = a.parse().unwrap();
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            to_storage(a, &mut s);
            assert_eq!(from_storage(&s), Some(a));
        }
    }

    #[tokio::test]
    async fn batches_go_out_and_come_in_with_their_senders() {
        let relay = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (to_relay, to_peer) = (relay.local_addr().unwrap(), peer.local_addr().unwrap());
        for i in 0..40u8 {
            peer.send_to(&[i; 100], to_relay).await.unwrap();
        }
        let mut got = Vec::new();
        let mut batch = RecvBatch::new();
        while got.len() < 40 {
            relay.readable().await.unwrap();
            if batch.recv(&relay).is_ok() {
                while let Some((from, d)) = batch.take() {
                    got.push((from, d.to_vec()));
                }
                assert!(!batch.has_pending());
            }
        }
        assert!(got.iter().all(|(from, _)| *from == to_peer));
        assert_eq!(got.iter().map(|(_, d)| d[0]).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
        assert!(got.iter().all(|(_, d)| d.len() == 100));

        let mut out = SendBatch::default();
        let mut dropped = 0;
        for i in 0..40u8 {
            let contents = vec![i; 50].into();
            let t = Transmit {
                proto: str0m::net::Protocol::Udp,
                source: to_relay,
                destination: to_peer,
                contents,
            };
            dropped += out.push(&relay, t);
        }
        dropped += out.flush(&relay);
        assert_eq!(dropped, 0);
        let mut buf = [0u8; 200];
        for i in 0..40u8 {
            let (n, from) = peer.recv_from(&mut buf).await.unwrap();
            assert_eq!((n, from, buf[0]), (50, to_relay, i));
        }
    }
}
