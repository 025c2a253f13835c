//! A stopped thread's registers, through `PTRACE_GETREGSET`, in the layouts the kernel writes
//! into `NT_PRSTATUS` and the floating-point notes.

use std::io;

/// The machine's ELF number and its register sets' sizes.
#[cfg(target_arch = "x86_64")]
pub(crate) mod arch {
    pub const MACHINE: u16 = 62; // EM_X86_64
    /// `struct user_regs_struct`: 27 registers of 8 bytes.
    pub const GREGS: usize = 27 * 8;
    /// `struct user_fpregs_struct` (the FXSAVE area).
    pub const FPREGS: usize = 512;
    /// The XSAVE area (AVX and later registers): its size depends on the CPU, 16 KiB covers
    /// every current one (AMX included).
    pub const XSTATE: Option<usize> = Some(16 * 1024);
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod arch {
    pub const MACHINE: u16 = 183; // EM_AARCH64
    /// `struct user_pt_regs`: x0-x30, sp, pc, pstate.
    pub const GREGS: usize = 34 * 8;
    /// `struct user_fpsimd_state`.
    pub const FPREGS: usize = 528;
    pub const XSTATE: Option<usize> = None;
}

/// Register-set types of `PTRACE_GETREGSET`, which are the note types of a core.
pub(crate) const NT_PRSTATUS: u32 = 1;
pub(crate) const NT_PRFPREG: u32 = 2;
pub(crate) const NT_X86_XSTATE: u32 = 0x202;

/// The registers of one thread.
#[derive(Debug, Clone)]
pub(crate) struct Registers {
    pub general: Vec<u8>,
    pub fp: Option<Vec<u8>>,
    pub xstate: Option<Vec<u8>>,
}

/// Reads the registers of `tid`, which must be in a ptrace stop of ours. The floating-point
/// sets are optional (a kernel may not offer one): only the general registers are required.
pub(crate) fn read(tid: i32) -> io::Result<Registers> {
    let mut general = vec![0u8; arch::GREGS];
    let n = regset(tid, NT_PRSTATUS, &mut general)?;
    general.truncate(n);
    general.resize(arch::GREGS, 0);
    let mut fp = vec![0u8; arch::FPREGS];
    let fp = regset(tid, NT_PRFPREG, &mut fp).ok().map(|n| {
        fp.truncate(n);
        fp
    });
    let xstate = arch::XSTATE.and_then(|size| {
        let mut buf = vec![0u8; size];
        let n = regset(tid, NT_X86_XSTATE, &mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    });
    Ok(Registers { general, fp, xstate })
}

/// `PTRACE_GETREGSET`: fills the front of `buf`, returns how many bytes the kernel wrote.
fn regset(tid: i32, kind: u32, buf: &mut [u8]) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: `iov` describes `buf`, valid for writes of its length for the whole call; the
    // kernel writes at most `iov_len` bytes and stores the count written back into `iov`.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            kind as usize as *mut libc::c_void,
            (&mut iov as *mut libc::iovec).cast::<libc::c_void>(),
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(iov.iov_len.min(buf.len()))
}
