//! Making a planned view in a new namespace of the calling process.

use std::ffi::OsString;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use rustix::mount::{
    mount_bind_recursive, mount_change, mount_remount, unmount, MountFlags, MountPropagationFlags,
    UnmountFlags,
};

use crate::{top_entries, RootEntry, Source, ViewError, ViewSpec};

/// What the command needs once the view is made.
#[derive(Debug)]
pub struct Entered {
    /// Environment variables to set.
    pub env: Vec<(String, OsString)>,
    /// The working directory to start in (inside the view).
    pub cwd: PathBuf,
}

/// Where the host's root is reachable while the new root is built.
const OLD_ROOT: &str = "/oldroot";
/// Where the new root is built.
const NEW_ROOT: &str = "/newroot";

/// Gives this (single-threaded, root) process a mount namespace of its own
/// whose mounts are private: what it mounts afterwards (and what its
/// children see) never reaches the host's, and leaves with its last process
/// (`exos boot`'s mount of a state and its binds).
pub fn private_mounts() -> Result<(), ViewError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| ViewError::io("unshare (mount namespace)", e))?;
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| ViewError::io("making / private", e))
}

/// Makes `spec`'s view in new namespaces of this (single-threaded) process
/// and switches to its user. The caller then executes the command.
pub fn enter(spec: &ViewSpec) -> Result<Entered, ViewError> {
    let caller = nix::unistd::geteuid();
    let person = &spec.person;
    if !caller.is_root() && caller.as_raw() != person.uid {
        return Err(ViewError::OtherUser(person.name.clone()));
    }
    if spec.sandbox.is_some() {
        // A sandbox gets a PID namespace and an init: crate::sandbox.
        return Err(ViewError::Init(
            "a sandbox starts through exos_view::sandbox::launch".into(),
        ));
    }
    let data = spec.data_dir();
    make_data_dir(spec, &data, caller.is_root())?;
    let host = top_entries(Path::new("/")).map_err(|e| ViewError::io("/", e))?;
    let (_, merged) = spec.layer_dirs();
    let packages =
        top_entries(&merged).map_err(|e| ViewError::io(merged.display().to_string(), e))?;
    let plan = spec.plan(&host, &packages);
    let host_cwd = std::env::current_dir().ok();

    if !caller.is_root() {
        let flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
        nix::sched::unshare(flags).map_err(|e| ViewError::io("unshare (user namespace)", e))?;
        map_self(Uid::effective().as_raw(), Gid::effective().as_raw())?;
    } else {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS)
            .map_err(|e| ViewError::io("unshare (mount namespace)", e))?;
    }
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

    if caller.is_root() && !person.is_root() {
        become_user(spec)?;
    }
    let cwd = match host_cwd {
        Some(cwd) if cwd.is_dir() => cwd,
        _ => PathBuf::from("/"),
    };
    let env = spec.environment(std::env::var_os("PATH"), |p| p.is_dir());
    Ok(Entered { env, cwd })
}

/// Creates the host directory behind `/data` (a sandbox's own one: owned by
/// its user; a directory someone else owns is refused).
pub(crate) fn make_data_dir(spec: &ViewSpec, data: &Path, root: bool) -> Result<(), ViewError> {
    if spec.sandbox.is_none() {
        return std::fs::create_dir_all(data)
            .map_err(|e| ViewError::io(data.display().to_string(), e));
    }
    let person = &spec.person;
    let users = spec.root.join("data").join("users");
    let mine = users.join(&person.name);
    for dir in [&users, &mine, &data.to_path_buf()] {
        match std::fs::create_dir(dir) {
            Ok(()) => {
                if root && dir != &users {
                    rustix::fs::chown(
                        dir.as_path(),
                        Some(rustix::fs::Uid::from_raw(person.uid)),
                        Some(rustix::fs::Gid::from_raw(person.gid)),
                    )
                    .map_err(|e| ViewError::io(dir.display().to_string(), e))?;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                        .map_err(|e| ViewError::io(dir.display().to_string(), e))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(ViewError::io(
                    format!(
                        "{} (a sandbox writes only there; root makes it on first use)",
                        dir.display()
                    ),
                    e,
                ))
            }
        }
    }
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(&mine)
        .map_err(|e| ViewError::io(mine.display().to_string(), e))?;
    if meta.uid() != person.uid || !meta.is_dir() {
        return Err(ViewError::io(
            mine.display().to_string(),
            std::io::Error::other(format!("not a directory owned by {}", person.name)),
        ));
    }
    Ok(())
}

/// Root becomes the view's user: groups, then gid, then uid.
pub(crate) fn become_user(spec: &ViewSpec) -> Result<(), ViewError> {
    let p = &spec.person;
    let groups: Vec<Gid> = p.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| ViewError::io("setgroups", e))?;
    let gid = Gid::from_raw(p.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| ViewError::io("setresgid", e))?;
    let uid = Uid::from_raw(p.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| ViewError::io("setresuid", e))?;
    // Changing ids makes a process undumpable, which leaves its /proc files
    // root's: the user could not write its own uid_map.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)
        .map_err(|e| ViewError::io("prctl(PR_SET_DUMPABLE)", e))
}

/// Maps only the caller's own ids into its new user namespace.
pub(crate) fn map_self(uid: u32, gid: u32) -> Result<(), ViewError> {
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|e| ViewError::io(file.to_string(), e))
    };
    write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    write("/proc/self/setgroups", "deny\n".into())?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))
}

/// A tmpfs over /tmp becomes the root, the host's root moves to /oldroot,
/// and a second tmpfs at /newroot is where the view is built (binds take
/// their sources from /oldroot, where the host's /tmp is whole again).
pub(crate) fn stage() -> Result<(), ViewError> {
    tmpfs(Path::new("/tmp"))?;
    for dir in ["/tmp/newroot", "/tmp/oldroot"] {
        std::fs::create_dir(dir).map_err(|e| ViewError::io(dir, e))?;
    }
    tmpfs(Path::new("/tmp/newroot"))?;
    rustix::process::pivot_root("/tmp", "/tmp/oldroot")
        .map_err(|e| ViewError::io("pivot_root", e))?;
    std::env::set_current_dir("/").map_err(|e| ViewError::io("/", e))
}

fn tmpfs(at: &Path) -> Result<(), ViewError> {
    rustix::mount::mount(
        "tmpfs",
        at,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=0755",
    )
    .map_err(|e| ViewError::io(format!("mounting a tmpfs on {}", at.display()), e))
}

/// The host path `p` as seen while staging.
fn old(p: &Path) -> PathBuf {
    Path::new(OLD_ROOT).join(p.strip_prefix("/").unwrap_or(p))
}

pub(crate) fn make_entry(parent: &Path, entry: &RootEntry) -> Result<(), ViewError> {
    make_source(&parent.join(&entry.name), &entry.source)
}

fn make_source(at: &Path, source: &Source) -> Result<(), ViewError> {
    let what = || {
        at.strip_prefix(NEW_ROOT)
            .unwrap_or(at)
            .display()
            .to_string()
    };
    match source {
        Source::Symlink(target) => symlink(target, at).map_err(|e| ViewError::io(what(), e)),
        Source::Tmpfs => {
            std::fs::create_dir(at).map_err(|e| ViewError::io(what(), e))?;
            tmpfs(at)?;
            std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o1777))
                .map_err(|e| ViewError::io(what(), e))
        }
        Source::Proc => {
            std::fs::create_dir(at).map_err(|e| ViewError::io(what(), e))?;
            rustix::mount::mount(
                "proc",
                at,
                "proc",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                c"",
            )
            .map_err(|e| ViewError::io(format!("mounting a procfs on {}", what()), e))
        }
        Source::Selection(items) => {
            std::fs::create_dir(at).map_err(|e| ViewError::io(what(), e))?;
            for (name, source) in items {
                make_source(&at.join(name), source)?;
            }
            Ok(())
        }
        Source::Bind { from, writable } => {
            let from = old(from);
            let meta = std::fs::metadata(&from)
                .map_err(|e| ViewError::io(from.display().to_string(), e))?;
            if meta.is_dir() {
                std::fs::create_dir(at)
            } else {
                std::fs::File::create(at).map(drop)
            }
            .map_err(|e| ViewError::io(what(), e))?;
            mount_bind_recursive(&from, at).map_err(|e| {
                ViewError::io(format!("binding {} on {}", from.display(), what()), e)
            })?;
            if !writable {
                read_only(at)
                    .map_err(|e| ViewError::io(format!("making {} read-only", what()), e))?;
            }
            Ok(())
        }
    }
}

/// Remounts a bind read-only, keeping the flags it has (a user namespace
/// may not clear them).
fn read_only(at: &Path) -> rustix::io::Result<()> {
    let st = rustix::fs::statvfs(at)?;
    if st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Ok(());
    }
    let mut flags = MountFlags::BIND | MountFlags::RDONLY;
    for (have, keep) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (rustix::fs::StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (
            rustix::fs::StatVfsMountFlags::NODIRATIME,
            MountFlags::NODIRATIME,
        ),
        (
            rustix::fs::StatVfsMountFlags::RELATIME,
            MountFlags::RELATIME,
        ),
    ] {
        if st.f_flag.contains(have) {
            flags |= keep;
        }
    }
    mount_remount(at, flags, c"")
}

/// The new root replaces the staging one, the host's root is detached, and
/// the new root's own directory becomes read-only.
pub(crate) fn switch_root() -> Result<(), ViewError> {
    std::env::set_current_dir(NEW_ROOT).map_err(|e| ViewError::io(NEW_ROOT, e))?;
    rustix::process::pivot_root(".", ".").map_err(|e| ViewError::io("pivot_root", e))?;
    unmount(".", UnmountFlags::DETACH)
        .map_err(|e| ViewError::io("detaching the host's root", e))?;
    std::env::set_current_dir("/").map_err(|e| ViewError::io("/", e))?;
    mount_remount(
        "/",
        MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        c"",
    )
    .map_err(|e| ViewError::io("making / read-only", e))
}

/// A sandbox's Landlock domain (see the crate docs). Refused, not
/// weakened, when the kernel cannot enforce the file-system rules.
pub(crate) fn landlock(spec: &ViewSpec) -> Result<(), ViewError> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr,
        RulesetCreatedAttr, RulesetStatus, Scope, ABI,
    };
    let abi = ABI::V6;
    let err = |e: landlock::RulesetError| ViewError::Landlock(e.to_string());
    let data = Path::new("/data").join(spec.sandbox.as_ref().map_or("", |s| s.data_name.as_str()));
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .scope(Scope::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(
            [data.as_path(), Path::new("/tmp"), Path::new("/dev")],
            AccessFs::from_all(abi),
        ))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(ViewError::Landlock(
            "this kernel does not enforce Landlock (needs Linux 5.13 with landlock in lsm=); refusing to run a sandbox without it".into(),
        ));
    }
    Ok(())
}
