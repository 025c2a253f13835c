//! `pymri listen`'s listener against the test double of the agent and against garbage: the
//! reverse connection over TCP and TLS, one session at a time, the lockout, the bound on
//! handshakes in progress, and a live session undisturbed by a flood.

mod common;

use common::{connect_from, Agent, Binding, OTHER_SECRET, SECRET};
use pymri_protocol::requests::Info;
use pymri_transport::{Address, Listener, Serving, SharedSecret, Stats};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn serve(tls: bool, handshake_timeout: Duration) -> (Serving, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let address = Address::parse("tcp:127.0.0.1:0").expect("address");
    let listener = Listener::bind(&address, tls).expect("bind").with_handshake_timeout(handshake_timeout);
    assert!(listener.is_loopback());
    let addr = listener.local_addr().expect("addr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let secret = SharedSecret::from_hex(SECRET, "test").expect("secret");
    let serving = listener
        .start(secret, Box::new(move |line: &str| sink.lock().expect("log").push(line.to_string())))
        .expect("start");
    (serving, addr, log)
}

/// An agent connecting out from `from`, as `--connect tcp:`/`tls:` does.
fn agent_from(from: Ipv4Addr, addr: SocketAddr, tls: bool, secret: &str) -> std::io::Result<Agent> {
    let tcp = connect_from(from, addr)?;
    let mut agent = if tls { Agent::tls(tcp)? } else { Agent::plain(tcp) };
    agent.handshake(secret, Binding::Received)?;
    Ok(agent)
}

/// Waits until the listener's counters satisfy `done`.
fn wait_for(serving: &Serving, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = serving.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}: {stats:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether the listener closed `tcp` at once, unread (a reset or an end of stream, no bytes).
fn closed_at_once(mut tcp: TcpStream) -> bool {
    tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut buf = [0u8; 64];
    match tcp.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn reverse_tcp_and_tls_one_session_at_a_time() {
    for tls in [false, true] {
        let (serving, addr, _) = serve(tls, Duration::from_secs(10));
        let agent = std::thread::spawn(move || {
            let mut agent = agent_from(LOCALHOST, addr, tls, SECRET)?;
            let fingerprint = agent.fingerprint.clone();
            agent.serve()?;
            Ok::<_, std::io::Error>(fingerprint)
        });
        let accepted = serving.accept(Some(Duration::from_secs(20))).expect("a session");
        assert_eq!(accepted.peer.ip(), LOCALHOST);
        assert_eq!(accepted.session.request(&Info {}).expect("info").pid, 4242);
        // A second agent while the session is live: closed at once.
        let second = TcpStream::connect(addr).expect("connect");
        assert!(closed_at_once(second));
        assert_eq!(serving.stats().refused_live, 1);
        assert_eq!(accepted.session.request(&Info {}).expect("still works").pid, 4242);
        drop(accepted);
        let fingerprint = agent.join().expect("agent").expect("clean end");
        // Over TLS the agent saw the certificate whose fingerprint the proofs covered.
        assert_eq!(fingerprint.as_deref(), serving.fingerprint());
        assert_eq!(fingerprint.is_some(), tls);
    }
}

/// The garbage kinds of §5: each is one failed handshake.
fn garbage(kind: usize, from: Ipv4Addr, addr: SocketAddr, tls: bool) {
    let mut tcp = connect_from(from, addr).expect("connect");
    match kind {
        // An oversized length prefix.
        0 => {
            let _ = tcp.write_all(&[0xff, 0xff, 0xff, 0xff, b'{']);
        }
        // A frame that is no JSON (over TLS: no ClientHello).
        1 => {
            let _ = tcp.write_all(b"\x00\x00\x00\x05hello");
        }
        // A proof made with another secret.
        2 => {
            let _ = (|| {
                let mut agent =
                    if tls { Agent::tls(tcp.try_clone()?)? } else { Agent::plain(tcp.try_clone()?) };
                agent.handshake(OTHER_SECRET, Binding::Received)
            })();
        }
        // Connect and leave at once.
        3 => return,
        // Slowloris: connect, send nothing, wait for the listener to give up.
        _ => {}
    }
    let mut sink = Vec::new();
    let _ = tcp.read_to_end(&mut sink);
}

/// Issue 8, item 8: loopback is every local user at once (from any 127.x address), so failures
/// there delay the next handshakes instead of locking everyone out. (The lockout of remote
/// peers is `lockout.rs`'s state machine; its tests step time.)
#[test]
fn five_failures_from_loopback_delay_handshakes_and_lock_nobody_out() {
    for tls in [false, true] {
        let (serving, addr, log) = serve(tls, Duration::from_millis(500));
        // Another local user on the same machine: the same loopback address as everyone.
        let attacker = LOCALHOST;
        for kind in 0..5 {
            garbage(kind, attacker, addr, tls);
            wait_for(&serving, "the failure is counted", |s| s.failed == kind as u64 + 1);
        }
        // The right agent still gets in, after the delay.
        let agent = std::thread::spawn(move || agent_from(LOCALHOST, addr, tls, SECRET)?.serve());
        let accepted = serving.accept(Some(Duration::from_secs(20))).expect("a session");
        assert_eq!(accepted.session.request(&Info {}).expect("info").pid, 4242);
        drop(accepted);
        agent.join().expect("agent").expect("clean end");
        let stats = serving.stats();
        assert_eq!((stats.failed, stats.refused_locked), (5, 0));
        let log = log.lock().expect("log").join("\n");
        assert!(log.contains("refused a connection from 127.0.0.1"), "{log}");
        assert!(log.contains("wrong secret"), "{log}");
        assert!(log.contains("the next ones are delayed by 250 ms"), "{log}");
    }
}

#[test]
fn at_most_eight_handshakes_in_progress() {
    let (serving, addr, _) = serve(false, Duration::from_secs(2));
    let slow = Ipv4Addr::new(127, 0, 0, 3);
    let held: Vec<TcpStream> = (0..8).map(|_| connect_from(slow, addr).expect("connect")).collect();
    wait_for(&serving, "eight in progress", |s| s.connections == 8);
    // The ninth, from anyone, is closed at once.
    assert!(closed_at_once(connect_from(LOCALHOST, addr).expect("connect")));
    wait_for(&serving, "busy", |s| s.refused_busy == 1);
    // Once they timed out, an agent gets in.
    wait_for(&serving, "timeouts", |s| s.failed == 8);
    drop(held);
    let agent = std::thread::spawn(move || agent_from(LOCALHOST, addr, false, SECRET)?.serve());
    let accepted = serving.accept(Some(Duration::from_secs(20))).expect("a session");
    drop(accepted);
    agent.join().expect("agent").expect("clean end");
}

#[test]
fn a_flood_of_garbage_does_not_disturb_a_live_session() {
    for tls in [false, true] {
        let (serving, addr, _) = serve(tls, Duration::from_secs(10));
        let agent = std::thread::spawn(move || agent_from(LOCALHOST, addr, tls, SECRET)?.serve());
        let accepted = serving.accept(Some(Duration::from_secs(20))).expect("a session");
        let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flood = {
            let flooding = Arc::clone(&flooding);
            std::thread::spawn(move || {
                let attacker = Ipv4Addr::new(127, 0, 0, 4);
                let mut slowest = Duration::ZERO;
                for i in 0..1000 {
                    let started = Instant::now();
                    let mut tcp = connect_from(attacker, addr).expect("connect");
                    if i % 2 == 0 {
                        let _ = tcp.write_all(b"\xff\xff\xff\xffgarbage");
                    }
                    assert!(closed_at_once(tcp), "connection {i} was not closed at once");
                    slowest = slowest.max(started.elapsed());
                }
                flooding.store(false, std::sync::atomic::Ordering::SeqCst);
                slowest
            })
        };
        // Requests keep being answered during the flood.
        let mut requests = 0;
        let mut worst = Duration::ZERO;
        while flooding.load(std::sync::atomic::Ordering::SeqCst) || requests < 10 {
            let started = Instant::now();
            assert_eq!(accepted.session.request(&Info {}).expect("info during the flood").pid, 4242);
            worst = worst.max(started.elapsed());
            requests += 1;
        }
        let slowest_refusal = flood.join().expect("flood");
        let stats = serving.stats();
        assert_eq!(stats.refused_live, 1000, "{stats:?}");
        assert_eq!(stats.failed, 0, "{stats:?}");
        // Generous bounds for a loaded 2-core machine: the point is that nothing waits for a
        // handshake timeout (10 s) or for another connection.
        assert!(slowest_refusal < Duration::from_secs(2), "{slowest_refusal:?}");
        assert!(worst < Duration::from_secs(2), "{worst:?} for one request during the flood");
        drop(accepted);
        agent.join().expect("agent").expect("clean end");
    }
}

#[test]
fn listening_on_unix_or_fifo_is_the_agents_job() {
    for text in ["unix:/tmp/x.sock", "fifo:/tmp/x"] {
        let err = Listener::bind(&Address::parse(text).expect("address"), false).err().expect("refused");
        assert!(err.to_string().contains("TCP only"), "{err}");
    }
}
