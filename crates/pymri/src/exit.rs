//! Exit statuses, and the mapping from errors to them.
//!
//! `pymri run` is the exception: once the program started, pymri exits with the program's own
//! status (128 + N if signal N killed it), like `python -m pdb`; these statuses only describe
//! failures before that (1: the debugger agent did not start in the interpreter, 2: usage,
//! 3: no such interpreter or script).
//!
//! Remote sessions (`connect`, `listen`, `web --connect`) use 2 for a bad address or a missing
//! secret, 3 when nothing listens at the address, 8 when the peer was reached but the session
//! could not be authenticated.

use pymri_cpython::Error as PyError;
use pymri_inject::attach::AttachError;
use pymri_inject::InjectError;
use pymri_memory::MemoryError;
use pymri_object::ObjectError;
use pymri_transport::{AddressError, SecretError, TransportError};
use std::process::ExitCode;

/// Documented exit statuses (README, `pymri --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success = 0,
    /// The target or the input is at fault: not Python, exited mid-read, corrupt core.
    TargetFailure = 1,
    /// Bad command-line usage (clap's own code).
    Usage = 2,
    /// No such process or file.
    NotFound = 3,
    PermissionDenied = 4,
    /// A Python version or build pymri cannot read.
    Unsupported = 5,
    /// The target refuses debuggers (`PYTHON_DISABLE_REMOTE_DEBUG`, `-X disable-remote-debug`).
    Refused = 6,
    /// The target did not reach a safe point where the debugger could start, in time.
    Timeout = 7,
    /// The other end of a remote session (`connect`, `listen`, `web --connect`) was reached but
    /// the session could not be authenticated: another secret, TLS on one side only, a peer
    /// that closed the handshake.
    AuthFailed = 8,
    /// `snapshot`: the core file exists already (without `--force`), or could not be created or
    /// written (a full disk, a quota); nothing is left behind.
    Output = 9,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s as u8)
    }
}

/// Picks the status for an error from the most specific cause in its chain.
pub fn status_of(err: &anyhow::Error) -> Status {
    for cause in err.chain() {
        if cause.is::<crate::commands::record::OutputError>() {
            return Status::TargetFailure;
        }
        if cause.is::<crate::commands::snapshot::OutputError>() {
            return Status::Output;
        }
        if let Some(e) = cause.downcast_ref::<pymri_coredump::Error>() {
            return match e {
                pymri_coredump::Error::Memory(m) => memory_status(m),
                pymri_coredump::Error::Write { .. } => Status::Output,
                _ => Status::TargetFailure,
            };
        }
        if let Some(e) = cause.downcast_ref::<TransportError>() {
            if let Some(status) = transport_status(e) {
                return status;
            }
        }
        if let Some(e) = cause.downcast_ref::<SecretError>() {
            return secret_status(e);
        }
        if cause.is::<AddressError>()
            || cause.is::<crate::commands::remote::NoSecret>()
            || cause.is::<crate::commands::manual::UnknownCommand>()
            || cause.is::<crate::commands::trace::Usage>()
        {
            return Status::Usage;
        }
        // `pymri web --listen` with an address it must not serve on.
        if cause.is::<pymri_web::ListenError>()
            || matches!(cause.downcast_ref::<pymri_web::ServeError>(), Some(pymri_web::ServeError::Listen(_)))
        {
            return Status::Usage;
        }
        if let Some(e) = cause.downcast_ref::<AttachError>() {
            match e {
                AttachError::Timeout(_) => return Status::Timeout,
                AttachError::Inject(InjectError::RemoteDebugDisabled { .. }) => return Status::Refused,
                AttachError::Inject(InjectError::UnknownBuild { .. } | InjectError::Unsupported(_)) => {
                    return Status::Unsupported
                }
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<MemoryError>() {
            return memory_status(e);
        }
        if let Some(e) = cause.downcast_ref::<PyError>() {
            return match e {
                PyError::Memory(m) => memory_status(m),
                PyError::Object(o) => object_status(o),
                PyError::UnsupportedVersion { .. }
                | PyError::FreeThreaded { .. }
                | PyError::TasksUnsupported { .. } => Status::Unsupported,
                _ => Status::TargetFailure,
            };
        }
        if let Some(e) = cause.downcast_ref::<ObjectError>() {
            return object_status(e);
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            return match e.kind() {
                std::io::ErrorKind::NotFound => Status::NotFound,
                std::io::ErrorKind::PermissionDenied => Status::PermissionDenied,
                _ => Status::TargetFailure,
            };
        }
    }
    Status::TargetFailure
}

/// `None` for errors whose own cause decides (a secret file, an I/O error).
fn transport_status(e: &TransportError) -> Option<Status> {
    match e {
        TransportError::Address(_)
        | TransportError::SecretRequired { .. }
        | TransportError::Unsupported { .. } => Some(Status::Usage),
        // Nothing listens, no such socket or FIFO, a name that does not resolve.
        TransportError::Unreachable { .. } => Some(Status::NotFound),
        // Transparent: the chain goes on below the secret error, so it is looked at here.
        TransportError::Secret(e) => Some(secret_status(e)),
        e if e.is_authentication() => Some(Status::AuthFailed),
        _ => None,
    }
}

fn secret_status(e: &SecretError) -> Status {
    match e {
        SecretError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Status::NotFound,
        SecretError::Read { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Status::PermissionDenied
        }
        // A file others can read, not a secret, or one that exists already: the input's fault.
        _ => Status::TargetFailure,
    }
}

fn memory_status(e: &MemoryError) -> Status {
    match e {
        MemoryError::NoSuchProcess { .. } => Status::NotFound,
        MemoryError::PermissionDenied { .. } => Status::PermissionDenied,
        _ => Status::TargetFailure,
    }
}

fn object_status(e: &ObjectError) -> Status {
    match e {
        ObjectError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Status::NotFound,
        ObjectError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Status::PermissionDenied
        }
        _ => Status::TargetFailure,
    }
}
