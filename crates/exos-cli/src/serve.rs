//! The serving side of `exos mount`, shared by the `exos` front end (which
//! parses and checks the arguments) and `exos-mountd` (the long-running
//! process that serves the mount). They are separate programs because
//! they want different allocators: mimalloc makes resolution in `exos`
//! about twice as fast, but under it the daemon's FUSE buffers (16 MiB per
//! worker thread, allocated zeroed by fuser) are touched, costing a mount
//! ~26 MB before it holds any package; with the system allocator an empty
//! mount takes ~6 MB (see BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use exos_hpkg::Version;
use exos_manifest::Provide;
use exos_packagefs::{is_mounted, Mount, MountOptions, WatchMode};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

#[derive(Args, Clone)]
pub struct MountArgs {
    /// EXOS root holding system/, common/ and user/ packages directories.
    pub root: PathBuf,
    /// Where to mount (an existing directory).
    pub mountpoint: PathBuf,
    /// Decompressed-chunk cache shared by all packages, in MiB.
    #[arg(long, default_value_t = 8)]
    pub cache_mib: u64,
    /// FUSE worker threads (default: number of cores, at least 2).
    #[arg(long)]
    pub threads: Option<usize>,
    /// How long the kernel may cache names and attributes, in milliseconds
    /// (changes are pushed to the kernel at once regardless).
    #[arg(long, default_value_t = 60_000)]
    pub ttl_ms: u64,
    /// An API the host provides, for packages' `uses` (repeatable).
    #[arg(long = "host-api", value_name = "API[=VERSION]")]
    pub host_api: Vec<String>,
    /// Mount state N of the root (from system/state/states) instead of the
    /// current one; the current state is not changed.
    #[arg(long)]
    pub state: Option<u64>,
    /// Only root may see the mount (default: everyone, read-only).
    #[arg(long)]
    pub private: bool,
    /// Honour setuid/setgid bits of system-layer packages (mounts `suid`).
    /// Only root may use it, and only while root alone can write the system
    /// layer; common and user layers never get them.
    #[arg(long)]
    pub allow_setuid: bool,
    /// Memory all active packages together may use, in MiB; packages past
    /// it are refused (lower layers first served).
    #[arg(long, default_value_t = 1024)]
    pub max_memory_mib: u64,
    /// Always serve Haiku file attributes as `user.haiku.*` extended
    /// attributes. By default they are served only if a package active at
    /// the first request carries any; otherwise the kernel is told there
    /// are none and stops asking (faster `ls -l` and exec).
    #[arg(long)]
    pub xattrs: bool,
    /// Do not share identical files of different packages as one inode
    /// (by default their digests are computed in the background, remembered
    /// in system/state/digests, and each content is cached once).
    #[arg(long)]
    pub no_share: bool,
    /// Keep programs and libraries decompressed in DIR and answer their
    /// reads from there without decompressing: faster cold starts after a
    /// remount or reboot, warm starts unchanged. Default: $EXOS_EXEC_CACHE,
    /// else /var/cache/exos/exec for root, ~/.cache/exos/exec for others.
    #[arg(long, value_name = "DIR")]
    pub exec_cache: Option<PathBuf>,
    /// No exec cache: every program is decompressed from its package.
    #[arg(long, conflicts_with_all = ["exec_cache", "exec_cache_passthrough"])]
    pub no_exec_cache: bool,
    /// Size limit of the exec cache (least recently used entries go).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub exec_cache_mib: u64,
    /// Serve the exec cache with FUSE passthrough (the kernel reads cached
    /// programs itself): no request per page fault, but every open of any
    /// file then asks the daemon, which warm starts pay.
    #[arg(long)]
    pub exec_cache_passthrough: bool,
    /// Block cache of lazily installed packages (default: $EXOS_BLOCK_CACHE,
    /// else /var/cache/exos/blocks for root, ~/.cache/exos/blocks for
    /// others). Shared by every mount; blocks are verified on every read.
    #[arg(long, value_name = "DIR")]
    pub block_cache: Option<PathBuf>,
    /// Size limit of the block cache (least recently used blocks go).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub block_cache_mib: u64,
    /// Fetch all of every lazily installed package in the background
    /// (reads are served meanwhile; the mount then works offline).
    #[arg(long)]
    pub prefetch: bool,
    /// Notice package changes by rescanning every N ms instead of inotify
    /// (for file systems without inotify, e.g. NFS).
    #[arg(long, value_name = "N")]
    pub poll_ms: Option<u64>,
    /// Serve requests through FUSE over io_uring: `auto` when the kernel
    /// offers it (Linux 6.14+ with the fuse module's enable_uring set),
    /// `always` (refuse to mount without it) or `never` (/dev/fuse only).
    /// `exos status` shows which one a mount uses.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = IoUringArg::Auto)]
    pub io_uring: IoUringArg,
    /// The layers whose encrypted packages the mount's --key keys decrypt,
    /// comma-separated: of system, common and user (the shared user layer).
    /// A key serves a layer only while root alone can add files to its
    /// packages directory, and never a user's own layer (users/NAME):
    /// whoever can place a file there would read what the key protects.
    #[arg(
        long,
        value_name = "LAYERS",
        value_delimiter = ',',
        default_value = "system,common"
    )]
    pub key_layers: Vec<exos_root::Layer>,
    /// Run in the background; requires --pid-file, logs go to --log-file.
    #[arg(long, requires = "pid_file")]
    pub daemon: bool,
    /// With --daemon: serve the root file system from an initramfs — the
    /// daemon runs as `@exos-mountd` (argv[0] starting with `@`: systemd's
    /// shutdown leaves storage daemons of the root file system running
    /// until it unmounts them).
    #[arg(long, requires = "daemon")]
    pub storage_daemon: bool,
    /// Serve from inside DIR: the serving process changes its root
    /// directory to DIR first (every path given must be inside it), so the
    /// mount keeps working when an initramfs makes DIR the root file system
    /// (switch_root) and empties its own.
    #[arg(long, value_name = "DIR")]
    pub chroot: Option<PathBuf>,
    /// Write the serving process's pid here (removed on exit).
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Append logs here instead of standard error.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

/// `--io-uring`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoUringArg {
    Auto,
    Always,
    Never,
}

impl IoUringArg {
    fn mode(self) -> exos_packagefs::IoUringMode {
        match self {
            IoUringArg::Auto => exos_packagefs::IoUringMode::Auto,
            IoUringArg::Always => exos_packagefs::IoUringMode::Always,
            IoUringArg::Never => exos_packagefs::IoUringMode::Never,
        }
    }

    fn as_arg(self) -> &'static str {
        match self {
            IoUringArg::Auto => "auto",
            IoUringArg::Always => "always",
            IoUringArg::Never => "never",
        }
    }
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

/// `--chroot DIR`: changes this process's root directory to DIR and its
/// paths to what they are inside it. Called by `exos-mountd` before it
/// serves, once its binary and libraries are loaded.
pub fn enter_chroot(args: &mut MountArgs) -> Result<()> {
    let Some(dir) = args.chroot.clone() else {
        return Ok(());
    };
    let dir = dir
        .canonicalize()
        .with_context(|| dir.display().to_string())?;
    let inside = |p: &Path| -> Result<PathBuf> {
        let p = std::path::absolute(p)?;
        let rest = p.strip_prefix(&dir).map_err(|_| {
            anyhow::anyhow!(
                "--chroot {}: {} is not inside it",
                dir.display(),
                p.display()
            )
        })?;
        Ok(Path::new("/").join(rest))
    };
    args.root = inside(&args.root)?;
    args.mountpoint = inside(&args.mountpoint)?;
    for p in [
        &mut args.pid_file,
        &mut args.log_file,
        &mut args.block_cache,
        &mut args.exec_cache,
    ]
    .into_iter()
    .flatten()
    {
        *p = inside(p)?;
    }
    rustix::process::chroot(&dir).with_context(|| format!("--chroot {}", dir.display()))?;
    std::env::set_current_dir("/")?;
    args.chroot = None;
    Ok(())
}

/// Serves a mount in the foreground until a signal (SIGINT, SIGTERM,
/// SIGHUP) or an unmount from outside; writes the pid file once mounted and
/// removes it on the way out. What `exos-mountd` runs.
pub fn serve(
    args: &MountArgs,
    keys: exos_hpkg::crypt::KeyRing,
    settings: &crate::settings::Settings,
    quiet: bool,
    stderr_until_ready: bool,
) -> Result<()> {
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
    options.share_identical = !args.no_share;
    options.exec_cache = args.exec_cache.as_ref().map(|d| {
        (
            std::path::absolute(d).unwrap_or_else(|_| d.clone()),
            args.exec_cache_mib << 20,
        )
    });
    if args.exec_cache_passthrough {
        options.exec_cache_serve = exos_packagefs::exec_cache::ExecCacheServe::Passthrough;
    }
    options.block_cache = args
        .block_cache
        .as_ref()
        .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
        .or_else(|| settings.block_cache.clone())
        .map(|d| (d, args.block_cache_mib << 20));
    options.timeouts = settings.timeouts;
    options.prefetch = args.prefetch;
    options.io_uring = args.io_uring.mode();
    options.keys = exos_packagefs::activate::MountKeys {
        ring: keys,
        layers: exos_root::PerLayer::from_fn(|l| args.key_layers.contains(&l)),
    };
    if args.xattrs {
        options.xattrs = exos_packagefs::fs::XattrPolicy::Always;
    }
    if let Some(ms) = args.poll_ms {
        options.watch = WatchMode::Poll(Duration::from_millis(ms.max(10)));
    }
    if let Some(n) = args.state {
        let list = exos_root::Layout::new(&args.root).state_file(n);
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
        exos_root::write_atomically(pid_file, format!("{}\n", std::process::id()).as_bytes())
            .with_context(|| pid_file.display().to_string())?;
    }
    if stderr_until_ready {
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .context("/dev/null")?;
        rustix::stdio::dup2_stderr(&null).context("pointing stderr at /dev/null")?;
        rustix::stdio::dup2_stdout(&null).context("pointing stdout at /dev/null")?;
    }
    // A service manager (systemd's Type=notify) learns it is serving.
    let manager = crate::notify::ServiceManager::new(settings.notify_socket.clone());
    if let Err(e) = manager.notify(&format!(
        "READY=1\nMAINPID={}\nSTATUS=serving {} packages at {}",
        std::process::id(),
        r.active,
        args.mountpoint.display()
    )) {
        tracing::warn!("telling the service manager it is ready: {e}");
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
    let _ = manager.notify("STOPPING=1\nSTATUS=unmounting");
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
    /// The arguments of `exos-mountd` for these options: everything but
    /// `--daemon`, every path made absolute (a background daemon works from
    /// `/`, so that it never keeps a directory busy).
    pub fn daemon_argv(&self) -> Result<Vec<std::ffi::OsString>> {
        let abs = |p: &Path| {
            std::path::absolute(p).with_context(|| format!("{}: cannot resolve", p.display()))
        };
        let mut a: Vec<std::ffi::OsString> = Vec::new();
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
        if self.xattrs {
            a.push("--xattrs".into());
        }
        if self.no_share {
            a.push("--no-share".into());
        }
        a.push(format!("--io-uring={}", self.io_uring.as_arg()).into());
        if let Some(d) = &self.exec_cache {
            let d = std::path::absolute(d).unwrap_or_else(|_| d.clone());
            a.push("--exec-cache".into());
            a.push(d.into_os_string());
            a.push(format!("--exec-cache-mib={}", self.exec_cache_mib).into());
            if self.exec_cache_passthrough {
                a.push("--exec-cache-passthrough".into());
            }
        }
        // The daemon works from `/` and may not see the caller's
        // environment: the block cache is passed explicitly (`exos mount`
        // fills in the default).
        let blocks = self
            .block_cache
            .as_ref()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()));
        if let Some(blocks) = blocks {
            a.push("--block-cache".into());
            a.push(blocks.into_os_string());
        }
        a.push(format!("--block-cache-mib={}", self.block_cache_mib).into());
        if self.prefetch {
            a.push("--prefetch".into());
        }
        let layers: Vec<&str> = self.key_layers.iter().map(|l| l.name()).collect();
        a.push(format!("--key-layers={}", layers.join(",")).into());
        if let Some(ms) = self.poll_ms {
            a.push(format!("--poll-ms={ms}").into());
        }
        if let Some(d) = &self.chroot {
            a.push("--chroot".into());
            a.push(abs(d)?.into());
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
