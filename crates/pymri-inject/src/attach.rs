//! Starting the debugger agent in a running process: stage it, listen, inject the bootstrap,
//! wait for the agent to connect back.
//!
//! The agent connects to a Unix socket inside the staging directory, so a target in a chroot,
//! a container or another network namespace reaches it; the connection is returned
//! unauthenticated, and the caller runs the protocol's handshake with [`Pending::secret`] and
//! [`Pending::nonce`] (the nonce ties the connection to this very injection). If the target
//! takes no request in time, the request is withdrawn and the error says where the thread is
//! stuck.

use crate::stage::{owner, persistent_agent, Root, Stage};
use crate::{check_allowed, method, pending, pep768, InjectError, Method};
use pymri_cpython::{LiveProcess, Located, SnapshotOptions};
use pymri_protocol::handshake::random_hex;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

pub struct Options {
    /// `threading.get_ident()` of the thread to stop; `None` for the main thread.
    pub thread: Option<u64>,
    /// How long the target may take to reach a safe point and connect.
    pub timeout: Duration,
    /// Whether the agent stops that thread once connected; `false` leaves the program running
    /// (the agent serves requests from its own thread).
    pub stop: bool,
}

/// An agent that has connected back, not yet authenticated.
pub struct Pending {
    pub stream: UnixStream,
    pub secret: String,
    pub nonce: String,
    request: Request,
    stage: Stage,
}

enum Request {
    Pep768(pep768::Request),
    Queue(Box<pending::Request>),
}

impl Pending {
    /// Once the handshake succeeded: removes the bootstrap (it holds the secret) and tidies
    /// the queue slots that carried its one-line loader.
    pub fn checked_in(&self, live: &LiveProcess) {
        let _ = self.stage.remove(BOOTSTRAP);
        if let Request::Queue(request) = &self.request {
            let _ = request.tidy(&live.mem);
        }
    }

    /// The staging directory, kept until the session ends: the agent may import more of
    /// itself later.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }
}

const BOOTSTRAP: &str = "bootstrap.py";
const SOCKET: &str = "sock";
/// How often a request not yet taken is re-armed, for the lost-update window of 3.9-3.12.
const REARM_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Inject(#[from] InjectError),
    /// The chosen thread never reached a safe point.
    #[error("{0}")]
    Timeout(String),
    /// The target ran the bootstrap but no agent connected.
    #[error("{0}")]
    NoAgent(String),
}

/// Injects the agent into `live` and waits for it to connect.
pub fn start(live: &LiveProcess, located: &Located, options: &Options) -> Result<Pending, AttachError> {
    let pid = live.pid;
    check_allowed(pid, located, &live.mem)?;
    let how = method(located)?;
    let (uid, gid) = owner(pid).map_err(InjectError::Stage)?;
    let root = Root::of_process(pid).map_err(InjectError::Stage)?;
    let stage = Stage::create(&root, uid, gid).map_err(InjectError::Stage)?;
    let files = pymri_agent_files::FILES;
    let package_dir = match persistent_agent(&root, uid, gid, files, pymri_agent_files::PACKAGE) {
        Some(dir) => dir,
        None => {
            for (name, text) in files {
                stage
                    .write(&format!("{}/{name}", pymri_agent_files::PACKAGE), text.as_bytes())
                    .map_err(InjectError::Stage)?;
            }
            stage.inside().to_string()
        }
    };
    let (socket_inside, listener) = stage.listen(SOCKET).map_err(InjectError::Stage)?;
    let secret = random_hex(32).map_err(InjectError::Stage)?;
    let nonce = random_hex(16).map_err(InjectError::Stage)?;

    // The pending-call path runs the bootstrap through PyRun_SimpleString's own frame, one
    // more frame between the bootstrap and the code it interrupted.
    let (stop_thread, skip_frames) = match how {
        Method::Pep768 => (None, 0),
        Method::PendingCall => (options.thread, 1),
    };
    let bootstrap = bootstrap_source(
        located,
        &package_dir,
        &stage,
        &socket_inside,
        &secret,
        &nonce,
        stop_thread,
        skip_frames,
        options.stop,
    );
    let script = stage.write(BOOTSTRAP, bootstrap.as_bytes()).map_err(InjectError::Stage)?;
    stage.hand_over().map_err(InjectError::Stage)?;

    let request = match how {
        Method::Pep768 => Request::Pep768(pep768::arm(&live.mem, located, &script, options.thread)?),
        Method::PendingCall => {
            let func = live
                .with_files(|files| located.symbol(files, "PyRun_SimpleString"))
                .map_err(InjectError::Python)?
                .ok_or_else(|| {
                    InjectError::Unsupported("the interpreter does not export PyRun_SimpleString".into())
                })?;
            let loader = format!(
                "try:exec(open({script:?}).read(),{{'__name__':'__pymri__'}})\nexcept BaseException:pass"
            );
            Request::Queue(Box::new(pending::arm(&live.mem, located, &loader, func)?))
        }
    };

    match wait_for_agent(&listener, live, &request, options.timeout) {
        Ok(stream) => Ok(Pending { stream, secret, nonce, request, stage }),
        Err(Waited::NeverTaken) => {
            let withdrawn = match &request {
                Request::Pep768(r) => r.withdraw(&live.mem),
                Request::Queue(r) => r.withdraw(&live.mem),
            };
            let note = match withdrawn {
                Ok(true) | Err(_) => "the request was withdrawn; nothing is left in the process",
                Ok(false) => "the request was taken at the last moment; the agent will give up on its own",
            };
            Err(AttachError::Timeout(format!(
                "{} did not reach a safe point within {:?}: {}\n{note}\nhint: pymri attaches when that thread next runs Python code; try again, or use --timeout",
                thread_name(options.thread),
                options.timeout,
                where_stuck(live, located, options.thread)
            )))
        }
        Err(Waited::NoConnection) => Err(AttachError::NoAgent(
            "the target ran pymri's bootstrap, but its agent did not connect back\nhint: an audit hook or an import error in the target may have stopped it; see the target's stderr".into(),
        )),
        Err(Waited::Failed(e)) => Err(AttachError::Inject(e)),
    }
}

enum Waited {
    NeverTaken,
    NoConnection,
    Failed(InjectError),
}

fn wait_for_agent(
    listener: &UnixListener,
    live: &LiveProcess,
    request: &Request,
    timeout: Duration,
) -> Result<UnixStream, Waited> {
    let start = Instant::now();
    let mut last_arm = start;
    let mut taken_at: Option<Instant> = None;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= timeout && taken_at.is_none() {
            return Err(Waited::NeverTaken);
        }
        // An agent that took the request gets a little longer to import itself and connect.
        if taken_at.is_some_and(|t| t.elapsed() > timeout.max(Duration::from_secs(5))) {
            return Err(Waited::NoConnection);
        }
        if poll_readable(listener, Duration::from_millis(50)) {
            return listener
                .accept()
                .map(|(stream, _)| stream)
                .map_err(|e| Waited::Failed(InjectError::Stage(e)));
        }
        if taken_at.is_none() {
            let taken = match request {
                Request::Pep768(r) => r.taken(&live.mem),
                Request::Queue(r) => r.taken(&live.mem),
            }
            .map_err(Waited::Failed)?;
            if taken {
                taken_at = Some(Instant::now());
            } else if last_arm.elapsed() >= REARM_EVERY {
                last_arm = Instant::now();
                match request {
                    Request::Pep768(r) => r.rearm(&live.mem),
                    Request::Queue(r) => r.rearm(&live.mem),
                }
                .map_err(Waited::Failed)?;
            }
        }
    }
}

fn poll_readable(listener: &UnixListener, wait: Duration) -> bool {
    let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) > 0 }
}

fn thread_name(thread: Option<u64>) -> String {
    match thread {
        None => "the main thread".into(),
        Some(ident) => format!("thread {ident:#x}"),
    }
}

/// Where the thread that must run the bootstrap is, from a dump of its stack.
fn where_stuck(live: &LiveProcess, located: &Located, thread: Option<u64>) -> String {
    let Ok(snapshot) = located.snapshot(&live.mem, &SnapshotOptions::default()) else {
        return "its stack could not be read".into();
    };
    let chosen = match thread {
        Some(ident) => snapshot.threads.iter().find(|t| t.ident == ident),
        None => snapshot
            .threads
            .iter()
            .find(|t| t.name.as_deref() == Some("MainThread"))
            .or(snapshot.threads.first()),
    };
    match chosen.and_then(|t| t.frames.first()) {
        Some(frame) => format!(
            "it is blocked in a call at {}:{} in {}() that has not returned to Python (such as time.sleep, a lock or a socket read)",
            pymri_text::Name(&frame.file),
            frame.line,
            pymri_text::Name(&frame.function)
        ),
        None => "it is not running Python code".into(),
    }
}

/// The script the target runs: put the agent on `sys.path`, import it, hand it the config.
#[allow(clippy::too_many_arguments)]
fn bootstrap_source(
    located: &Located,
    package_dir: &str,
    stage: &Stage,
    socket: &str,
    secret: &str,
    nonce: &str,
    stop_thread: Option<u64>,
    skip_frames: u32,
    stop: bool,
) -> String {
    let (major, minor) = (located.version.major, located.version.minor);
    let offsets = match pymri_layouts::tracing::trace_offsets(major, minor) {
        Some((func, obj)) => format!(
            "{{'c_tracefunc': {func}, 'c_traceobj': {obj}, 'thread_id': {}}}",
            located.layout.thread.thread_id
        ),
        None => "None".into(),
    };
    let stop_thread = stop_thread.map_or("None".to_string(), |t| t.to_string());
    let stop = if stop { "True" } else { "False" };
    format!(
        "import sys\n\
         sys.path.insert(0, {dir:?})\n\
         import pymri_agent.attach\n\
         pymri_agent.attach.start({{'connect': 'unix:' + {socket:?}, 'secret': {secret:?}, 'nonce': {nonce:?}, \
         'thread_offsets': {offsets}, 'stop_thread': {stop_thread}, 'skip_frames': {skip_frames}, \
         'stop': {stop}, 'stage': {stage_dir:?}}})\n",
        dir = package_dir,
        stage_dir = stage.inside(),
    )
}
