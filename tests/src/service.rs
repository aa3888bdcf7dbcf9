//! A Kubernetes Service in miniature: a TCP address that forwards each new connection to a
//! backend whose readiness endpoint answers 200, as kube-proxy sends traffic only to Ready
//! endpoints. Open connections stay where they are until either side closes them.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One endpoint: where traffic goes and where its readiness is asked.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The serving address.
    pub addr: SocketAddr,
    /// The HTTP address whose `/readyz` says whether it is ready.
    pub ready_addr: SocketAddr,
}

/// A running Service; stops when dropped.
pub struct Service {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Service {
    /// Listens on `addr` (e.g. `127.0.0.1:0`) in front of `backends`.
    pub async fn start(addr: SocketAddr, backends: Vec<Backend>) -> anyhow::Result<Service> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let backends = backends.clone();
                tokio::spawn(async move {
                    for b in &backends {
                        if ready(b.ready_addr).await
                            && let Ok(Ok(mut upstream)) = tokio::time::timeout(
                                Duration::from_secs(2),
                                TcpStream::connect(b.addr),
                            )
                            .await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                    // No ready endpoint: the connection is refused, as with an empty Service.
                });
            }
        });
        Ok(Service { addr, task })
    }

    /// The Service's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `GET /readyz` on `addr` answers 200 within a second.
pub async fn ready(addr: SocketAddr) -> bool {
    let ask = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(format!("GET /readyz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        anyhow::Ok(head.ends_with(b" 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ask).await,
        Ok(Ok(true))
    )
}
