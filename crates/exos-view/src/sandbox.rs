//! Sandboxes run in a PID namespace of their own, under an init.
//!
//! [`launch`] (the caller's process) checks who runs what, makes the
//! sandbox's data directory, becomes the sandbox's user, then unshares the
//! user, mount, IPC, PID (and, without `--net`, network) namespaces and
//! starts `INIT __sandbox-init FD` — the `exos` binary again — which is
//! PID 1 of the new PID namespace. It hands the init what to run through an
//! inherited pipe (FD), waits for it and returns its exit status, passing
//! on SIGTERM and SIGHUP (SIGINT and SIGQUIT reach every process of the
//! terminal's foreground group by themselves).
//!
//! [`init`] (PID 1) reads the [`Launch`] (one bounded parser, unknown
//! fields refused), makes the view — with a fresh `/proc` of its own PID
//! namespace, so no host process is seen or reachable (`kill`,
//! `pidfd_open`, `/proc/PID`) — applies Landlock and the seccomp filter,
//! starts the command as PID 2, passes every signal it gets on to it, reaps
//! every orphan, and exits with the command's status (128 + N when a signal
//! N ended it). An init is needed because the kernel delivers to a PID 1
//! only the signals it handles: a command run as PID 1 would ignore Ctrl-C.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};
use rustix::mount::{mount_change, MountPropagationFlags};

use crate::namespace::{become_user, make_data_dir, make_entry, map_self, stage, switch_root};
use crate::{top_entries, ViewError, ViewSpec};

/// The hidden first argument that makes `exos` a sandbox's init.
pub const INIT_ARG: &str = "__sandbox-init";
/// A launch larger than this is refused (a command line is at most 2 MiB;
/// the view's settings are small).
pub const MAX_LAUNCH: u64 = 4 << 20;
/// Where the new root is built (as in `namespace`).
const NEW_ROOT: &str = "/newroot";

/// What the init runs: the view and the command.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// The view to make.
    pub spec: ViewSpec,
    /// The program to run (found in the view's `PATH`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// `PATH` as the caller had it (the view's own directories go first).
    pub path: Option<OsString>,
}

impl Launch {
    /// The one parser of a launch; `what` names its source in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Launch, ViewError> {
        if bytes.len() as u64 > MAX_LAUNCH {
            return Err(ViewError::Init(format!(
                "{what}: more than {MAX_LAUNCH} bytes"
            )));
        }
        let launch: Launch =
            serde_json::from_slice(bytes).map_err(|e| ViewError::Init(format!("{what}: {e}")))?;
        let Some(sandbox) = &launch.spec.sandbox else {
            return Err(ViewError::Init(format!("{what}: not a sandbox")));
        };
        let name = &sandbox.data_name;
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(ViewError::Init(format!("{what}: data name {name:?}")));
        }
        if launch.spec.person.is_root() {
            return Err(ViewError::RootSandbox);
        }
        Ok(launch)
    }
}

/// Starts `launch` in a sandbox under `init` (the `exos` binary) and waits
/// for it; returns its exit status. The calling process must be
/// single-threaded.
pub fn launch(launch: &Launch, init: &Path) -> Result<i32, ViewError> {
    let spec = &launch.spec;
    let Some(sandbox) = &spec.sandbox else {
        return Err(ViewError::Init("not a sandbox".into()));
    };
    let caller = nix::unistd::geteuid();
    let person = &spec.person;
    if !caller.is_root() && caller.as_raw() != person.uid {
        return Err(ViewError::OtherUser(person.name.clone()));
    }
    if person.is_root() {
        return Err(ViewError::RootSandbox);
    }
    make_data_dir(spec, &spec.data_dir(), caller.is_root())?;
    if caller.is_root() {
        become_user(spec)?;
    }
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID;
    if !sandbox.net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    nix::sched::unshare(flags).map_err(|e| ViewError::io("unshare (sandbox namespaces)", e))?;
    map_self(Uid::effective().as_raw(), Gid::effective().as_raw())?;
    hand_down_mount_rights()?;
    let bytes = serde_json::to_vec(launch).map_err(|e| ViewError::Init(e.to_string()))?;
    // One pipe carries the launch to the init, one says when the init has
    // its signal handlers (until then a signal to it would be lost: a PID 1
    // gets only the signals it handles).
    let (read, write) = inherited_pipe(Inherit::Read)?;
    let (ready_read, ready_write) = inherited_pipe(Inherit::Write)?;
    // Registered before the init starts, on this thread: after unsharing
    // the PID namespace this process may start no thread of its own.
    let mut signals = signal_hook::iterator::Signals::new(PASSED_ON.iter().copied().chain([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGQUIT,
        signal_hook::consts::SIGCHLD,
    ]))
    .map_err(|e| ViewError::io("signal handlers", e))?;
    // The init becomes PID 1 of the new PID namespace.
    let mut child = std::process::Command::new(init)
        .arg(INIT_ARG)
        .arg(read.as_raw_fd().to_string())
        .arg(ready_write.as_raw_fd().to_string())
        .spawn()
        .map_err(|e| ViewError::io(format!("starting {}", init.display()), e))?;
    drop((read, ready_write));
    // Ready (or gone: end of file) before any signal is passed on; those
    // that came meanwhile wait in `signals`.
    let _ = std::fs::File::from(ready_read).read(&mut [0u8; 1]);
    let sent = std::fs::File::from(write).write_all(&bytes);
    let pid = Pid::from_raw(child.id() as i32);
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| ViewError::io("waiting for the sandbox", e))?
        {
            break status;
        }
        // SIGINT and SIGQUIT the terminal sends to the whole foreground
        // group, the sandbox's processes included: only waited out here.
        for sig in signals.wait() {
            if PASSED_ON.contains(&sig) {
                if let Ok(s) = Signal::try_from(sig) {
                    let _ = nix::sys::signal::kill(pid, s);
                }
            }
        }
    };
    sent.map_err(|e| ViewError::io("handing the sandbox its command", e))?;
    Ok(exit_code(status))
}

/// Which end of a pipe the init inherits.
enum Inherit {
    Read,
    Write,
}

/// A pipe whose one end (`inherit`) the init inherits; the other is
/// closed at its `execve`. (read, write).
fn inherited_pipe(inherit: Inherit) -> Result<(OwnedFd, OwnedFd), ViewError> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ViewError::io("pipe", e))?;
    let end = match inherit {
        Inherit::Read => &read,
        Inherit::Write => &write,
    };
    rustix::io::fcntl_setfd(end, rustix::io::FdFlags::empty())
        .map_err(|e| ViewError::io("pipe", e))?;
    Ok((read, write))
}

/// Signals the caller passes on to the sandbox's init.
const PASSED_ON: &[i32] = &[signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP];

/// Makes the right to mount (CAP_SYS_ADMIN in the new user namespace, and
/// only that) survive the init's `execve` as an ambient capability: a
/// process of a non-root uid loses every other capability at `execve`.
/// The init drops it before it starts the command.
fn hand_down_mount_rights() -> Result<(), ViewError> {
    use rustix::thread::{
        capabilities, configure_capability_in_ambient_set, set_capabilities, CapabilitySet,
    };
    let io = |e: rustix::io::Errno| ViewError::io("capabilities", e);
    let mut sets = capabilities(None).map_err(io)?;
    sets.inheritable = CapabilitySet::SYS_ADMIN;
    set_capabilities(None, sets).map_err(io)?;
    configure_capability_in_ambient_set(CapabilitySet::SYS_ADMIN, true).map_err(io)
}

/// Drops every capability (ambient, inheritable, permitted, effective):
/// the command starts with none.
fn drop_capabilities() -> Result<(), ViewError> {
    use rustix::thread::{
        clear_ambient_capability_set, set_capabilities, CapabilitySet, CapabilitySets,
    };
    let io = |e: rustix::io::Errno| ViewError::io("dropping capabilities", e);
    clear_ambient_capability_set().map_err(io)?;
    set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(io)
}

/// The exit status a shell would give for `status`.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// The init's launch, from inherited descriptor `fd`.
fn read_launch(fd: i32) -> Result<Launch, ViewError> {
    let what = format!("{INIT_ARG} {fd}");
    let pipe = std::fs::File::open(format!("/proc/self/fd/{fd}"))
        .map_err(|e| ViewError::io(what.clone(), e))?;
    let mut bytes = Vec::new();
    pipe.take(MAX_LAUNCH + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ViewError::io(what.clone(), e))?;
    Launch::parse(&bytes, &what)
}

/// PID 1 of a sandbox (see the module documentation); returns the
/// command's exit status. `fd` holds the [`Launch`]; a byte written to
/// `ready` tells the caller its signals now arrive.
pub fn init(fd: i32, ready: i32) -> Result<i32, ViewError> {
    // First of all: a PID 1 gets only the signals it handles.
    let mut signals = signal_hook::iterator::Signals::new(
        FORWARDED
            .iter()
            .copied()
            .chain([signal_hook::consts::SIGCHLD]),
    )
    .map_err(|e| ViewError::io("signal handlers", e))?;
    if let Ok(mut r) = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{ready}"))
    {
        let _ = r.write_all(b"r");
    }
    let launch = read_launch(fd);
    // Neither descriptor may reach the command.
    let _ = nix::unistd::close(ready);
    let _ = nix::unistd::close(fd);
    let launch = launch?;
    let spec = &launch.spec;
    let data_name = spec.sandbox.as_ref().map_or("", |s| s.data_name.as_str());
    let host = top_entries(Path::new("/")).map_err(|e| ViewError::io("/", e))?;
    let (_, merged) = spec.layer_dirs();
    let packages =
        top_entries(&merged).map_err(|e| ViewError::io(merged.display().to_string(), e))?;
    let plan = spec.plan(&host, &packages);
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| ViewError::io("making / private", e))?;
    stage()?;
    for entry in &plan {
        make_entry(Path::new(NEW_ROOT), entry)?;
    }
    switch_root()?;
    crate::namespace::landlock(spec)?;
    crate::seccomp::apply(spec.sandbox.as_ref().is_some_and(|s| s.net))?;
    drop_capabilities()?;
    let env = spec.environment(launch.path.clone(), |p| p.is_dir());
    let cwd = PathBuf::from("/data").join(data_name);
    let command = match std::process::Command::new(&launch.program)
        .args(&launch.args)
        .envs(env)
        .current_dir(&cwd)
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let path = std::env::var_os("PATH");
            eprintln!(
                "exos: {}",
                crate::not_found_reason(&launch.program, path.as_deref())
            );
            return Ok(127);
        }
        Err(e) => {
            return Err(ViewError::io(
                Path::new(&launch.program).display().to_string(),
                e,
            ))
        }
    };
    let pid = Pid::from_raw(command.id() as i32);
    loop {
        if let Some(code) = reap(pid) {
            return Ok(code);
        }
        for sig in signals.wait() {
            if sig != signal_hook::consts::SIGCHLD {
                if let Ok(s) = Signal::try_from(sig) {
                    let _ = nix::sys::signal::kill(pid, s);
                }
            }
        }
    }
}

/// Signals PID 1 passes on to the command.
const FORWARDED: &[i32] = &[
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGUSR1,
    signal_hook::consts::SIGUSR2,
    signal_hook::consts::SIGWINCH,
    signal_hook::consts::SIGCONT,
];

/// Reaps every child that ended (orphans of the sandbox become PID 1's);
/// the command's exit status once it has ended.
fn reap(command: Pid) -> Option<i32> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == command => return Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == command => return Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// An inherited descriptor's number, for the command line of the init.
pub fn fd_arg(fd: &OwnedFd) -> String {
    fd.as_raw_fd().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crafted_launch_is_refused_naming_the_rule() {
        let good = r#"{"spec":{"root":"/r","mountpoint":"/m","audience":"User","person":{"name":"nobody","uid":65534,"gid":65534,"groups":[],"home":"/","shell":"/bin/sh"},"sandbox":{"net":false,"data_name":"app"},"library_dirs":[]},"program":{"Unix":[115,104]},"args":[],"path":null}"#;
        Launch::parse(good.as_bytes(), "test").unwrap();
        for (bad, rule) in [
            (good.replace("\"app\"", "\"../x\""), "data name"),
            (
                good.replace(
                    "\"sandbox\":{\"net\":false,\"data_name\":\"app\"}",
                    "\"sandbox\":null",
                ),
                "not a sandbox",
            ),
            (
                good.replace("65534,\"gid\"", "0,\"gid\""),
                "never runs as root",
            ),
            (
                good.replace("\"args\":[]", "\"args\":[],\"extra\":1"),
                "unknown field",
            ),
            ("[".to_string(), "EOF"),
        ] {
            let e = Launch::parse(bad.as_bytes(), "test")
                .unwrap_err()
                .to_string();
            assert!(e.contains(rule), "{bad}: {e}");
        }
        let big = vec![b' '; MAX_LAUNCH as usize + 1];
        assert!(Launch::parse(&big, "test")
            .unwrap_err()
            .to_string()
            .contains("more than"));
    }
}
