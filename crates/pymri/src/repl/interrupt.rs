//! Ctrl-C.
//!
//! At the prompt the terminal is in raw mode and Ctrl-C is a key: the line editor abandons the
//! line. Otherwise the terminal turns it into SIGINT for its foreground process group. pymri
//! catches it for the whole session (it must not die and leave the program stopped):
//!
//! - while the program runs, the REPL is woken and asks the agent to pause the main thread at
//!   its next line (pdb's "Program interrupted");
//! - while pymri waits for an answer (an evaluation that loops forever, say), the wait is
//!   abandoned and the prompt comes back.
//!
//! `pymri run` starts the program with SIGINT ignored, so the same keystroke does not raise
//! `KeyboardInterrupt` in it.

use pymri_session::Waker;
use signal_hook::consts::SIGINT;
use signal_hook::iterator::{Handle, Signals};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) struct Interrupts {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Interrupts {
    pub(crate) fn install(waker: Waker, running: Arc<AtomicBool>) -> std::io::Result<Interrupts> {
        let mut signals = Signals::new([SIGINT])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new().name("pymri-sigint".into()).spawn(move || {
            for _ in signals.forever() {
                if running.load(Ordering::SeqCst) {
                    waker.wake();
                } else {
                    waker.cancel_requests();
                }
            }
        })?;
        Ok(Interrupts { handle, thread: Some(thread) })
    }

    /// Stops listening (SIGINT keeps being caught: pymri's default from here on is to ignore it
    /// until it exits, which is what a debugger that is about to return wants).
    pub(crate) fn close(mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
