//! ICE over TCP for a relay shard (RFC 6544, passive side): the shard's listener, one
//! task per accepted connection reading and writing RFC 4571 frames (a 16-bit length,
//! then the packet), and the map from a client's address to its connection's queue.
//! Which peer connection a TCP connection belongs to is the relay's to say, by the
//! STUN username of its first frame, as for a UDP address; a connection nobody claims
//! is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Connections a shard keeps open at once; past it new ones are refused.
const MAX_CONNECTIONS: usize = 4096;
/// A connection must send its first frame (a STUN binding request) within this ...
const FIRST_FRAME: Duration = Duration::from_secs(5);
/// ... and then something at least this often (ICE consent checks come every few
/// seconds, media far more often).
const IDLE: Duration = Duration::from_secs(30);
/// Frames queued for one connection; past it a frame is dropped, as UDP would lose
/// it, rather than letting one slow reader hold the shard's memory.
const QUEUE: usize = 512;

/// What a connection task tells its shard.
pub(super) enum TcpIn {
    /// A frame from the client at this address.
    Frame(SocketAddr, Vec<u8>),
    /// The connection is gone.
    Closed(SocketAddr),
}

/// A shard's ICE-TCP side (what its connection tasks say comes on the receiver
/// [`TcpIce::new`] returns).
pub(super) struct TcpIce {
    listener: TcpListener,
    to_shard: mpsc::Sender<TcpIn>,
    /// Each open connection's send queue, by the client's address; a connection the
    /// relay claimed is marked.
    conns: HashMap<SocketAddr, (mpsc::Sender<Vec<u8>>, bool)>,
}

impl TcpIce {
    /// Around a bound, non-blocking listener.
    pub(super) fn new(listener: std::net::TcpListener) -> std::io::Result<(Self, mpsc::Receiver<TcpIn>)> {
        let listener = TcpListener::from_std(listener)?;
        let (to_shard, from_conns) = mpsc::channel(1024);
        Ok((TcpIce { listener, to_shard, conns: HashMap::new() }, from_conns))
    }

    /// Waits for the next client.
    pub(super) async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        self.listener.accept().await
    }

    /// Serves an accepted connection on a task of the shard's runtime.
    pub(super) fn serve(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.conns.len() >= MAX_CONNECTIONS {
            tracing::warn!(%peer, "too many ICE-TCP connections on this shard; refused");
            return;
        }
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::channel(QUEUE);
        self.conns.insert(peer, (tx, false));
        tokio::spawn(connection(stream, peer, self.to_shard.clone(), rx));
    }

    /// A frame from `peer` was claimed by the relay (or not: the connection closes).
    pub(super) fn claimed(&mut self, peer: SocketAddr, claimed: bool) {
        match self.conns.get_mut(&peer) {
            Some((_, was)) if claimed => *was = true,
            // Dropping its queue ends the connection's task.
            Some((_, false)) => {
                self.conns.remove(&peer);
            }
            _ => {}
        }
    }

    /// The connection to `peer` closed.
    pub(super) fn closed(&mut self, peer: SocketAddr) {
        self.conns.remove(&peer);
    }

    /// Queues a frame for `peer`; whether it was dropped (no such connection, or its
    /// queue is full).
    pub(super) fn send(&mut self, peer: SocketAddr, data: Vec<u8>) -> bool {
        match self.conns.get(&peer) {
            Some((tx, _)) => tx.try_send(data).is_err(),
            None => true,
        }
    }

    /// Open connections.
    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }
}

/// One connection: frames in to the shard, queued frames out, until either side ends
/// it, the client goes quiet, or the shard drops its queue.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    to_shard: mpsc::Sender<TcpIn>,
    out: mpsc::Receiver<Vec<u8>>,
) {
    let (reader, writer) = stream.into_split();
    tokio::select! {
        r = read_frames(reader, peer, &to_shard) => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "ICE-TCP connection ended");
            }
        }
        _ = write_frames(writer, out) => {}
    }
    let _ = to_shard.send(TcpIn::Closed(peer)).await;
}

async fn read_frames(
    mut r: tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    to_shard: &mpsc::Sender<TcpIn>,
) -> std::io::Result<()> {
    let mut wait = FIRST_FRAME;
    loop {
        let len = tokio::time::timeout(wait, r.read_u16())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no frame in time"))??;
        wait = IDLE;
        let mut buf = vec![0u8; usize::from(len)];
        r.read_exact(&mut buf).await?;
        if to_shard.send(TcpIn::Frame(peer, buf)).await.is_err() {
            return Ok(());
        }
    }
}

/// Writes what is queued, as many frames per system call as are waiting.
async fn write_frames(mut w: tokio::net::tcp::OwnedWriteHalf, mut out: mpsc::Receiver<Vec<u8>>) {
    let mut buf = Vec::with_capacity(16 * 1024);
    while let Some(first) = out.recv().await {
        buf.clear();
        frame_into(&first, &mut buf);
        while buf.len() < 64 * 1024 {
            match out.try_recv() {
                Ok(more) => frame_into(&more, &mut buf),
                Err(_) => break,
            }
        }
        if w.write_all(&buf).await.is_err() {
            return;
        }
    }
}

/// Appends `data` framed as RFC 4571 says (longer packets cannot be framed: dropped).
pub(super) fn frame_into(data: &[u8], buf: &mut Vec<u8>) {
    if let Ok(len) = u16::try_from(data.len()) {
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(data);
    }
}

/// Binds a shard's ICE-TCP listener.
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
