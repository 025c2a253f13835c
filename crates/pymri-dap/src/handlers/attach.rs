//! `attach`: debug a program that is already running, either by injecting the agent into it
//! (`processId`, through `pymri-inject`, as `pymri attach` does) or by connecting to an agent
//! that listens (`connect: {host, port}` with its secret in `secretFile`).
//!
//! The agent stops the thread it starts in; that stop is held back until `configurationDone`,
//! then the thread goes on unless `stopOnEntry` is set, so breakpoints are in place before the
//! program runs further.

use super::Handler;
use crate::adapter::Adapter;
use crate::debuggee::{Debuggee, Origin};
use crate::error::{with_causes, DapError};
use crate::paths::PathMap;
use crate::types::{AttachArguments, Connect, Empty, Event, NumberOrString};
use pymri_cpython::LiveProcess;
use pymri_inject::attach::{self, Options};
use pymri_session::Session;
use serde_json::Value;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

pub(crate) struct Attach;

/// How long a target may take to reach a safe point, unless `timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a listening agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Handler for Attach {
    const COMMAND: &'static str = "attach";
    type Arguments = AttachArguments;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, args: AttachArguments) -> Result<Empty, DapError> {
        if adapter.debuggee.is_some() {
            return Err(DapError::AlreadyDebugging);
        }
        let mut paths = PathMap::new(&args.path_mappings);
        let (session, origin) = match (&args.process_id, &args.connect) {
            (Some(pid), None) => {
                let pid = parse_pid(pid)?;
                let timeout = args
                    .timeout
                    .filter(|t| t.is_finite() && *t > 0.0)
                    .map_or(DEFAULT_TIMEOUT, |t| Duration::from_secs_f64(t.min(3600.0)));
                inject(pid, timeout, &mut paths)?
            }
            (None, Some(connect)) => (connect_to(connect, &args)?, Origin::Connect),
            (Some(_), Some(_)) => {
                return Err(DapError::User("give either \"processId\" or \"connect\", not both".into()))
            }
            (None, None) => {
                return Err(DapError::User(
                    "\"attach\" needs \"processId\" (a running Python process) or \"connect\" ({host, port} of a listening pymri agent)".into(),
                ))
            }
        };
        let epoch = adapter.next_epoch();
        adapter.paths = paths;
        adapter.stop_on_entry = args.stop_on_entry;
        adapter.debuggee = Some(Debuggee::new(session, origin, epoch, &adapter.tx));
        adapter.event(Event::new("initialized", Value::Null));
        Ok(Empty {})
    }
}

fn parse_pid(pid: &NumberOrString) -> Result<i32, DapError> {
    let n = match pid {
        NumberOrString::Number(n) => Some(*n),
        NumberOrString::String(s) => s.trim().parse::<i64>().ok(),
    };
    n.and_then(|n| i32::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| DapError::User(format!("\"processId\" must be a process id, not {pid:?}")))
}

fn inject(pid: i32, timeout: Duration, paths: &mut PathMap) -> Result<(Session, Origin), DapError> {
    let user = |e: &(dyn std::error::Error + 'static)| DapError::User(with_causes(e));
    let live = LiveProcess::open(pid).map_err(|e| user(&e))?;
    let located = live.locate().map_err(|e| user(&e))?;
    let pending = attach::start(&live, &located, &Options { thread: None, timeout }).map_err(|e| user(&e))?;
    let stream = pending
        .stream
        .try_clone()
        .map_err(|e| DapError::User(format!("duplicating the agent's socket: {e}")))?;
    let session = Session::connect(stream, &pending.secret, &pending.nonce).map_err(|e| {
        DapError::User(format!(
            "the agent that connected did not prove it was started by this attach: {}",
            with_causes(&e)
        ))
    })?;
    pending.checked_in(&live);
    if let Some(root) = &live.root {
        paths.push(root, Path::new("/"));
    }
    Ok((session, Origin::Attach { pid, _pending: Box::new(pending) }))
}

fn connect_to(connect: &Connect, args: &AttachArguments) -> Result<Session, DapError> {
    let host = connect.host.as_deref().filter(|h| !h.is_empty()).unwrap_or("127.0.0.1");
    let Some(secret_file) = args.secret_file.as_deref() else {
        return Err(DapError::User(
            "\"connect\" needs \"secretFile\": the file holding the agent's secret".into(),
        ));
    };
    let secret = std::fs::read_to_string(secret_file)
        .map_err(|e| DapError::User(format!("reading the secret from {secret_file}: {e}")))?;
    let addrs = (host, connect.port)
        .to_socket_addrs()
        .map_err(|e| DapError::User(format!("{host}:{}: {e}", connect.port)))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Session::connect(stream, secret.trim(), args.nonce.as_deref().unwrap_or(""))
                    .map_err(|e| DapError::User(format!("the agent at {addr}: {}", with_causes(&e))));
            }
            Err(e) => last = Some(format!("connecting to {addr}: {e}")),
        }
    }
    Err(DapError::User(last.unwrap_or_else(|| format!("{host}: no address to connect to"))))
}
