//! A TCP load balancer for the tests, as an operator puts in front of the nodes of a
//! deployment: each new connection goes to the first backend that takes it, so when a
//! node stops, its clients' reconnections reach the next one.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// A running balancer on 127.0.0.1.
pub struct Balancer {
    /// Its base URL (`http://127.0.0.1:port`).
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    /// Listens on a port of its own and forwards to the first of `backends` (ports on
    /// 127.0.0.1) that accepts, in that order.
    pub async fn start(backends: Vec<u16>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the balancer");
        let port = listener.local_addr().expect("balancer address").port();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let backends = backends.clone();
                tokio::spawn(async move {
                    for port in backends {
                        let dial = TcpStream::connect(("127.0.0.1", port));
                        if let Ok(Ok(mut server)) = tokio::time::timeout(Duration::from_secs(1), dial).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { url: format!("http://127.0.0.1:{port}"), task }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
