//! `exos mount`, `exos unmount`, `exos status`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use exos_hpkg::Version;
use exos_manifest::Provide;
use exos_packagefs::{is_mounted, Mount, MountOptions, Status, WatchMode};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

#[derive(Args)]
pub struct MountArgs {
    /// EXOS root holding system/, common/ and user/ packages directories.
    root: PathBuf,
    /// Where to mount (an existing directory).
    mountpoint: PathBuf,
    /// Decompressed-chunk cache shared by all packages, in MiB.
    #[arg(long, default_value_t = 8)]
    cache_mib: u64,
    /// FUSE worker threads (default: number of cores, at least 2).
    #[arg(long)]
    threads: Option<usize>,
    /// How long the kernel may cache names and attributes, in milliseconds
    /// (changes are pushed to the kernel at once regardless).
    #[arg(long, default_value_t = 60_000)]
    ttl_ms: u64,
    /// An API the host provides, for packages' `uses` (repeatable).
    #[arg(long = "host-api", value_name = "API[=VERSION]")]
    host_api: Vec<String>,
    /// Mount state N of the root (from system/state/states) instead of the
    /// current one; the current state is not changed.
    #[arg(long)]
    state: Option<u64>,
    /// Only root may see the mount (default: everyone, read-only).
    #[arg(long)]
    private: bool,
    /// Honour setuid/setgid bits of system-layer packages (mounts `suid`).
    /// Only root may use it, and only while root alone can write the system
    /// layer; common and user layers never get them.
    #[arg(long)]
    allow_setuid: bool,
    /// Memory all active packages together may use, in MiB; packages past
    /// it are refused (lower layers first served).
    #[arg(long, default_value_t = 1024)]
    max_memory_mib: u64,
    /// Notice package changes by rescanning every N ms instead of inotify
    /// (for file systems without inotify, e.g. NFS).
    #[arg(long, value_name = "N")]
    poll_ms: Option<u64>,
    /// Run in the background; requires --pid-file, logs go to --log-file.
    #[arg(long, requires = "pid_file")]
    daemon: bool,
    /// Write the serving process's pid here (removed on exit).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Append logs here instead of standard error.
    #[arg(long)]
    log_file: Option<PathBuf>,
}

pub fn parse_host_api(h: &str) -> Result<Provide> {
    let (api, version) = match h.split_once('=') {
        Some((a, v)) => (
            a.trim(),
            Some(Version::parse(v).map_err(|e| anyhow::anyhow!("--host-api {h:?}: {e}"))?),
        ),
        None => (h.trim(), None),
    };
    exos_hpkg::info::check_name(api).map_err(|e| anyhow::anyhow!("--host-api {h:?}: {e}"))?;
    Ok(Provide {
        api: api.to_string(),
        version,
        compatible: None,
    })
}

fn init_logging(log_file: Option<&Path>, quiet: bool) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    // fuser's own warnings are about its teardown (a second unmount after
    // ours fails with EINVAL) or requests we answer on purpose: noise that
    // reads like failure. EXOS_LOG=fuser=warn brings them back.
    let filter = EnvFilter::try_from_env("EXOS_LOG").unwrap_or_else(|_| {
        EnvFilter::new(if quiet {
            "warn,fuser=error"
        } else {
            "info,fuser=error"
        })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| path.display().to_string())?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

pub fn mount(args: &MountArgs, quiet: bool) -> Result<()> {
    if !args.root.is_dir() {
        bail!("{}: not a directory (an EXOS root has system/packages, common/packages, user/packages)", args.root.display());
    }
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
    if args.daemon {
        return spawn_daemon(args, quiet);
    }
    init_logging(args.log_file.as_deref(), quiet)?;
    let mut options = MountOptions::new(args.root.canonicalize()?, args.mountpoint.canonicalize()?);
    options.cache_bytes = args.cache_mib << 20;
    if let Some(t) = args.threads {
        options.threads = t.max(1);
    }
    options.ttl = Duration::from_millis(args.ttl_ms);
    options.allow_other = !args.private;
    if args.allow_setuid && !rustix::process::geteuid().is_root() {
        bail!("--allow-setuid: only root may serve setuid programs");
    }
    options.privileges.setuid_from_system = args.allow_setuid;
    options.memory_budget = args.max_memory_mib << 20;
    if let Some(ms) = args.poll_ms {
        options.watch = WatchMode::Poll(Duration::from_millis(ms.max(10)));
    }
    if let Some(n) = args.state {
        let list = args
            .root
            .join(exos_manager::STATES_DIR)
            .join(format!("{n:06}.list"));
        if !list.is_file() {
            bail!("{}: no state {n} (see `exos state list`)", list.display());
        }
        options.state_list = Some(list.canonicalize()?);
    }
    options.host_apis = args
        .host_api
        .iter()
        .map(|h| parse_host_api(h))
        .collect::<Result<_>>()?;

    let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    let mounted = Mount::start(options).with_context(|| {
        format!(
            "mounting {} on {}",
            args.root.display(),
            args.mountpoint.display()
        )
    })?;
    let r = &mounted.initial;
    tracing::info!(
        "mounted {} on {}: {} packages active, {} refused, {} conflicts, {} nodes ({} KiB index) in {:.3} s",
        args.root.display(),
        args.mountpoint.display(),
        r.active,
        r.refused.len(),
        r.conflicts,
        r.nodes,
        r.view_bytes / 1024,
        r.seconds
    );
    for (path, reason) in &r.refused {
        tracing::warn!("refused {}: {reason}", path.display());
    }
    if let Some(pid_file) = &args.pid_file {
        exos_manager::write_atomically(pid_file, format!("{}\n", std::process::id()).as_bytes())?;
    }
    // Wait for a signal, or for the mount to go away (exos unmount, umount).
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    let mut signals_iter = signals;
    std::thread::spawn(move || {
        if let Some(sig) = signals_iter.forever().next() {
            let _ = tx.send(Some(sig));
        }
    });
    let ended = mounted.ended();
    std::thread::spawn(move || {
        while !ended.wait(Duration::from_secs(3600)) {}
        let _ = tx2.send(None);
    });
    match rx.recv() {
        Ok(Some(sig)) => tracing::info!("signal {sig}: unmounting"),
        _ => tracing::info!("unmounted from outside"),
    }
    handle.close();
    let r = mounted.unmount();
    if let Some(pid_file) = &args.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    match r {
        Ok(()) => {
            tracing::info!("unmounted {}", args.mountpoint.display());
            Ok(())
        }
        // Already gone (unmounted from outside).
        Err(_) if !is_mounted(&args.mountpoint) => Ok(()),
        Err(e) => Err(e).context("unmounting"),
    }
}

impl MountArgs {
    /// The arguments of the serving process a `--daemon` mount starts: these
    /// options without `--daemon`, every path made absolute (the daemon
    /// works from `/`, so that it never keeps a directory busy).
    fn daemon_argv(&self) -> Result<Vec<std::ffi::OsString>> {
        let abs = |p: &Path| {
            std::path::absolute(p).with_context(|| format!("{}: cannot resolve", p.display()))
        };
        let mut a: Vec<std::ffi::OsString> = vec!["mount".into()];
        a.push(abs(&self.root)?.into());
        a.push(abs(&self.mountpoint)?.into());
        a.push(format!("--cache-mib={}", self.cache_mib).into());
        if let Some(t) = self.threads {
            a.push(format!("--threads={t}").into());
        }
        a.push(format!("--ttl-ms={}", self.ttl_ms).into());
        for h in &self.host_api {
            a.push(format!("--host-api={h}").into());
        }
        if let Some(n) = self.state {
            a.push(format!("--state={n}").into());
        }
        if self.private {
            a.push("--private".into());
        }
        if self.allow_setuid {
            a.push("--allow-setuid".into());
        }
        a.push(format!("--max-memory-mib={}", self.max_memory_mib).into());
        if let Some(ms) = self.poll_ms {
            a.push(format!("--poll-ms={ms}").into());
        }
        if let Some(p) = &self.pid_file {
            a.push("--pid-file".into());
            a.push(abs(p)?.into());
        }
        if let Some(p) = &self.log_file {
            a.push("--log-file".into());
            a.push(abs(p)?.into());
        }
        Ok(a)
    }
}

/// Starts `exos mount` without `--daemon` in a new process group, working
/// from `/` with absolute paths, and returns once the mount is up (or
/// reports why it is not).
fn spawn_daemon(args: &MountArgs, quiet: bool) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("locating the exos binary")?;
    let mut argv = args.daemon_argv()?;
    if quiet {
        argv.insert(0, "--quiet".into());
    }
    let log = match &args.log_file {
        Some(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| p.display().to_string())?,
        None => std::fs::File::create("/dev/null")?,
    };
    let pid_file = std::path::absolute(
        args.pid_file
            .as_ref()
            .context("--daemon needs --pid-file")?,
    )?;
    let _ = std::fs::remove_file(&pid_file);
    let mut child = std::process::Command::new(exe)
        .args(&argv)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the background mount")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the background mount exited ({status}); see {}",
                args.log_file
                    .as_ref()
                    .map_or("its log (use --log-file)".to_string(), |p| p
                        .display()
                        .to_string())
            );
        }
        if pid_file.exists() && is_mounted(&args.mountpoint) {
            if !quiet {
                eprintln!(
                    "exos: mounted {} on {} in the background (pid {})",
                    args.root.display(),
                    args.mountpoint.display(),
                    child.id()
                );
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    bail!("the background mount did not come up within 30 s")
}

pub fn unmount(mountpoint: &Path) -> Result<()> {
    if !is_mounted(mountpoint) {
        bail!("{}: not mounted", mountpoint.display());
    }
    match rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::empty()) {
        Ok(()) => Ok(()),
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

/// Mount points strictly below `dir` (from /proc/self/mountinfo).
fn mounts_below(dir: &Path) -> Vec<String> {
    let Ok(canon) = dir.canonicalize() else {
        return Vec::new();
    };
    let prefix = format!("{}/", canon.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m.starts_with(&prefix))
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

pub fn status(mountpoint: &Path, json: bool) -> Result<()> {
    let path = mountpoint.join(".exos/status.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: is an exos mount there?", path.display()))?;
    if json {
        return crate::write_stdout(&text);
    }
    let v: Status = serde_json::from_str(&text).with_context(|| path.display().to_string())?;
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
            .map(|(l, _)| l)
            .collect::<Vec<_>>()
        {
            l if l.is_empty() => "no layer".to_string(),
            l => l.join(", "),
        }
    );
    s += &format!(
        "memory:      {} of {} budget\n",
        crate::human_bytes(v.memory.used_bytes),
        crate::human_bytes(v.memory.budget_bytes)
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
    for (layer, pkgs) in v.layers.iter() {
        s += &format!("{layer}: {} active\n", pkgs.len());
        for p in pkgs {
            s += &format!("  {} {}  ({})\n", p.name, p.version, p.file);
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
    crate::write_stdout(&s)
}
