//! `exos mount` (the front end: checks, then runs `exos-mountd`, see
//! `serve`), `exos unmount`, `exos status`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use exos_hpkg::crypt::PackageKey;
use exos_packagefs::{is_mounted, Status};
use serde::Serialize;

use crate::output::{bytes, Out};
use crate::serve::MountArgs;

/// What `exos mount --daemon` started.
#[derive(Serialize)]
pub struct MountReport<'a> {
    pub root: &'a Path,
    pub mountpoint: &'a Path,
    /// The serving process (exos-mountd).
    pub pid: u32,
}

/// What `exos unmount` did.
#[derive(Serialize)]
pub struct UnmountReport<'a> {
    pub unmounted: &'a Path,
}

pub fn mount(
    args: &MountArgs,
    keys: &[PackageKey],
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<()> {
    let mut args = args.clone();
    args.exec_cache = exec_cache_dir(&args, settings)?;
    if args.block_cache.is_none() {
        // The daemon may not see this environment: passed explicitly.
        args.block_cache = settings.block_cache.clone();
    }
    let args = &args;
    if !args.root.is_dir() {
        bail!("{}: not a directory (an EXOS root has system/packages, common/packages, user/packages)", args.root.display());
    }
    abandoned(&args.mountpoint)?;
    if !args.mountpoint.is_dir() {
        bail!(
            "{}: mount point must be an existing directory",
            args.mountpoint.display()
        );
    }
    if !Path::new("/dev/fuse").exists() {
        bail!("/dev/fuse is missing: load the fuse module (modprobe fuse) or install fuse3");
    }
    if is_mounted(&args.mountpoint) {
        bail!(
            "{}: something is already mounted there",
            args.mountpoint.display()
        );
    }
    let has_lazy = std::fs::read_dir(exos_root::Layout::new(&args.root).lazy_dir())
        .is_ok_and(|mut d| d.next().is_some());
    if has_lazy && args.block_cache.is_none() {
        eprintln!(
            "exos: warning: {}; lazily installed packages are not served",
            crate::settings::NO_DEFAULT_CACHE
        );
    }
    if args.io_uring == crate::serve::IoUringArg::Always {
        if let Err(why) = exos_packagefs::io_uring_available() {
            bail!("--io-uring always: {why}");
        }
    }
    if args.daemon {
        return spawn_daemon(args, keys, out);
    }
    exec_mountd(args, keys, out.quiet)
}

/// The exec cache the mount will use: `--exec-cache DIR` (refused, here and
/// not only in the daemon's log, if unusable), none with
/// `--no-exec-cache`, else the default directory — or none, with a
/// warning, when that cannot be made or is not private to this user.
fn exec_cache_dir(
    args: &MountArgs,
    settings: &crate::settings::Settings,
) -> Result<Option<PathBuf>> {
    use exos_packagefs::exec_cache::ExecCache;
    if args.no_exec_cache {
        return Ok(None);
    }
    if let Some(dir) = &args.exec_cache {
        ExecCache::open(dir, args.exec_cache_mib << 20)
            .with_context(|| format!("--exec-cache {}", dir.display()))?;
        return Ok(Some(dir.clone()));
    }
    let Some(dir) = settings.exec_cache.clone() else {
        return Ok(None);
    };
    match ExecCache::open(&dir, args.exec_cache_mib << 20) {
        Ok(_) => Ok(Some(dir)),
        Err(e) => {
            eprintln!(
                "exos: warning: no exec cache ({}: {e}); programs start from the packages (--exec-cache DIR to choose one, --no-exec-cache to say none)",
                dir.display()
            );
            Ok(None)
        }
    }
}

/// Path of `exos-mountd`, installed beside `exos`.
fn mountd() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the exos binary")?;
    let d = exe.with_file_name("exos-mountd");
    if !d.is_file() {
        bail!(
            "{}: missing; `exos mount` runs it to serve the mount (it is built with exos: cargo build --release -p exos-cli)",
            d.display()
        );
    }
    Ok(d)
}

/// `exos-mountd`'s arguments, and the pipe holding the `--key` keys it
/// reads with `--keys-fd` (which must stay open until it has started).
fn daemon_command(
    args: &MountArgs,
    keys: &[PackageKey],
    quiet: bool,
) -> Result<(Vec<std::ffi::OsString>, Option<std::os::fd::OwnedFd>)> {
    let mut argv = args.daemon_argv()?;
    let keys_fd = if keys.is_empty() {
        None
    } else {
        Some(crate::keys::to_daemon(keys)?)
    };
    if let Some(fd) = &keys_fd {
        argv.extend(crate::keys::daemon_arg(fd).map(Into::into));
    }
    if quiet {
        argv.insert(0, "--quiet".into());
    }
    Ok((argv, keys_fd))
}

/// Foreground: becomes `exos-mountd` (same process, so signals reach it).
fn exec_mountd(args: &MountArgs, keys: &[PackageKey], quiet: bool) -> Result<()> {
    use std::os::unix::process::CommandExt;
    // The keys' pipe stays open until the exec: the daemon inherits it.
    let (argv, _keys_fd) = daemon_command(args, keys, quiet)?;
    let err = std::process::Command::new(mountd()?).args(argv).exec();
    Err(err).context("starting exos-mountd")
}

/// Starts `exos-mountd` in a new process group, working from `/` with
/// absolute paths, and returns once the mount is up (or reports why it is
/// not).
fn spawn_daemon(args: &MountArgs, keys: &[PackageKey], out: Out) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = mountd()?;
    // The keys' pipe stays open until the child is started: it inherits it.
    let (mut argv, keys_fd) = daemon_command(args, keys, out.quiet)?;
    if args.log_file.is_none() {
        argv.insert(0, "--stderr-until-ready".into());
    }
    let log = match &args.log_file {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| p.display().to_string())?,
        ),
        None => None,
    };
    let pid_file = std::path::absolute(
        args.pid_file
            .as_ref()
            .context("--daemon needs --pid-file")?,
    )?;
    let _ = std::fs::remove_file(&pid_file);
    // Without a log file, what the daemon says while it starts is read
    // here (a pipe), so a failure is shown; once serving, the daemon points
    // its stderr at /dev/null (--stderr-until-ready), so that nothing it
    // says later goes into a pipe nobody reads.
    let (stdout, stderr) = match &log {
        Some(f) => (
            std::process::Stdio::from(f.try_clone()?),
            std::process::Stdio::from(f.try_clone()?),
        ),
        None => (std::process::Stdio::null(), std::process::Stdio::piped()),
    };
    let mut command = std::process::Command::new(exe);
    if args.storage_daemon {
        command.arg0("@exos-mountd");
    }
    let mut child = command
        .args(&argv)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .context("starting the background mount")?;
    drop(keys_fd);
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if let Some(mut pipe) = child.stderr.take() {
        let said = said.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let mut all = said.lock().unwrap_or_else(|e| e.into_inner());
                if all.len() < 64 * 1024 {
                    all.extend_from_slice(&buf[..n]);
                }
            }
        });
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(status) = child.try_wait()? {
            // Let the reader drain what the daemon wrote before it exited.
            std::thread::sleep(Duration::from_millis(50));
            let text = String::from_utf8_lossy(&said.lock().unwrap_or_else(|e| e.into_inner()))
                .trim()
                .to_string();
            let fuse = if text.contains("fuse") || text.contains("ermission") {
                format!("; /dev/fuse is {}", describe_device("/dev/fuse"))
            } else {
                String::new()
            };
            match &args.log_file {
                Some(p) => bail!(
                    "the background mount exited ({status}){fuse}; see {}",
                    p.display()
                ),
                None if text.is_empty() => {
                    bail!("the background mount exited ({status}) without a word{fuse}")
                }
                None => bail!("the background mount exited ({status}){fuse}:\n{text}"),
            }
        }
        if pid_file.exists() && is_mounted(&args.mountpoint) {
            let report = MountReport {
                root: &args.root,
                mountpoint: &args.mountpoint,
                pid: child.id(),
            };
            if out.json {
                return crate::output::write_json(&report);
            }
            out.note(format_args!(
                "mounted {} on {} in the background (pid {})",
                args.root.display(),
                args.mountpoint.display(),
                child.id()
            ));
            warn_refused(&args.mountpoint, out);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    bail!("the background mount did not come up within 30 s")
}

/// Says which packages the mount at `mountpoint` refused, and why (the
/// daemon logs them too, but a background mount's log is elsewhere).
fn warn_refused(mountpoint: &Path, out: Out) {
    let path = mountpoint.join(".exos/status.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let Ok(status) = serde_json::from_str::<Status>(&text) else {
        return;
    };
    for r in &status.refused {
        out.note(format_args!(
            "refused {}: {} (`exos status {}`)",
            r.file.display(),
            r.reason,
            mountpoint.display()
        ));
    }
}

/// `crw-rw-rw- root:root` — or why it cannot be looked at.
fn describe_device(path: &str) -> String {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    match std::fs::metadata(path) {
        Err(e) => format!("not usable ({e})"),
        Ok(m) => format!(
            "{}{:o}, owner uid {} gid {}",
            if m.file_type().is_char_device() {
                "a character device, mode "
            } else {
                "not a character device, mode "
            },
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ),
    }
}

pub fn unmount(mountpoint: &Path, out: Out) -> Result<()> {
    if !is_mounted(mountpoint) {
        bail!("{}: not mounted", mountpoint.display());
    }
    let unmounted = match rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::empty()) {
        // Not root: a user's own FUSE mount is undone by the setuid
        // fusermount3, which checks that it is theirs.
        Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => {
            fusermount_unmount(mountpoint)?
        }
        other => other,
    };
    match unmounted {
        Ok(()) => out.report(
            &UnmountReport {
                unmounted: mountpoint,
            },
            |_| String::new(),
        ),
        Err(rustix::io::Errno::BUSY) => {
            let below = mounts_below(mountpoint);
            if !below.is_empty() {
                bail!(
                    "{}: busy: other file systems are mounted below it ({}); unmount those first",
                    mountpoint.display(),
                    below.join(", ")
                );
            }
            let users = processes_using(mountpoint);
            bail!(
                "{}: busy: {}; close them, or `umount -l` to detach lazily",
                mountpoint.display(),
                if users.is_empty() {
                    "a process has files open or its working directory there".to_string()
                } else {
                    format!("in use by {}", users.join(", "))
                }
            )
        }
        Err(e) => Err(std::io::Error::from(e)).with_context(|| mountpoint.display().to_string()),
    }
}

/// `fusermount3 -u MOUNTPOINT`: Ok(Err(BUSY)) when the mount is busy, an
/// error with fusermount3's words for anything else it refuses (a mount
/// that is not the user's).
fn fusermount_unmount(mountpoint: &Path) -> Result<rustix::io::Result<()>> {
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mountpoint)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "{}: only root can unmount it with umount(2), and fusermount3 did not run",
                mountpoint.display()
            )
        })?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let said = String::from_utf8_lossy(&out.stderr);
    if said.contains("Device or resource busy") {
        return Ok(Err(rustix::io::Errno::BUSY));
    }
    bail!("{}: fusermount3 -u: {}", mountpoint.display(), said.trim())
}

/// Mount points strictly below `dir` (from /proc/self/mountinfo).
fn mounts_below(dir: &Path) -> Vec<String> {
    let Ok(canon) = dir.canonicalize() else {
        return Vec::new();
    };
    exos_root::mountinfo::read()
        .into_iter()
        .filter(|m| m.mount_point != canon && m.mount_point.starts_with(&canon))
        .map(|m| m.mount_point.display().to_string())
        .collect()
}

/// Processes (pid and name) whose working directory, root or an open file
/// is below `dir`, as far as /proc lets us see.
fn processes_using(dir: &Path) -> Vec<String> {
    let Ok(canon) = dir.canonicalize() else {
        return Vec::new();
    };
    let inside = |p: &Path| p.starts_with(&canon);
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.filter_map(|e| e.ok()) {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let base = p.path();
        let mut uses = ["cwd", "root"]
            .iter()
            .any(|l| std::fs::read_link(base.join(l)).is_ok_and(|t| inside(&t)));
        if !uses {
            uses = std::fs::read_dir(base.join("fd")).is_ok_and(|fds| {
                fds.filter_map(|e| e.ok())
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| inside(&t)))
            });
        }
        if uses {
            let comm = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
            out.push(format!("pid {pid} ({})", comm.trim()));
            if out.len() == 10 {
                break;
            }
        }
    }
    out
}

/// An error if `mountpoint` is a FUSE mount whose daemon is gone (it
/// answers every access with ENOTCONN): say so and how to clean up,
/// rather than "not a directory" or "not an exos mount".
pub fn abandoned(mountpoint: &Path) -> Result<()> {
    // statfs always reaches the daemon (a stat may be answered from the
    // kernel's attribute cache for a while after the daemon died). While
    // the dying daemon's io_uring is torn down, requests end ECANCELED or
    // ECONNABORTED; once it is gone, ENOTCONN.
    match rustix::fs::statfs(mountpoint) {
        Err(
            rustix::io::Errno::NOTCONN | rustix::io::Errno::CANCELED | rustix::io::Errno::CONNABORTED,
        ) => bail!(
            "{}: a mount whose daemon is gone (it crashed or was killed); `exos unmount {}` cleans it up",
            mountpoint.display(),
            mountpoint.display()
        ),
        _ => Ok(()),
    }
}

pub fn status(mountpoint: &Path, out: Out) -> Result<()> {
    abandoned(mountpoint)?;
    let path = mountpoint.join(".exos/status.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: is an exos mount there?", path.display()))?;
    let mut v: Status = serde_json::from_str(&text).with_context(|| path.display().to_string())?;
    // Lazy packages: how much of each the block cache holds now.
    if let Some(dir) = v.block_cache.clone() {
        let layout = exos_root::Layout::new(&v.root);
        for layer in exos_root::Layer::ALL {
            for p in v
                .layers
                .get_mut(layer)
                .iter_mut()
                .filter(|p| p.lazy_from.is_some())
            {
                if let Some(Ok(Some(lazy))) = p
                    .sha256
                    .map(|sha| exos_lazy::LazyPackage::read(&layout, &sha))
                {
                    // Left out when the cache is not ours to read.
                    p.lazy_blocks =
                        exos_lazy::BlockCache::count_present(&dir, &lazy.blocks).map(|cached| {
                            exos_packagefs::mount::LazyBlocks {
                                blocks: lazy.blocks.block_count(),
                                cached,
                                bytes: lazy.record.size,
                            }
                        });
                }
            }
        }
    }
    out.result(&v, render_status)
}

fn render_status(v: &Status) -> String {
    let mut s = String::new();
    s += &format!(
        "root:        {}\nmounted on:  {} (pid {}, generation {})\n",
        v.root.display(),
        v.mountpoint.display(),
        v.pid,
        v.generation
    );
    s += &format!(
        "security:    {}nodev; setuid bits served from: {}\n",
        if v.security.nosuid {
            "nosuid, "
        } else {
            "suid, "
        },
        match v
            .security
            .setuid
            .iter()
            .filter(|(_, on)| **on)
            .map(|(l, _)| l.name())
            .collect::<Vec<_>>()
        {
            l if l.is_empty() => "no layer".to_string(),
            l => l.join(", "),
        }
    );
    s += &format!(
        "memory:      {} of {} budget\n",
        bytes(v.memory.used_bytes),
        bytes(v.memory.budget_bytes)
    );
    s += &format!(
        "live:        {}{}\n",
        match v.live.interval_ms {
            Some(ms) => format!("{} every {ms} ms", v.live.mode),
            None => v.live.mode.clone(),
        },
        v.live
            .reason
            .as_ref()
            .map(|r| format!(" (inotify failed: {r})"))
            .unwrap_or_default()
    );
    if let Some(c) = &v.exec_cache {
        s += &format!(
            "exec cache:  {} (up to {}, {})\n",
            c.dir.display(),
            bytes(c.max_bytes),
            match c.serve {
                exos_packagefs::exec_cache::ExecCacheServe::Reads => "reads answered from it",
                exos_packagefs::exec_cache::ExecCacheServe::Passthrough => "FUSE passthrough",
            }
        );
    }
    s += &format!(
        "transport:   {}\n",
        match (v.transport.kind, &v.transport.reason) {
            (exos_packagefs::TransportKind::IoUring, _) => format!(
                "FUSE over io_uring ({} queues of {})",
                v.transport.queues.unwrap_or(0),
                v.transport.depth.unwrap_or(0)
            ),
            (exos_packagefs::TransportKind::DevFuse, None) => "/dev/fuse".to_string(),
            (exos_packagefs::TransportKind::DevFuse, Some(why)) => format!("/dev/fuse ({why})"),
        }
    );
    if v.sharing.enabled {
        s += &format!(
            "sharing:     identical files as one inode ({} of {} packages digested)\n",
            v.sharing.packages_digested, v.sharing.packages
        );
    }
    let package_line = |p: &exos_packagefs::mount::ActiveStatus| {
        let mut line = format!(
            "  {} {}  ({})",
            p.name,
            p.original_version.as_deref().unwrap_or(&p.version),
            p.file
        );
        if let Some(key) = &p.signed_by {
            line += &format!("  signed by {key}");
        }
        if let Some(url) = &p.lazy_from {
            line += &format!("\n    lazy from {url}");
            if let Some(b) = &p.lazy_blocks {
                line += &format!(
                    ": {} of {} blocks cached ({} package)",
                    b.cached,
                    b.blocks,
                    crate::output::bytes(b.bytes)
                );
            }
        }
        line.push('\n');
        line
    };
    for (layer, pkgs) in v.layers.iter() {
        s += &format!("{layer}: {} active\n", pkgs.len());
        for p in pkgs {
            s += &package_line(p);
        }
    }
    for u in &v.users {
        s += &format!("user {}: {} active\n", u.user, u.packages.len());
        for p in &u.packages {
            s += &package_line(p);
        }
    }
    if !v.overlays.is_empty() {
        s += &format!("overlays: {}\n", v.overlays.len());
        for o in &v.overlays {
            s += &format!(
                "  {} ({}): {} over it ({} entries){}\n",
                o.package,
                o.layer,
                o.dir.display(),
                o.entries,
                if o.forced { ", forced" } else { "" }
            );
        }
    }
    if !v.refused.is_empty() {
        s += &format!("refused: {}\n", v.refused.len());
        for r in &v.refused {
            s += &format!("  {}: {}\n", r.file.display(), r.reason);
        }
    }
    if !v.conflicts.is_empty() {
        s += &format!("conflicts: {}\n", v.conflicts.len());
        for c in v.conflicts.iter().take(50) {
            s += &format!(
                "  {}/{}: {} wins over {}\n",
                c.layer, c.path, c.winner, c.loser
            );
        }
        if v.conflicts.len() > 50 {
            s += &format!("  … and {} more (--json for all)\n", v.conflicts.len() - 50);
        }
    }
    s
}
