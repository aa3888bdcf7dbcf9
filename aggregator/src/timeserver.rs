//! The aggregator's clock port: answers the agents' NTP client requests (mode 3) over UDP with
//! server replies (mode 4) stamped with the aggregator's clock, so every agent can measure its
//! node's offset with an error bound. A reply is no larger than the request (no amplification);
//! anything that is not a client request is dropped and counted.

use anchorwatch_clock::exchange::reply_to;
use anchorwatch_clock::packet::{Mode, Packet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::UdpSocket;
use tracing::{debug, warn};

/// The stratum the aggregator claims: it is the reference for relative skew, not a time source
/// anyone should synchronise to.
const STRATUM: u8 = 15;
/// Reference id of the replies ("AWAG": anchorwatch aggregator).
const REFERENCE_ID: [u8; 4] = *b"AWAG";
/// Precision exponent: about a microsecond.
const PRECISION: i8 = -20;

/// What the server has seen.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered.
    pub answered: AtomicU64,
    /// Datagrams dropped: not NTP, or not a client request.
    pub dropped: AtomicU64,
}

/// Serves on `socket` until the task is aborted.
pub async fn serve(socket: UdpSocket, counters: Arc<Counters>) {
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier replies surface here on some systems: not fatal.
                debug!(error = %e, "clock port receive error");
                continue;
            }
        };
        let t2 = crate::time::now();
        let request = match Packet::decode(&buf[..n]) {
            Ok(p) if p.mode == Mode::Client && (1..=4).contains(&p.version) => p,
            _ => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let reply = reply_to(
            &request,
            t2,
            crate::time::now(),
            STRATUM,
            REFERENCE_ID,
            PRECISION,
        );
        match socket.send_to(&reply.encode(), from).await {
            Ok(_) => {
                counters.answered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => warn!(%from, error = %e, "cannot answer a clock request"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorwatch_clock::exchange::check_reply;
    use anchorwatch_clock::packet::NtpTimestamp;

    #[tokio::test]
    async fn requests_are_answered_and_garbage_is_dropped() {
        let server = UdpSocket::bind("127.0.41.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(serve(server, counters.clone()));
        let client = UdpSocket::bind("127.0.41.2:0").await.unwrap();
        let mut buf = [0u8; 512];
        let wait = std::time::Duration::from_secs(2);

        client.send_to(b"not ntp", addr).await.unwrap();
        let mut server_mode = Packet::request(NtpTimestamp::from_time(crate::time::now()));
        server_mode.mode = Mode::Server;
        client.send_to(&server_mode.encode(), addr).await.unwrap();

        let t1 = crate::time::now();
        let request = Packet::request(NtpTimestamp::from_time(t1));
        client.send_to(&request.encode(), addr).await.unwrap();
        let (n, from) = tokio::time::timeout(wait, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let t4 = crate::time::now();
        assert_eq!((from, n), (addr, 48));
        let reply = Packet::decode(&buf[..n]).unwrap();
        let s = check_reply(&request, &reply, t1, t4, 1e-6, true).unwrap();
        assert!(s.offset_s.abs() <= s.bound_s, "{s:?}");
        assert_eq!(counters.answered.load(Ordering::Relaxed), 1);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 2);
        task.abort();
    }
}
