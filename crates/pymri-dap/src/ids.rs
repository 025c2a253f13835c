//! The numbers a DAP client sees, mapped to the agent's.
//!
//! - Threads: the agent names threads by `threading.get_ident()`, a pointer-sized value that
//!   JavaScript clients cannot hold exactly; clients get small integers from 1, in the order
//!   the threads were first seen, never reused within a session.
//! - Frames: the agent addresses a frame by thread and index, valid while the thread stays
//!   stopped. A client's `frameId` must be unique across threads, so each frame shown gets a
//!   fresh number, forgotten when its thread resumes.
//! - Sources without a file (`<string>`, `<frozen ...>`): a `sourceReference` per name, so the
//!   client can ask for their text.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct ThreadIds {
    by_ident: HashMap<u64, i64>,
    by_id: HashMap<i64, u64>,
    last: i64,
}

impl ThreadIds {
    /// The client's id for an agent thread, assigned on first sight.
    pub fn id(&mut self, ident: u64) -> i64 {
        if let Some(id) = self.by_ident.get(&ident) {
            return *id;
        }
        self.last = self.last.saturating_add(1);
        self.by_ident.insert(ident, self.last);
        self.by_id.insert(self.last, ident);
        self.last
    }

    /// The agent's thread for a client's id.
    pub fn ident(&self, id: i64) -> Option<u64> {
        self.by_id.get(&id).copied()
    }
}

#[derive(Debug, Default)]
pub struct FrameIds {
    frames: HashMap<i64, (u64, u32)>,
    last: i64,
}

impl FrameIds {
    /// A new id for frame `index` of thread `ident`.
    pub fn add(&mut self, ident: u64, index: u32) -> i64 {
        self.last = self.last.saturating_add(1);
        self.frames.insert(self.last, (ident, index));
        self.last
    }

    pub fn get(&self, id: i64) -> Option<(u64, u32)> {
        self.frames.get(&id).copied()
    }

    /// Forgets the frames of a thread that resumed.
    pub fn resumed(&mut self, ident: u64) {
        self.frames.retain(|_, (thread, _)| *thread != ident);
    }
}

#[derive(Debug, Default)]
pub struct SourceRefs {
    by_name: HashMap<String, i64>,
    by_ref: HashMap<i64, String>,
    last: i64,
}

impl SourceRefs {
    pub fn reference(&mut self, name: &str) -> i64 {
        if let Some(r) = self.by_name.get(name) {
            return *r;
        }
        self.last = self.last.saturating_add(1);
        self.by_name.insert(name.to_string(), self.last);
        self.by_ref.insert(self.last, name.to_string());
        self.last
    }

    pub fn name(&self, reference: i64) -> Option<&str> {
        self.by_ref.get(&reference).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids_are_small_stable_and_u64_safe() {
        let mut ids = ThreadIds::default();
        assert_eq!(ids.id(u64::MAX), 1);
        assert_eq!(ids.id(140_482_653_298_752), 2);
        assert_eq!(ids.id(u64::MAX), 1);
        assert_eq!(ids.ident(2), Some(140_482_653_298_752));
        assert_eq!(ids.ident(3), None);
    }

    #[test]
    fn frames_are_forgotten_when_their_thread_resumes() {
        let mut frames = FrameIds::default();
        let a = frames.add(7, 0);
        let b = frames.add(8, 1);
        assert_ne!(a, b);
        frames.resumed(7);
        assert_eq!(frames.get(a), None);
        assert_eq!(frames.get(b), Some((8, 1)));
    }
}
