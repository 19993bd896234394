//! TLS in the server itself: the certificate chain and key from config, made once into
//! the acceptor that the signaling listener (https, wss and TURN over TLS on one port)
//! and TURN's own TLS port share; and the small wrapper that lets a connection whose
//! first bytes were read to tell HTTP from TURN be served as if none had been.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
pub use tokio_rustls::TlsAcceptor;

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

/// The acceptor for `cert` (a PEM chain, leaf first) and its `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| TlsError(format!("reading the certificate {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!("no certificate in {}", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError(format!("reading the key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("the certificate and key do not go together: {e}")))?;
    // HTTP/1.1 for the browser; TURN clients send no ALPN (or "stun.turn", RFC 7443),
    // which a server that offers protocols must not refuse: rustls accepts a client
    // without ALPN, and one naming only others fails the handshake, so both are listed.
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"stun.turn".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether the first byte of a stream after the TLS handshake begins a STUN message (a
/// TURN client's first Allocate: the two top bits are zero, RFC 8489 §5) rather than an
/// HTTP request (an ASCII method name).
pub fn is_stun(first: u8) -> bool {
    first < 0x40
}

/// A stream some of whose first bytes were already read: they come first again.
pub struct Rewound<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Rewound<S> {
    /// `inner`, with `head` (read from it before) read again first.
    pub fn new(head: Vec<u8>, inner: S) -> Self {
        Rewound { head, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            if self.at == self.head.len() {
                self.head = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_rewound_stream_reads_its_head_then_the_rest() {
        let rest: &[u8] = b" /healthz HTTP/1.1\r\n";
        let mut s = Rewound::new(b"GET".to_vec(), rest);
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET /healthz HTTP/1.1\r\n");
    }

    #[test]
    fn stun_and_http_are_told_apart_by_the_first_byte() {
        assert!(is_stun(0x00) && is_stun(0x01));
        for method in [b'G', b'P', b'H', b'D', b'O', b'C', b'T'] {
            assert!(!is_stun(method));
        }
    }
}
