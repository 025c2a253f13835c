//! `pymri web`: the debugger in a browser page, served on a loopback address.
//!
//! The caller (the `pymri` binary) produces an authenticated [`pymri_session::Session`] (by
//! attaching, launching or connecting), binds a [`Server`], shows its [`Server::url`] (which
//! carries the session's token), and hands both to a [`Debugger`] with a [`Console`]: the
//! command layer of pdb's commands, which the binary implements with its REPL writing into a
//! buffer. [`Debugger::run`] serves until the session ends and says how it ended.
//!
//! - **Server** ([`server`]): a thread that accepts, one thread per connection, our own
//!   HTTP/1.1 request parsing ([`http`], on `httparse`, with fixed limits; every answer closes
//!   the connection), `tungstenite` for the one WebSocket of live updates. No async runtime,
//!   no framework: the page makes a handful of requests per user action.
//! - **Security** ([`security`]): loopback addresses only; `Host` must name the server and
//!   `Origin`, when sent, must be the server itself (DNS rebinding, cross-site WebSocket
//!   hijacking); a random token on every request, compared in constant time. Failures are 403.
//! - **Page** (`src/assets/`): static HTML, CSS and JavaScript compiled into the binary, no
//!   external resource: source with breakpoints in a gutter, stack, threads, variables,
//!   console, and buttons for continue, next, step, return, pause and detach.
//! - **Bridge** ([`Debugger`]): the page's JSON requests as agent requests, the session's
//!   events as WebSocket messages; the selection (thread and frame) shared by every page and
//!   the console.
//!
//! Non-goals: TLS and non-loopback addresses (refused with an error that says a secured
//! transport is needed), several sessions per server, serving files of the program beyond what
//! the agent's `source` request returns.

mod bridge;
pub mod http;
pub mod security;
pub mod server;

pub use bridge::{Console, ConsoleOutput, Debugger, Mode, Outcome, WebOptions};
pub use security::{check_listen, parse_listen, ListenError};
pub use server::{Handler, Hub, Running, ServeError, Server};
