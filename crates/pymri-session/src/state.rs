//! What the controller knows about the program's threads: which are stopped and why, which one
//! (and which of its frames) the user is looking at, and whether the program exited.
//!
//! The state is updated from events in the order the consumer takes them out of the session
//! ([`crate::Session::next_event`]), never behind its back, so what a front end shows always
//! matches what it has been told.

use pymri_protocol::messages::{Event, Exited, Stopped};

/// The thread and frame the user looks at. Frame 0 is the innermost visible frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub thread: u64,
    pub frame: u32,
}

#[derive(Debug, Clone, Default)]
pub struct StopState {
    /// Stopped threads, in the order they stopped.
    stopped: Vec<Stopped>,
    selection: Option<Selection>,
    exited: Option<Exited>,
    detached: bool,
}

impl StopState {
    /// Takes an event into account.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Stopped(s) => {
                self.stopped.retain(|o| o.thread != s.thread);
                self.stopped.push((**s).clone());
                self.exited = None;
            }
            Event::Continued(c) => self.resumed(c.thread),
            Event::Thread(t) if t.reason == "exited" => self.resumed(t.thread),
            Event::Exited(e) => self.exited = Some(e.clone()),
            Event::Detached(_) => {
                self.stopped.clear();
                self.selection = None;
                self.detached = true;
            }
            _ => {}
        }
    }

    fn resumed(&mut self, thread: u64) {
        self.stopped.retain(|o| o.thread != thread);
        if self.selection.is_some_and(|s| s.thread == thread) {
            self.selection = None;
        }
    }

    /// Stopped threads, oldest stop first.
    pub fn stopped(&self) -> &[Stopped] {
        &self.stopped
    }

    pub fn get(&self, thread: u64) -> Option<&Stopped> {
        self.stopped.iter().find(|s| s.thread == thread)
    }

    pub fn is_stopped(&self, thread: u64) -> bool {
        self.get(thread).is_some()
    }

    pub fn selection(&self) -> Option<Selection> {
        self.selection
    }

    /// The selected thread's stop.
    pub fn selected_stop(&self) -> Option<&Stopped> {
        self.selection.and_then(|s| self.get(s.thread))
    }

    /// Selects a stopped thread (frame 0). Returns false if it is not stopped.
    pub fn select_thread(&mut self, thread: u64) -> bool {
        if !self.is_stopped(thread) {
            return false;
        }
        self.selection = Some(Selection { thread, frame: 0 });
        true
    }

    /// Selects a frame of the selected thread (the caller checks it exists).
    pub fn select_frame(&mut self, frame: u32) {
        if let Some(s) = &mut self.selection {
            s.frame = frame;
        }
    }

    pub fn clear_selection(&mut self) {
        self.selection = None;
    }

    /// The program's exit, in `run`, until it starts again.
    pub fn exited(&self) -> Option<&Exited> {
        self.exited.as_ref()
    }

    /// Set once the agent said it detached; nothing can be stopped any more.
    pub fn detached(&self) -> bool {
        self.detached
    }

    /// Forgets the exit (the program was restarted).
    pub fn restarted(&mut self) {
        self.exited = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pymri_protocol::messages::{Continued, Detached, StopReason, ThreadEvent};

    fn stop(thread: u64) -> Event {
        Event::Stopped(Box::new(Stopped {
            thread,
            thread_name: format!("t{thread}"),
            reason: StopReason::Breakpoint,
            frame: None,
            breakpoints: vec![1],
            return_value: None,
            return_value_short: None,
            exception: None,
            post_mortem: false,
            condition_error: None,
        }))
    }

    #[test]
    fn stops_selection_and_resumes() {
        let mut st = StopState::default();
        st.apply(&stop(1));
        st.apply(&stop(2));
        assert_eq!(st.stopped().iter().map(|s| s.thread).collect::<Vec<_>>(), vec![1, 2]);
        assert!(st.select_thread(2));
        assert!(!st.select_thread(3));
        st.select_frame(4);
        assert_eq!(st.selection(), Some(Selection { thread: 2, frame: 4 }));
        st.apply(&Event::Continued(Continued { thread: 2 }));
        assert_eq!(st.selection(), None);
        assert!(st.is_stopped(1) && !st.is_stopped(2));
        st.apply(&Event::Thread(ThreadEvent { reason: "exited".into(), thread: 1, name: "t1".into() }));
        assert!(st.stopped().is_empty());
        st.apply(&stop(5));
        st.apply(&Event::Detached(Detached { reason: "request".into() }));
        assert!(st.stopped().is_empty() && st.detached());
    }
}
