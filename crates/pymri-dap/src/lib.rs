//! A Debug Adapter Protocol server over pymri's agent: VS Code, Neovim (nvim-dap), Emacs
//! (dape), Helix and other DAP clients debug CPython 3.9-3.15 programs through it.
//!
//! # What it does
//!
//! The adapter speaks DAP to one client and pymri's agent protocol (`docs/protocol.md`) to the
//! program, through a `pymri_session::Session`:
//!
//! - `launch` starts a script or module with the agent inside it (`pymri-launch`); the
//!   program's stdout and stderr become `output` events. `attach` injects the agent into a
//!   running process (`processId`, through `pymri-inject`) or connects to an agent that
//!   listens (`connect` + `secretFile`).
//! - Breakpoints (with conditions, hit conditions, log messages), function breakpoints, the
//!   `raised`/`uncaught` exception filters, stepping, pausing, stacks, scopes, expandable
//!   variables, evaluation (console, hovers, watches), assignment and console completions map
//!   one-to-one onto agent requests; agent events become DAP events.
//!
//! Stops are per thread, as in the agent: a `stopped` event says `allThreadsStopped: false`
//! and the other threads keep running. Thread ids are small integers (the agent's are
//! pointer-sized idents a JavaScript client cannot hold), frame ids are fresh per stop.
//!
//! # Shape
//!
//! - [`codec`]: Content-Length framing, sans-IO, total (garbage gives errors, never panics).
//! - [`types`]: the DAP messages used, written from the specification.
//! - `handlers/`: one file per request, each a `Handler` from typed arguments to
//!   a response body.
//! - `adapter`: the state and the single loop every input goes through (client requests,
//!   agent events, program output, the program's end), so responses and events are ordered.
//! - [`server`]: stdio and loopback-TCP transports; the TCP listener serves only the users
//!   it is given, each connection's owner found by [`peer`].
//! - [`escape`]: text from the program or agent made safe for a terminal before a client
//!   shows it.
//!
//! The DAP path never panics: malformed input is an error response or, when the stream
//! cannot be resynchronised, the end of the connection. The lints below hold the code to it.
//!
//! # Who may use it
//!
//! A client can run code as the adapter's user (`launch` takes any interpreter command) and
//! attach to any process that user may trace, so on TCP only the adapter's own user, root, and
//! the users the caller adds are served ([`Server::allow_user`]). A client must begin with
//! `initialize` and speak the base protocol from its first byte: a header line that is not an
//! RFC 9110 field (an HTTP request line from a web page) ends the connection.
//!
//! # Example
//!
//! ```no_run
//! // `pymri dap`: the protocol on stdin and stdout, diagnostics elsewhere.
//! pymri_dap::serve(std::io::stdin(), std::io::stdout(), &pymri_dap::Options::default());
//! ```
//!
//! Non-goals for now: `restart`, `runInTerminal` (output is shown in the debug console),
//! data breakpoints, `goto`, several clients at once, non-loopback listening (a secured
//! transport is the place for that).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

mod adapter;
pub mod codec;
mod debuggee;
mod error;
pub mod escape;
mod handlers;
mod ids;
mod paths;
pub mod peer;
pub mod server;
pub mod types;

pub use adapter::Log;
pub use server::{serve, Options, Server};
