//! A tiny DNS server on 127.0.0.1 (UDP, a free port) for Envoy's c-ares resolver: `A` queries for
//! the names it was given are answered with 127.0.0.1, other queries for them with no record
//! (NOERROR), anything else with NXDOMAIN. Every query is recorded. Enough for a dynamic forward
//! proxy cluster to reach test servers by host name without a hosts file or root.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub struct DnsServer {
    port: u16,
    queries: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const TYPE_A: u16 = 1;
const TTL_SECONDS: u32 = 5;

impl DnsServer {
    /// Answers for `names` (case-insensitive, without a trailing dot).
    pub fn start(names: &[&str]) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the DNS socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("DNS socket timeout");
        let port = socket.local_addr().expect("DNS socket address").port();
        let names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (Arc::clone(&queries), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((name, qtype, reply)) = answer(&buf[..n], &names) {
                    q.lock().unwrap().push((name, qtype));
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        DnsServer {
            port,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// (name, query type) of every query answered so far.
    pub fn queries(&self) -> Vec<(String, u16)> {
        self.queries.lock().unwrap().clone()
    }

    /// Envoy's `typed_dns_resolver_config` for c-ares pointed at this server only.
    pub fn cares_resolver(&self) -> serde_json::Value {
        serde_json::json!({
            "name": "envoy.network.dns_resolver.cares",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
                "resolvers": [{"socket_address": {"address": "127.0.0.1", "port_value": self.port}}],
                "use_resolvers_as_fallback": false,
                "dns_resolver_options": {"use_tcp_for_dns_lookups": false, "no_default_search_domain": true}
            }
        })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply to one query (RFC 1035 §4.1): the question echoed, one `A` record (127.0.0.1) for a
/// known name asked for `A`. `None` for a message that is not a one-question query.
fn answer(q: &[u8], names: &[String]) -> Option<(String, u16, Vec<u8>)> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = q.get(12..i + 4)?;
    let name = labels.join(".");
    let known = names.contains(&name);
    let with_record = known && qtype == TYPE_A;
    // Header: same id, QR + RD (as asked) + RA; RCODE 0 or 3 (NXDOMAIN).
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&q[0..2]);
    r.push(0x80 | (q[2] & 0x01));
    r.push(if known { 0x80 } else { 0x83 });
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&u16::from(with_record).to_be_bytes());
    r.extend_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(question);
    if with_record {
        r.extend_from_slice(&[0xc0, 0x0c]); // the name: a pointer to the question's
        r.extend_from_slice(&TYPE_A.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes()); // class IN
        r.extend_from_slice(&TTL_SECONDS.to_be_bytes());
        r.extend_from_slice(&4u16.to_be_bytes());
        r.extend_from_slice(&[127, 0, 0, 1]);
    }
    Some((name, qtype, r))
}
