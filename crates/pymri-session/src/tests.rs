//! The session against a scripted agent on the other end of a socket pair.

use super::*;
use pymri_protocol::handshake::{agent_proof, controller_proof};
use pymri_protocol::messages::StopReason;
use pymri_protocol::requests::{Evaluate, Stack, Threads};
use pymri_protocol::{encode_frame, SessionKeys};
use serde_json::{json, Map};

const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The agent's end: frames in and out.
struct FakeAgent {
    sock: UnixStream,
    decoder: FrameDecoder,
    /// Once authenticated: the tags of what it sends (§3.1).
    sealer: Option<FrameSealer>,
}

impl FakeAgent {
    fn recv(&mut self) -> Map<String, Value> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(obj) = self.decoder.next_object().expect("valid frame") {
                return obj;
            }
            let n = self.sock.read(&mut buf).expect("read");
            assert!(n > 0, "controller closed");
            self.decoder.push(&buf[..n]);
        }
    }

    fn send(&mut self, v: Value) {
        let frame = match &mut self.sealer {
            Some(sealer) => sealer.seal(&v, MAX_FRAME),
            None => encode_frame(&v, MAX_FRAME),
        };
        self.sock.write_all(&frame.expect("frame")).expect("write");
    }

    /// Plays the agent's side of §3 and sends `ready`.
    fn handshake(sock: UnixStream, secret: &str, attach_nonce: &str) -> Option<FakeAgent> {
        let mut agent = FakeAgent { sock, decoder: FrameDecoder::new(MAX_FRAME), sealer: None };
        let challenge = agent.recv();
        let cn = challenge["nonce"].as_str().expect("nonce").to_string();
        let an = "5a".repeat(32);
        let key = Secret::from_hex(secret).expect("secret");
        let proof = agent_proof(&key, &cn, &an, attach_nonce).expect("proof");
        agent.send(json!({"kind": "proof", "protocol": 2, "nonce": an, "proof": proof}));
        let mut buf = [0u8; 4096];
        let accept = loop {
            if let Ok(Some(obj)) = agent.decoder.next_object() {
                break obj;
            }
            match agent.sock.read(&mut buf) {
                Ok(n) if n > 0 => agent.decoder.push(&buf[..n]),
                _ => return None, // the controller refused us
            }
        };
        assert_eq!(accept["proof"], controller_proof(&key, &cn, &an, attach_nonce).expect("proof"));
        let keys = SessionKeys::derive(key.bytes(), &cn, &an).expect("keys");
        agent.decoder.authenticate(&keys.controller_to_agent);
        agent.sealer = Some(FrameSealer::new(&keys.agent_to_controller));
        agent.send(json!({"kind": "event", "event": "ready", "body": {
            "protocol": 2, "agent_version": "0.1.0", "pid": 7, "mode": "launch",
            "python": {"version": "3.13.1", "version_info": [3, 13, 1], "implementation": "cpython",
                       "executable": "/usr/bin/python3.13", "debug_build": false},
            "main_thread": 100, "cwd": "/", "argv": ["x.py"], "backend": "monitoring", "tool_id": 0,
            "all_threads": true}}));
        Some(agent)
    }
}

fn pair() -> (UnixStream, UnixStream) {
    UnixStream::pair().expect("socketpair")
}

fn stopped(thread: u64) -> Value {
    json!({"kind": "event", "event": "stopped", "body": {"thread": thread, "thread_name": "MainThread",
        "reason": "entry", "frame": {"file": "/x.py", "line": 1, "function": "<module>", "module": "__main__"}}})
}

#[test]
fn handshake_requests_out_of_order_and_events() {
    let (ours, theirs) = pair();
    let agent = std::thread::spawn(move || {
        let mut a = FakeAgent::handshake(theirs, SECRET, "").expect("accepted");
        // An event right behind `ready`, possibly in the same read as the handshake's last frame.
        a.send(stopped(100));
        let r1 = a.recv();
        let r2 = a.recv();
        assert_eq!(r1["cmd"], "stack");
        assert_eq!(r2["cmd"], "evaluate");
        // Answer the second first.
        a.send(json!({"kind": "response", "id": r2["id"], "ok": true, "body": {"output": "", "result": "42", "type": "int"}}));
        a.send(json!({"kind": "response", "id": r1["id"], "ok": false, "error": {"code": "not_stopped", "message": "thread 5 is not stopped"}}));
        a.send(json!({"kind": "event", "event": "continued", "body": {"thread": 100}}));
        a.send(json!({"kind": "event", "event": "mystery", "body": {}}));
        a
    });
    let session = Arc::new(Session::connect(ours, SECRET, "").expect("connect"));
    assert_eq!(session.ready().pid, 7);
    let Some(SessionEvent::Event(Event::Stopped(s))) = session.next_event(Some(Duration::from_secs(5)))
    else {
        panic!("no stop")
    };
    assert_eq!(s.reason, StopReason::Entry);
    assert!(session.state().is_stopped(100));

    let s2 = Arc::clone(&session);
    let stack = std::thread::spawn(move || s2.request(&Stack { thread: 5, start: None, levels: None }));
    // Make sure the stack request is sent first: the fake agent reads two requests in order.
    while lock(&session.shared.pending).waiting.is_empty() {
        std::thread::yield_now();
    }
    let value = session
        .request(&Evaluate { thread: Some(100), expression: "6 * 7".into(), ..Default::default() })
        .expect("evaluate");
    assert_eq!(value.result.as_deref(), Some("42"));
    let err = stack.join().expect("join").expect_err("agent error");
    assert_eq!(
        err.agent_error().map(|e| e.code.clone()),
        Some(pymri_protocol::messages::ErrorCode::NotStopped)
    );
    assert_eq!(err.to_string(), "thread 5 is not stopped");

    let Some(SessionEvent::Event(Event::Continued(_))) = session.next_event(Some(Duration::from_secs(5)))
    else {
        panic!("no continued")
    };
    assert!(!session.state().is_stopped(100));
    let Some(SessionEvent::Event(Event::Unknown { event, .. })) =
        session.next_event(Some(Duration::from_secs(5)))
    else {
        panic!("unknown event not delivered")
    };
    assert_eq!(event, "mystery");

    let agent = agent.join().expect("agent");
    drop(agent);
    let Some(SessionEvent::Closed(_)) = session.next_event(Some(Duration::from_secs(5))) else {
        panic!("no close")
    };
    assert!(matches!(session.request(&Threads {}), Err(SessionError::Closed(_))));
}

#[test]
fn a_wrong_secret_is_refused() {
    let (ours, theirs) = pair();
    let agent = std::thread::spawn(move || FakeAgent::handshake(theirs, &"ff".repeat(32), "").is_none());
    let err = Session::connect(ours, SECRET, "").err().expect("must fail");
    assert!(matches!(err, SessionError::Handshake(HandshakeError::BadProof)), "{err:?}");
    drop(err);
    assert!(agent.join().expect("agent"), "the agent must not get an accept");
}

#[test]
fn the_attach_nonce_is_part_of_the_proof() {
    let (ours, theirs) = pair();
    let agent = std::thread::spawn(move || FakeAgent::handshake(theirs, SECRET, "beef").is_none());
    assert!(Session::connect(ours, SECRET, "cafe").is_err());
    assert!(agent.join().expect("agent"));
}

#[test]
fn an_agent_that_closes_during_the_handshake() {
    let (ours, theirs) = pair();
    drop(theirs);
    let err = Session::connect(ours, SECRET, "").err().expect("must fail");
    assert!(matches!(err, SessionError::ClosedDuringHandshake | SessionError::Io(_)), "{err:?}");
}

#[test]
fn timeouts_wakeups_and_cancellation() {
    let (ours, theirs) = pair();
    let agent = std::thread::spawn(move || {
        let mut a = FakeAgent::handshake(theirs, SECRET, "").expect("accepted");
        let _ignored = a.recv();
        let _ignored_too = a.recv();
        a
    });
    let session = Session::connect(ours, SECRET, "").expect("connect");
    let err =
        session.request_with_timeout(&Threads {}, Some(Duration::from_millis(50))).expect_err("timeout");
    assert!(matches!(err, SessionError::Timeout { cmd: "threads", .. }), "{err:?}");

    assert!(session.next_event(Some(Duration::from_millis(10))).is_none());
    let waker = session.waker();
    waker.wake();
    assert!(matches!(session.next_event(None), Some(SessionEvent::Woken)));

    let canceller = std::thread::spawn(move || {
        // Cancel once the request is registered.
        loop {
            let waiting = !lock(&waker.shared.pending).waiting.is_empty();
            if waiting {
                waker.cancel_requests();
                break;
            }
            std::thread::yield_now();
        }
    });
    let err = session.request_with_timeout(&Threads {}, None).expect_err("cancelled");
    assert!(matches!(err, SessionError::Interrupted { .. }), "{err:?}");
    canceller.join().expect("canceller");
    drop(agent.join().expect("agent"));
}

#[test]
fn a_malformed_frame_from_the_agent_ends_the_session() {
    let (ours, theirs) = pair();
    let agent = std::thread::spawn(move || {
        let mut a = FakeAgent::handshake(theirs, SECRET, "").expect("accepted");
        let frame = a.sealer.as_mut().expect("sealer").seal_payload(b"xyz").expect("frame");
        a.sock.write_all(&frame).expect("write");
        a
    });
    let session = Session::connect(ours, SECRET, "").expect("connect");
    match session.next_event(Some(Duration::from_secs(5))) {
        Some(SessionEvent::Closed(reason)) => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(session.is_closed());
    drop(agent.join().expect("agent"));
}

#[test]
fn a_frame_without_a_valid_tag_ends_the_session() {
    let (ours, theirs) = pair();
    let agent = std::thread::spawn(move || {
        let mut a = FakeAgent::handshake(theirs, SECRET, "").expect("accepted");
        // What a relay that saw the handshake but has no key can write: a well-formed frame.
        a.sock.write_all(&encode_frame(&stopped(100), MAX_FRAME).expect("frame")).expect("write");
        a.sock.write_all(&[0; 32]).expect("write");
        a
    });
    let session = Session::connect(ours, SECRET, "").expect("connect");
    match session.next_event(Some(Duration::from_secs(5))) {
        Some(SessionEvent::Closed(reason)) => assert!(reason.contains("integrity check"), "{reason}"),
        other => panic!("the forged event was delivered: {other:?}"),
    }
    assert!(session.is_closed());
    drop(agent.join().expect("agent"));
}

#[test]
fn an_agent_that_floods_events_ends_the_session() {
    let (ours, theirs) = pair();
    let agent = std::thread::spawn(move || {
        let mut a = FakeAgent::handshake(theirs, SECRET, "").expect("accepted");
        let event = json!({"kind": "event", "event": "continued", "body": {"thread": 100}});
        // One more than the queue holds, none of them read yet.
        for _ in 0..=MAX_QUEUED_EVENTS {
            let frame = a.sealer.as_mut().expect("sealer").seal(&event, MAX_FRAME).expect("frame");
            if a.sock.write_all(&frame).is_err() {
                break;
            }
        }
        // Nothing was consumed yet: pymri must close the connection on its own.
        let mut rest = Vec::new();
        a.sock.read_to_end(&mut rest).expect("read until pymri closes");
        a
    });
    let session = Session::connect(ours, SECRET, "").expect("connect");
    let agent = agent.join().expect("agent");
    let mut seen = 0;
    let reason = loop {
        match session.next_event(Some(Duration::from_secs(5))) {
            Some(SessionEvent::Event(_)) => seen += 1,
            Some(SessionEvent::Closed(reason)) => break reason,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(seen, MAX_QUEUED_EVENTS);
    assert!(reason.contains("more events than pymri can hold"), "{reason}");
    drop(agent);
}
