//! The listening side's defence against guessing and flooding (`docs/transports.md` §5), as a
//! state machine without clocks or sockets: the caller passes `now`, so tests step time.
//!
//! Failed handshakes are counted per peer (the source IP for TCP). After
//! [`MAX_FAILURES`] within [`FAILURE_WINDOW`], a remote peer's connections are closed at once,
//! unread, for [`LOCKOUT`]. A shared peer (loopback, which is every local user at once) is never
//! locked out, since any local user could then shut all the others out: its handshakes are
//! delayed instead ([`Lockout::delayed_until`]), from [`FIRST_DELAY`] doubling with each further
//! failure up to [`MAX_DELAY`]. Memory is bounded: at most [`MAX_PEERS`] peers are remembered,
//! the least recently seen unlocked one forgotten first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Failures from one peer that lock it out...
pub const MAX_FAILURES: usize = 5;
/// ...when they happen within this window...
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// ...for this long.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// The delay of a shared peer's handshakes after [`MAX_FAILURES`] failures, doubling with each
/// further failure within [`FAILURE_WINDOW`]...
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// ...up to this, well within [`HANDSHAKE_TIMEOUT`], so that the right peer always gets in.
pub const MAX_DELAY: Duration = Duration::from_secs(4);
/// Failures of a shared peer kept: enough for the delay to reach [`MAX_DELAY`].
const SHARED_FAILURES_KEPT: usize = MAX_FAILURES + 8;
/// Handshakes in progress at once; connections beyond are closed at once.
pub const MAX_HANDSHAKES: usize = 8;
/// How long a whole handshake (TLS included) may take: the session's (and the agent's) limit.
pub const HANDSHAKE_TIMEOUT: Duration = pymri_session::HANDSHAKE_TIMEOUT;
/// Peers remembered at once: enough for any honest use, small enough (a few hundred KiB) that
/// connections from many addresses cannot grow the table without bound.
pub const MAX_PEERS: usize = 4096;

#[derive(Debug)]
struct Record {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

/// Failure counts and lockouts, per peer `P`.
#[derive(Debug)]
pub struct Lockout<P> {
    peers: HashMap<P, Record>,
}

impl<P> Default for Lockout<P> {
    fn default() -> Lockout<P> {
        Lockout { peers: HashMap::new() }
    }
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; the peer may try again.
    Counted,
    /// This failure locked the peer out until the given instant.
    LockedOut(Instant),
}

impl<P: Hash + Eq + Clone> Lockout<P> {
    pub fn new() -> Lockout<P> {
        Lockout::default()
    }

    /// Whether connections from `peer` are to be closed unread at `now`.
    pub fn is_locked(&mut self, peer: &P, now: Instant) -> bool {
        let Some(record) = self.peers.get_mut(peer) else { return false };
        match record.locked_until {
            Some(until) if now < until => true,
            Some(_) => {
                // The lockout is over: a clean slate.
                self.peers.remove(peer);
                false
            }
            None => false,
        }
    }

    /// When a handshake of shared `peer` arriving at `now` may start; `None`: at once.
    pub fn delayed_until(&self, peer: &P, now: Instant) -> Option<Instant> {
        let record = self.peers.get(peer)?;
        let recent: Vec<Instant> = record
            .failures
            .iter()
            .copied()
            .filter(|&t| now.saturating_duration_since(t) < FAILURE_WINDOW)
            .collect();
        let beyond = recent.len().checked_sub(MAX_FAILURES)?;
        let delay = FIRST_DELAY.saturating_mul(1 << beyond.min(16)).min(MAX_DELAY);
        let until = *recent.last()? + delay;
        (now < until).then_some(until)
    }

    /// Counts a failed handshake of shared `peer` (delayed, never locked out) at `now`.
    pub fn record_shared_failure(&mut self, peer: &P, now: Instant) {
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_PEERS {
            self.forget_one(now);
        }
        let record = self.peers.entry(peer.clone()).or_insert_with(|| Record {
            failures: VecDeque::with_capacity(SHARED_FAILURES_KEPT),
            locked_until: None,
            last_seen: now,
        });
        record.last_seen = now;
        while record.failures.len() >= SHARED_FAILURES_KEPT
            || record.failures.front().is_some_and(|&t| now.saturating_duration_since(t) >= FAILURE_WINDOW)
        {
            record.failures.pop_front();
        }
        record.failures.push_back(now);
    }

    /// Counts a failed handshake of `peer` at `now`.
    pub fn record_failure(&mut self, peer: &P, now: Instant) -> Verdict {
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_PEERS {
            self.forget_one(now);
        }
        let record = self.peers.entry(peer.clone()).or_insert_with(|| Record {
            failures: VecDeque::with_capacity(MAX_FAILURES),
            locked_until: None,
            last_seen: now,
        });
        record.last_seen = now;
        if let Some(until) = record.locked_until {
            if now < until {
                return Verdict::LockedOut(until);
            }
            record.locked_until = None;
            record.failures.clear();
        }
        while record.failures.front().is_some_and(|&t| now.saturating_duration_since(t) >= FAILURE_WINDOW) {
            record.failures.pop_front();
        }
        record.failures.push_back(now);
        if record.failures.len() >= MAX_FAILURES {
            let until = now + LOCKOUT;
            record.locked_until = Some(until);
            record.failures.clear();
            Verdict::LockedOut(until)
        } else {
            Verdict::Counted
        }
    }

    /// Peers currently remembered (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Makes room: drops whatever no longer matters, else the least recently seen peer that is
    /// not locked out, else the least recently seen one.
    fn forget_one(&mut self, now: Instant) {
        self.peers.retain(|_, r| match r.locked_until {
            Some(until) => now < until,
            None => r.failures.back().is_some_and(|&t| now.saturating_duration_since(t) < FAILURE_WINDOW),
        });
        if self.peers.len() < MAX_PEERS {
            return;
        }
        let oldest = |unlocked_only: bool| {
            self.peers
                .iter()
                .filter(|(_, r)| !unlocked_only || r.locked_until.is_none())
                .min_by_key(|(_, r)| r.last_seen)
                .map(|(p, _)| p.clone())
        };
        if let Some(peer) = oldest(true).or_else(|| oldest(false)) {
            self.peers.remove(&peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn five_failures_within_a_minute_lock_a_peer_out_for_a_minute() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new();
        let peer = ip(1);
        for i in 0..4 {
            assert_eq!(lockout.record_failure(&peer, t0 + i * S), Verdict::Counted);
            assert!(!lockout.is_locked(&peer, t0 + i * S));
        }
        let fifth = t0 + 59 * S;
        assert_eq!(lockout.record_failure(&peer, fifth), Verdict::LockedOut(fifth + LOCKOUT));
        assert!(lockout.is_locked(&peer, fifth));
        assert!(lockout.is_locked(&peer, fifth + 59 * S));
        // Other peers are not affected.
        assert!(!lockout.is_locked(&ip(2), fifth));
        // After the lockout, a clean slate: four more failures do not lock again.
        let after = fifth + LOCKOUT;
        assert!(!lockout.is_locked(&peer, after));
        for i in 0..4 {
            assert_eq!(lockout.record_failure(&peer, after + i * S), Verdict::Counted);
        }
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new();
        let peer = ip(1);
        // One failure every 16 s: at most 4 within any 60 s.
        for i in 0..20 {
            assert_eq!(lockout.record_failure(&peer, t0 + i * 16 * S), Verdict::Counted, "failure {i}");
        }
        // One more right after the last: 5 within the window.
        let t = t0 + 19 * 16 * S + S;
        assert_eq!(lockout.record_failure(&peer, t), Verdict::LockedOut(t + LOCKOUT));
    }

    #[test]
    fn failures_while_locked_out_do_not_extend_it() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new();
        let peer = ip(7);
        for _ in 0..MAX_FAILURES {
            lockout.record_failure(&peer, t0);
        }
        assert_eq!(lockout.record_failure(&peer, t0 + 30 * S), Verdict::LockedOut(t0 + LOCKOUT));
        assert!(!lockout.is_locked(&peer, t0 + LOCKOUT));
    }

    #[test]
    fn a_shared_peer_is_delayed_more_and_more_never_locked_out() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for i in 0..4 {
            lockout.record_shared_failure(&local, t0 + i * S);
        }
        assert_eq!(lockout.delayed_until(&local, t0 + 4 * S), None);
        let ms = Duration::from_millis;
        let mut delays = Vec::new();
        for i in 0..8 {
            let now = t0 + (4 + 5 * i) * S;
            lockout.record_shared_failure(&local, now);
            assert!(!lockout.is_locked(&local, now));
            delays.push(lockout.delayed_until(&local, now).expect("delayed") - now);
        }
        let max = MAX_DELAY;
        assert_eq!(delays, [ms(250), ms(500), ms(1000), ms(2000), max, max, max, max]);
        // From the last failure; a minute without any, and none is left.
        let last = t0 + 39 * S;
        assert_eq!(lockout.delayed_until(&local, last + MAX_DELAY), None);
        assert_eq!(lockout.delayed_until(&local, last + FAILURE_WINDOW), None);
    }

    #[test]
    fn the_table_is_bounded_and_keeps_locked_peers() {
        let t0 = Instant::now();
        let mut lockout = Lockout::new();
        let attacker = ip(0);
        for _ in 0..MAX_FAILURES {
            lockout.record_failure(&attacker, t0);
        }
        for n in 1..(MAX_PEERS as u32 * 2) {
            lockout.record_failure(&ip(n), t0 + S);
            assert!(lockout.len() <= MAX_PEERS);
        }
        assert!(lockout.is_locked(&attacker, t0 + 2 * S), "a flood of other addresses does not unlock it");
        // Entries whose failures have all expired are dropped first.
        let later = t0 + 10 * FAILURE_WINDOW;
        lockout.record_failure(&ip(999_999), later);
        assert_eq!(lockout.len(), 1);
    }
}
