//! ICE over TCP for the SDK's media (RFC 6544, active side): a TCP connection to each
//! relay candidate ICE wants to reach, opened on the first packet for it, carrying RFC
//! 4571 frames (a 16-bit length, then the packet) both ways.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long a connection may take to open.
const CONNECT: Duration = Duration::from_secs(5);
/// Packets queued for one connection; past it one is dropped, as UDP would lose it.
const QUEUE: usize = 256;

/// The port of an active TCP candidate (RFC 6544 §4.5: it has none of its own).
pub(crate) const ACTIVE_PORT: u16 = 9;

/// The open connections, by the relay address they reach.
pub(crate) struct TcpLinks {
    conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    to_media: mpsc::Sender<(SocketAddr, Vec<u8>)>,
}

impl TcpLinks {
    /// No connection yet; what they receive comes on the returned receiver, with the
    /// relay address it came from.
    pub(crate) fn new() -> (Self, mpsc::Receiver<(SocketAddr, Vec<u8>)>) {
        let (to_media, rx) = mpsc::channel(1024);
        (TcpLinks { conns: HashMap::new(), to_media }, rx)
    }

    /// Sends a packet to `dest`, connecting first if need be (again if the last
    /// connection failed: ICE keeps checking).
    pub(crate) fn send(&mut self, dest: SocketAddr, data: Vec<u8>) {
        let open = self.conns.get(&dest).is_some_and(|tx| !tx.is_closed());
        if !open {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(link(dest, rx, self.to_media.clone()));
            self.conns.insert(dest, tx);
        }
        if let Some(tx) = self.conns.get(&dest) {
            let _ = tx.try_send(data);
        }
    }
}

/// One connection: queued packets out, frames in, until either fails.
async fn link(
    dest: SocketAddr,
    mut out: mpsc::Receiver<Vec<u8>>,
    to_media: mpsc::Sender<(SocketAddr, Vec<u8>)>,
) {
    let stream = match tokio::time::timeout(CONNECT, TcpStream::connect(dest)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tracing::debug!(%dest, error = %e, "ICE-TCP connect failed"),
        Err(_) => return tracing::debug!(%dest, "ICE-TCP connect timed out"),
    };
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let reading = async {
        loop {
            let len = r.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            r.read_exact(&mut buf).await?;
            if to_media.send((dest, buf)).await.is_err() {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let writing = async {
        let mut buf = Vec::with_capacity(4096);
        while let Some(first) = out.recv().await {
            buf.clear();
            frame_into(&first, &mut buf);
            while let Ok(more) = out.try_recv() {
                frame_into(&more, &mut buf);
            }
            w.write_all(&buf).await?;
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::select! {
        r = reading => if let Err(e) = r { tracing::debug!(%dest, error = %e, "ICE-TCP connection ended") },
        _ = writing => {}
    }
}

fn frame_into(data: &[u8], buf: &mut Vec<u8>) {
    if let Ok(len) = u16::try_from(data.len()) {
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(data);
    }
}
