//! `exos-shutdown`: the last program of a system booted by `exos boot
//! --switch-root`, run as PID 1 from `/run/initramfs` (systemd's "exitrd").
//!
//! systemd-shutdown runs from `/usr`, so it cannot unmount `/usr` (an exos
//! mount) nor the root file system the root storage daemon (`@exos-mountd`)
//! still serves from. When `/run/initramfs/shutdown` exists it pivots into
//! `/run/initramfs`, leaves the old root at `/oldroot` and executes it with
//! the verb (`poweroff`, `reboot`, `halt`, `kexec`). This unmounts
//! everything under `/oldroot` deepest first — `/usr` first, which ends the
//! FUSE connection and so the daemon — asks what is left to end (SIGTERM,
//! then SIGKILL), reaps it (orphans are PID 1's), syncs and powers off.
//! What cannot be unmounted is remounted read-only, and named.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exos_root::mountinfo::{self, MountEntry};
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::system::RebootCommand;

/// Where systemd-shutdown leaves the old root.
pub const OLD_ROOT: &str = "/oldroot";
/// Without progress this long, what is left is asked to end (SIGTERM) …
const TERM_AFTER: Duration = Duration::from_secs(2);
/// … then ended (SIGKILL) …
const KILL_AFTER: Duration = Duration::from_secs(5);
/// … and after this, what is still mounted is left read-only.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// What systemd-shutdown asks for (its first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Power off.
    PowerOff,
    /// Restart (also for `kexec`, which is not loaded from here).
    Reboot,
    /// Halt.
    Halt,
}

impl Verb {
    /// The verb systemd passes; anything else reboots, as dracut's does.
    pub fn parse(arg: Option<&str>) -> (Verb, Option<String>) {
        match arg {
            Some("poweroff") => (Verb::PowerOff, None),
            Some("reboot") => (Verb::Reboot, None),
            Some("halt") => (Verb::Halt, None),
            Some("kexec") => (
                Verb::Reboot,
                Some("kexec is not done from here: rebooting".to_string()),
            ),
            other => (Verb::Reboot, Some(format!("asked to {other:?}: rebooting"))),
        }
    }

    fn command(self) -> RebootCommand {
        match self {
            Verb::PowerOff => RebootCommand::PowerOff,
            Verb::Reboot => RebootCommand::Restart,
            Verb::Halt => RebootCommand::Halt,
        }
    }
}

/// The mount points at or below `under`, in the order to unmount them:
/// deepest first, and of equal depth the later mount first (a mount on top
/// of another at the same place goes before it).
pub fn unmount_order(entries: &[MountEntry], under: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(usize, usize, PathBuf)> = entries
        .iter()
        .enumerate()
        .filter(|(_, m)| m.mount_point.starts_with(under))
        .map(|(i, m)| (m.mount_point.components().count(), i, m.mount_point.clone()))
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    found.into_iter().map(|(_, _, p)| p).collect()
}

/// Unmounts everything below `/oldroot`, then does `verb`. Returns only if
/// the kernel refuses to (it is then the caller's to report).
pub fn shut_down(verb: Verb) -> std::io::Error {
    let old = Path::new(OLD_ROOT);
    let mut last_progress = Instant::now();
    let mut termed = false;
    let mut killed = false;
    loop {
        reap();
        let left = unmount_order(&mountinfo::read(), old);
        if left.is_empty() {
            say(&format!("everything under {OLD_ROOT} is unmounted"));
            break;
        }
        let mut progressed = false;
        for at in &left {
            if rustix::mount::unmount(at, UnmountFlags::empty()).is_ok() {
                say(&format!("unmounted {}", at.display()));
                progressed = true;
            }
        }
        if progressed {
            last_progress = Instant::now();
            continue;
        }
        let stuck = last_progress.elapsed();
        if stuck >= GIVE_UP_AFTER {
            leave_read_only(&left);
            break;
        }
        if stuck >= KILL_AFTER && !killed {
            signal_all(Signal::KILL);
            killed = true;
        } else if stuck >= TERM_AFTER && !termed {
            signal_all(Signal::TERM);
            termed = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    rustix::fs::sync();
    match rustix::system::reboot(verb.command()) {
        Ok(()) => std::io::Error::other("reboot returned"),
        Err(e) => e.into(),
    }
}

/// Reaps every child that ended (every orphan is PID 1's).
fn reap() {
    while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
}

/// Sends `signal` to every process but this one.
fn signal_all(signal: Signal) {
    let me = rustix::process::getpid();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    let mut names = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        // Kernel threads have no command line and ignore signals.
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if pid == me || cmdline.is_empty() {
            continue;
        }
        if rustix::process::kill_process(pid, signal).is_ok() {
            let name = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            names.push(format!(
                "{} ({})",
                pid.as_raw_nonzero(),
                String::from_utf8_lossy(name)
            ));
        }
    }
    if !names.is_empty() {
        say(&format!("sent {signal:?} to {}", names.join(", ")));
    }
}

/// What could not be unmounted: remounted read-only, so its file system is
/// consistent on the disk, and named.
fn leave_read_only(left: &[PathBuf]) {
    for at in left {
        let ro = rustix::mount::mount_remount(at, MountFlags::RDONLY, "");
        say(&format!(
            "could not unmount {}: {}",
            at.display(),
            match ro {
                Ok(()) => "left read-only".to_string(),
                Err(e) => format!("and could not make it read-only ({e})"),
            }
        ));
    }
}

/// On the console (systemd-shutdown made it stdout and stderr).
fn say(message: &str) {
    eprintln!("exos-shutdown: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: &str) -> MountEntry {
        MountEntry {
            mount_point: PathBuf::from(at),
            fstype: "x".into(),
            source: "x".into(),
        }
    }

    #[test]
    fn deepest_mounts_go_first_and_a_mount_on_top_before_the_one_below() {
        let entries = [
            entry("/"),
            entry("/oldroot"),
            entry("/oldroot/run"),
            entry("/oldroot/usr"),
            entry("/oldroot/run/exos/factory/etc"),
            entry("/oldrootx"),
            entry("/oldroot/usr"),
        ];
        let order = unmount_order(&entries, Path::new(OLD_ROOT));
        let order: Vec<_> = order.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            order,
            [
                "/oldroot/run/exos/factory/etc",
                "/oldroot/usr",
                "/oldroot/usr",
                "/oldroot/run",
                "/oldroot"
            ]
        );
    }

    #[test]
    fn verbs_are_systemds_and_anything_else_reboots() {
        assert_eq!(Verb::parse(Some("poweroff")).0, Verb::PowerOff);
        assert_eq!(Verb::parse(Some("halt")).0, Verb::Halt);
        assert_eq!(Verb::parse(Some("reboot")), (Verb::Reboot, None));
        let (verb, said) = Verb::parse(Some("kexec"));
        assert_eq!(verb, Verb::Reboot);
        assert!(said.unwrap().contains("kexec"));
        assert!(Verb::parse(None).1.is_some());
    }
}
