//! `attach`: debug a program that is already running, either by injecting the agent into it
//! (`processId`, through `pymri-inject`, as `pymri attach` does) or by connecting to an agent
//! that listens (`connect: {host, port}`, debugpy's top-level `host`/`port`, or pymri's
//! `address` for Unix sockets and FIFOs; `tls: true`; the secret in `secretFile`), through
//! `pymri_transport`'s client, as `pymri connect` does.
//!
//! The agent stops the thread it starts in; that stop is held back until `configurationDone`,
//! then the thread goes on unless `stopOnEntry` is set, so breakpoints are in place before the
//! program runs further. An agent that waits for its debugger before running the program
//! (`python -m pymri_agent --wait`) is started at `configurationDone`, as a launch is.

use super::Handler;
use crate::adapter::Adapter;
use crate::debuggee::Origin;
use crate::error::{with_causes, DapError};
use crate::paths::PathMap;
use crate::types::{AttachArguments, Empty, NumberOrString};
use pymri_cpython::LiveProcess;
use pymri_inject::attach::{self, Options};
use pymri_session::Session;
use pymri_transport::{secret, Address, AddressError, Connector};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) struct Attach;

/// How long a target may take to reach a safe point, unless `timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Handler for Attach {
    const COMMAND: &'static str = "attach";
    type Arguments = AttachArguments;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, args: AttachArguments) -> Result<Empty, DapError> {
        if adapter.debuggee.is_some() {
            return Err(DapError::AlreadyDebugging);
        }
        let mut paths = PathMap::new(&args.path_mappings);
        let (session, origin) = match (&args.process_id, connect_address(&args)?) {
            (Some(pid), None) => {
                let pid = parse_pid(pid)?;
                let timeout = args
                    .timeout
                    .filter(|t| t.is_finite() && *t > 0.0)
                    .map_or(DEFAULT_TIMEOUT, |t| Duration::from_secs_f64(t.min(3600.0)));
                inject(pid, timeout, &mut paths)?
            }
            (None, Some(address)) => (connect_to(&address, &args)?, Origin::Connect),
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
        adapter.begin(epoch, session, origin, paths, args.stop_on_entry);
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
    let pending = attach::start(&live, &located, &Options { thread: None, timeout, stop: true })
        .map_err(|e| user(&e))?;
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

/// The listening agent's address: `address`, else `connect: {host, port}` (or debugpy's
/// top-level `host` and `port`), `tls:` with `tls: true`. `None` when none was given.
fn connect_address(args: &AttachArguments) -> Result<Option<Address>, DapError> {
    let user = |e: AddressError| DapError::User(e.to_string());
    if let Some(text) = args.address.as_deref() {
        let address = Address::parse(text).map_err(user)?;
        return Ok(Some(match address {
            Address::Tcp { host, port } if args.tls => Address::Tls { host, port },
            other => other,
        }));
    }
    let (host, port) = match (&args.connect, args.port) {
        (Some(connect), _) => (connect.host.as_deref(), connect.port),
        (None, Some(port)) => (args.host.as_deref(), port),
        (None, None) => return Ok(None),
    };
    let host = host.filter(|h| !h.is_empty()).unwrap_or("127.0.0.1");
    // An IPv6 literal comes bare from editors; the address syntax brackets it.
    let host =
        if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    let scheme = if args.tls { "tls" } else { "tcp" };
    Address::parse(&format!("{scheme}:{host}:{port}")).map(Some).map_err(user)
}

fn connect_to(address: &Address, args: &AttachArguments) -> Result<Session, DapError> {
    let file = match args.secret_file.as_deref().filter(|f| !f.is_empty()) {
        Some(file) => PathBuf::from(file),
        None => match secret::file_from_env() {
            Some(file) => file,
            None => {
                return Err(DapError::User(format!(
                    "connecting to {address} needs \"secretFile\": the file holding the agent's secret \
                     (an agent that listens on a local address without one printed the path of the secret it made)"
                )))
            }
        },
    };
    let secret = secret::read_file(&file).map_err(|e| DapError::User(with_causes(&e)))?;
    let mut connector = Connector::new(&secret);
    let nonce = args.nonce.clone().unwrap_or_default();
    connector.attach_nonce = &nonce;
    connector.connect(address).map_err(|e| DapError::User(with_causes(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn address(args: Value) -> Result<Option<String>, DapError> {
        let args: AttachArguments = serde_json::from_value(args).expect("arguments");
        connect_address(&args).map(|a| a.map(|a| a.to_string()))
    }

    #[test]
    fn every_spelling_of_where_the_agent_listens() {
        let ok = |args: Value| address(args).expect("address").expect("some address");
        assert_eq!(ok(json!({"connect": {"host": "10.0.0.5", "port": 5678}})), "tcp:10.0.0.5:5678");
        assert_eq!(ok(json!({"connect": {"port": 5678}, "tls": true})), "tls:127.0.0.1:5678");
        assert_eq!(ok(json!({"connect": {"host": "::1", "port": 1}})), "tcp:[::1]:1");
        assert_eq!(ok(json!({"host": "build-host", "port": 5678})), "tcp:build-host:5678");
        assert_eq!(ok(json!({"address": "unix:/tmp/app.sock"})), "unix:/tmp/app.sock");
        assert_eq!(ok(json!({"address": "tcp:h:1", "tls": true})), "tls:h:1");
        assert_eq!(address(json!({"processId": 4242})).expect("no address"), None);
        assert!(address(json!({"address": "h:1"})).is_err(), "a scheme is needed");
        assert!(address(json!({"connect": {"host": "a b", "port": 1}})).is_err());
    }

    #[test]
    fn connecting_needs_a_private_secret_file() {
        let args: AttachArguments =
            serde_json::from_value(json!({"connect": {"port": 1}, "secretFile": "/nonexistent/secret"}))
                .expect("arguments");
        let address = connect_address(&args).expect("address").expect("some");
        let err = connect_to(&address, &args).err().expect("no secret file");
        assert!(err.to_string().contains("/nonexistent/secret"), "{err}");
    }
}
