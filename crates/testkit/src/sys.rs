//! The few libc calls the kit needs that std does not wrap. Declared here rather than pulling
//! in a crate: std already links libc, and these signatures are stable POSIX/Linux ABI.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::raw::c_int;

extern "C" {
    fn setns(fd: c_int, nstype: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn geteuid() -> u32;
    fn prctl(option: c_int, arg2: std::os::raw::c_ulong, ...) -> c_int;
}

const CLONE_NEWNET: c_int = 0x4000_0000;
const PR_SET_PDEATHSIG: c_int = 1;
pub const SIGKILL: c_int = 9;
pub const SIGTERM: c_int = 15;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

/// Moves the calling thread (only it) into the network namespace open at `ns`.
pub fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: the fd is open for the duration of the call; setns only changes this thread.
    let rc = unsafe { setns(ns.as_raw_fd(), CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `sig` to a process (`pid > 0`) or a process group (`pid < 0`).
pub fn send_signal(pid: i32, sig: c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// For `pre_exec`: the child gets SIGKILL when the thread that spawned it dies, so a test
/// binary killed by a timeout leaves no servers behind. Async-signal-safe (one syscall).
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
    let rc = unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL as std::os::raw::c_ulong) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `pid` runs (a zombie, exited but not yet reaped, counts as gone).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name, which may contain spaces.
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
