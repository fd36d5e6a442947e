//! Packets for the dataplane tests (test fixture): the test programs that run inside a pod's network
//! namespace (TCP and UDP echo servers, and a DNS responder answering A queries on 53/UDP and
//! 53/TCP) and a probe that sends one real connection or datagram from a pod's namespace and says
//! whether it was answered. Sockets are opened by a thread that has joined the pod's namespace
//! (setns), so they live there exactly as those of a process started with `ip netns exec` would.
//! Nothing here knows about NetworkPolicies: it only sends and answers.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ports every test pod answers on with TCP and UDP echo servers.
pub const ECHO_PORTS: [u16; 2] = [7000, 7001];
/// The DNS port; only pods labelled `k8s-app=kube-dns` answer on it.
pub const DNS_PORT: u16 = 53;
/// A server stops by itself this long after it started, even if nobody stops it.
const SERVER_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// How often a server looks at its stop flag.
const SERVER_TICK: Duration = Duration::from_millis(100);

/// Runs `work` on a new thread that has joined the network namespace `/run/netns/<netns>`.
/// Sockets it opens stay in that namespace after the thread ends.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let ns = File::open(&path)?;
        // SAFETY: changes the network namespace of this thread only, which ends after `work`.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        work()
    })
    .join()
    .expect("the network namespace thread does not panic")
}

/// True when `fd` becomes readable within `timeout`.
fn readable(fd: RawFd, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut poll, 1, ms) > 0 }
}

/// The servers of one pod: echo on [`ECHO_PORTS`] (TCP and UDP), and DNS on 53 when asked.
/// They stop when dropped, or after [`SERVER_LIFETIME`].
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    /// Opens every socket in `netns` (so a port that cannot be bound fails here), then serves.
    /// `dns_answer` is the address DNS answers carry; None for no DNS responder.
    pub fn start(netns: &str, dns_answer: Option<Ipv4Addr>) -> io::Result<Servers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut ports: Vec<(u16, Option<Ipv4Addr>)> =
            ECHO_PORTS.iter().map(|&p| (p, None)).collect();
        if let Some(answer) = dns_answer {
            ports.push((DNS_PORT, Some(answer)));
        }
        for (port, dns) in ports {
            let (tcp, udp) = in_netns(netns, move || {
                let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
                Ok((TcpListener::bind(any)?, UdpSocket::bind(any)?))
            })?;
            udp.set_read_timeout(Some(SERVER_TICK))?;
            let until = Instant::now() + SERVER_LIFETIME;
            let s = stop.clone();
            threads.push(std::thread::spawn(move || serve_tcp(tcp, dns, &s, until)));
            let s = stop.clone();
            threads.push(std::thread::spawn(move || serve_udp(udp, dns, &s, until)));
        }
        Ok(Servers { stop, threads })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve_tcp(listener: TcpListener, dns: Option<Ipv4Addr>, stop: &AtomicBool, until: Instant) {
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        if !readable(listener.as_raw_fd(), SERVER_TICK) {
            continue;
        }
        let Ok((mut conn, _)) = listener.accept() else {
            continue;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = match dns {
            // DNS over TCP: a two-byte length before each message.
            Some(answer) => read_framed(&mut conn)
                .ok()
                .and_then(|query| dns_response(&query, answer))
                .map_or(Ok(()), |reply| write_framed(&mut conn, &reply)),
            None => {
                let mut buf = [0u8; 512];
                match conn.read(&mut buf) {
                    Ok(n) if n > 0 => conn.write_all(&buf[..n]),
                    _ => Ok(()),
                }
            }
        };
    }
}

fn serve_udp(socket: UdpSocket, dns: Option<Ipv4Addr>, stop: &AtomicBool, until: Instant) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue; // the read timeout: look at the stop flag again
        };
        let reply = match dns {
            Some(answer) => dns_response(&buf[..n], answer),
            None => Some(buf[..n].to_vec()),
        };
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, peer);
        }
    }
}

fn read_framed(conn: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    conn.read_exact(&mut len)?;
    let mut message = vec![0u8; u16::from_be_bytes(len) as usize];
    conn.read_exact(&mut message)?;
    Ok(message)
}

fn write_framed(conn: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    conn.write_all(&framed)
}

/// The name every DNS probe asks for.
const DNS_NAME: &str = "kubernetes.default.svc.cluster.local";

/// An A query for [`DNS_NAME`] with message id `id`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in DNS_NAME.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root; QTYPE A; QCLASS IN
    q
}

/// The answer to a one-question query: for an A question, one A record with `answer`; for any
/// other type, no record. None for what is not a well-formed query.
fn dns_response(query: &[u8], answer: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let mut end = 12;
    loop {
        let len = *query.get(end)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression pointers do not appear in questions we send
        }
        end += 1 + len;
    }
    let question_end = end + 5;
    let question = query.get(12..question_end)?;
    let is_a = question[question.len() - 4..] == [0, 1, 0, 1];
    let mut r = query[0..2].to_vec();
    r.extend_from_slice(&[0x84 | (query[2] & 0x01), 0x00]); // response, authoritative, RD copied
    r.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if is_a {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]); // name ptr; A IN; TTL 30
        r.extend_from_slice(&answer.octets());
    }
    Some(r)
}

/// True when `reply` answers the query with id `id` with an A record for `expected`.
fn dns_answers(reply: &[u8], id: u16, expected: Ipv4Addr) -> bool {
    reply.len() >= 16
        && reply[0..2] == id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0f == 0
        && reply[6..8] == [0, 1]
        && reply[reply.len() - 4..] == expected.octets()
}

/// What a probe sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection that must echo a message back.
    Tcp(u16),
    /// A UDP datagram that must come back.
    Udp(u16),
    /// An A query on 53/UDP, answered with the responder's address.
    DnsUdp,
    /// An A query on 53/TCP.
    DnsTcp,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Tcp(port) => write!(f, "{port}/TCP"),
            Probe::Udp(port) => write!(f, "{port}/UDP"),
            Probe::DnsUdp => write!(f, "DNS over 53/UDP"),
            Probe::DnsTcp => write!(f, "DNS over 53/TCP"),
        }
    }
}

/// What became of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The expected answer came back.
    Answered,
    /// Nothing came back within the timeout: the packet was dropped somewhere.
    NoAnswer,
    /// Anything else (refused, unreachable, a wrong answer): the fixture is broken, not the policy.
    Failed(String),
}

/// Sends one probe from the network namespace `netns` to `to` and waits `timeout` for the answer.
/// Each probe is a new connection, or a datagram from a port not used before, so each is a new flow
/// for conntrack and the NetworkPolicy agent decides it afresh.
pub fn probe(netns: &str, to: Ipv4Addr, what: Probe, timeout: Duration) -> Outcome {
    static NONCE: AtomicU32 = AtomicU32::new(1);
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
    let result = in_netns(netns, move || {
        Ok(match what {
            Probe::Tcp(port) => {
                let message = format!("ztdp-probe-{nonce}");
                tcp_exchange(to, port, message.as_bytes(), timeout, false)
                    .map(|reply| reply == message.as_bytes())
            }
            Probe::Udp(port) => {
                let message = format!("ztdp-probe-{nonce}");
                udp_exchange(to, port, message.as_bytes(), timeout)
                    .map(|reply| reply == message.as_bytes())
            }
            Probe::DnsUdp => udp_exchange(to, DNS_PORT, &dns_query(nonce as u16), timeout)
                .map(|reply| dns_answers(&reply, nonce as u16, to)),
            Probe::DnsTcp => tcp_exchange(to, DNS_PORT, &dns_query(nonce as u16), timeout, true)
                .map(|reply| dns_answers(&reply, nonce as u16, to)),
        })
    });
    match result {
        Ok(Ok(true)) => Outcome::Answered,
        Ok(Ok(false)) => Outcome::Failed("a wrong answer".into()),
        Ok(Err(e)) | Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Outcome::NoAnswer
        }
        Ok(Err(e)) | Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn tcp_exchange(
    to: Ipv4Addr,
    port: u16,
    message: &[u8],
    timeout: Duration,
    framed: bool,
) -> io::Result<Vec<u8>> {
    let start = Instant::now();
    let mut conn = TcpStream::connect_timeout(&SocketAddr::from((to, port)), timeout)?;
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    conn.set_read_timeout(Some(left))?;
    conn.set_write_timeout(Some(left))?;
    if framed {
        write_framed(&mut conn, message)?;
        read_framed(&mut conn)
    } else {
        conn.write_all(message)?;
        let mut buf = vec![0u8; message.len()];
        conn.read_exact(&mut buf)?;
        Ok(buf)
    }
}

/// A UDP socket on a source port no earlier probe of this process used: conntrack keeps a UDP flow
/// that was answered for minutes, and a probe that happened to reuse its ports would pass as part of
/// it, whatever the policy says now. (A TCP probe is a new connection whatever its port: conntrack
/// starts a closed connection afresh on a new SYN.)
fn fresh_udp_socket() -> io::Result<UdpSocket> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut last = None;
    for _ in 0..16 {
        let port = 20_000 + (NEXT.fetch_add(1, Ordering::Relaxed) % 40_000) as u16;
        match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried at least once"))
}

fn udp_exchange(to: Ipv4Addr, port: u16, message: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let socket = fresh_udp_socket()?;
    socket.connect((to, port))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(message)?;
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf)?;
    Ok(buf[..n].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_responder_answers_our_query_and_nothing_else() {
        let answer = Ipv4Addr::new(198, 18, 0, 9);
        let reply = dns_response(&dns_query(7), answer).expect("answered");
        assert!(dns_answers(&reply, 7, answer));
        assert!(!dns_answers(&reply, 8, answer), "another query's id");
        assert!(!dns_answers(&reply, 7, Ipv4Addr::new(198, 18, 0, 10)));
        assert_eq!(dns_response(&reply, answer), None, "a response is no query");
        assert_eq!(dns_response(&[0; 5], answer), None);
    }
}
