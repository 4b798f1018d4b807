//! `exos boot`: boots a state of an EXOS root as a container with
//! `systemd-nspawn`, systemd as PID 1 — `/usr` served by an exos mount of
//! that state, everything else (`/etc`, `/var`, `/root`, `/home`) in the
//! machine's persistent directory (`ROOT/data/machine`).
//!
//! * **Factory defaults.** The packages' own `/etc` and `/var` are the
//!   factory defaults: they are shown read-only at `/run/exos/factory` and
//!   a tmpfiles.d file written into the machine's `/etc` makes
//!   `systemd-tmpfiles` copy every one that is missing at each boot (an
//!   empty `/etc` boots; a changed file is kept; a file new in an upgrade
//!   appears). Users and groups come from systemd-sysusers, the machine id
//!   from systemd's first boot.
//! * **Boot counting.** A boot of state N counts a try first; a unit the
//!   machine runs once `boot-complete.target` is reached marks N good (a
//!   file in a directory bound for this boot only). A current state that
//!   failed `--max-tries` boots in a row and never booted well is passed
//!   over for the state that booted well most recently (see
//!   [`exos_root::boot::BootRecord::choose`]).
//! * **Hostile machine.** The machine's root user owns its `/etc`: what
//!   this writes there is written beneath directory descriptors without
//!   following links ([`exos_root::walk`]), and its verdict is only whether
//!   a regular file exists where the unit writes it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use exos_root::boot::{BootChoice, BootRecord};
use exos_root::walk::{open_beneath, WalkedDir};
use exos_root::Layout;
use serde::Serialize;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::output::Out;

/// Where the packages' `/etc` and `/var` are shown inside the machine.
pub const FACTORY: &str = "/run/exos/factory";
/// Where the root a machine booted from is shown inside it (writable: its
/// `exos install`, `upgrade` and `rollback` make states for the next
/// boot); exos's default root there.
pub const BOOTED_ROOT: &str = "/run/exos/root";
/// The number of the state a machine booted, inside it.
pub const BOOTED_STATE: &str = "/run/exos/booted-state";
/// Where the boot-complete unit leaves its verdict inside the machine.
pub const VERDICT_DIR: &str = "/run/exos/boot";
/// The tmpfiles.d file that copies the factory defaults into place: named
/// to sort last, and naming no path another tmpfiles.d file names (those
/// lines win, as systemd's own and the packages' rules should).
const TMPFILES_NAME: &str = "zz-exos-factory.conf";
/// The unit that marks a boot good.
const COMPLETE_UNIT: &str = "exos-boot-complete.service";

/// Options of `exos boot`.
#[derive(Debug, clap::Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub root: crate::RootArg,
    /// The state to boot (default: the current one, unless it failed
    /// --max-tries boots in a row and never booted well: then the state
    /// that booted well most recently).
    #[arg(long)]
    pub state: Option<u64>,
    /// Failed boots of the current state before it is passed over.
    #[arg(long, default_value_t = exos_root::boot::DEFAULT_MAX_TRIES)]
    pub max_tries: u32,
    /// Serve the setuid and setgid bits of the system layer's programs
    /// (sudo, su, passwd) — `exos mount --allow-setuid`, with its rules:
    /// only while the system packages directory and its parents are root's
    /// and writable by root alone. Without it /usr is nosuid.
    #[arg(long)]
    pub allow_setuid: bool,
    /// The machine's persistent directory: its /etc, /var, /root and /home
    /// (default: ROOT/data/machine).
    #[arg(long, value_name = "DIR")]
    pub machine: Option<PathBuf>,
    /// The machine's name (nspawn's --machine; default: the root directory's
    /// name).
    #[arg(long)]
    pub name: Option<String>,
    /// From an initramfs: make DIR (the machine's root file system, as the
    /// initramfs mounted it) bootable instead of running systemd-nspawn —
    /// the state mounted at /run/exos/mnt by the root storage daemon
    /// (`@exos-mountd`), its /usr bound onto DIR/usr, the factory defaults
    /// and the boot-complete verdict under /run/exos — then return, for the
    /// initramfs to switch root into DIR. ROOT must be on DIR's file system.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["machine", "name", "nspawn"])]
    pub switch_root: Option<PathBuf>,
    /// With --switch-root: the program the initramfs starts in DIR (its
    /// `init=`). A state in which it is not a program is refused — the
    /// boot fails, counted as a failed try of that state — instead of
    /// leaving the initramfs to start a shell as PID 1.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/sbin/init",
        requires = "switch_root"
    )]
    pub init: PathBuf,
    /// More systemd-nspawn arguments (after `--`), e.g. `--console=pipe`.
    #[arg(last = true, value_name = "NSPAWN_ARG")]
    pub nspawn: Vec<OsString>,
}

/// What `exos boot` did.
#[derive(Debug, Serialize)]
pub struct BootReport {
    /// The state booted, and the one passed over for it if any.
    pub choice: BootChoice,
    /// Whether the machine reached `boot-complete.target`.
    pub booted_well: bool,
    /// systemd-nspawn's exit code (0: the machine powered off).
    pub exit_code: Option<i32>,
}

/// `exos boot`.
pub fn boot(args: &BootArgs, out: Out) -> Result<()> {
    let root = std::fs::canonicalize(args.root.path()?)
        .with_context(|| format!("{}", args.root.path().unwrap_or(Path::new("")).display()))?;
    let layout = Layout::new(&root);
    let r = crate::users::read(&root, None)?;
    let states = r.states()?;
    let record_path = layout.boot_record();
    let _lock = lock_boots(&layout)?;
    let mut record = BootRecord::read(&record_path)?;
    if args.switch_root.is_some() {
        // The verdict of the previous boot, left on disk by its unit.
        take_persistent_verdict(&root, &mut record)?;
    }
    let choice = match args.state {
        Some(n) if states.contains(&n) => BootChoice {
            state: n,
            passed_over: None,
        },
        Some(n) => bail!(
            "{}: there is no state {n} (exos state list shows them)",
            root.display()
        ),
        None => {
            let Some(current) = r.current_number()? else {
                bail!(
                    "{}: the current state is not a numbered one; boot one with --state N",
                    root.display()
                );
            };
            record.choose(current, &states, args.max_tries)
        }
    };
    if let Some(p) = choice.passed_over {
        out.note(format!(
            "state {} failed {} boots in a row and never booted well: booting state {}, the last that booted well",
            p.state, p.tries, choice.state
        ));
    }
    record.tried(choice.state, now());
    record
        .write(&record_path)
        .with_context(|| record_path.display().to_string())?;
    if let Some(dir) = &args.switch_root {
        return switch_root(&root, dir, choice, args.allow_setuid, &args.init, out);
    }

    // The mount and the binds exist only for this boot's processes (and
    // descriptors opened before this would name the host's mounts).
    exos_view::private_mounts().context("exos boot runs as root")?;
    let machine = machine_dir(&root, args.machine.as_deref())?;
    let runtime = tempfile::Builder::new()
        .prefix("exos-boot-")
        .tempdir_in(runtime_base())
        .context("making the boot's runtime directory")?;
    let mnt = runtime.path().join("mnt");
    let verdict = runtime.path().join("verdict");
    std::fs::create_dir(&mnt)?;
    std::fs::create_dir(&verdict)?;
    let booted_state = runtime.path().join("booted-state");
    std::fs::write(&booted_state, format!("{}\n", choice.state))?;

    mount_state(&root, &mnt, runtime.path(), choice.state, args.allow_setuid)?;
    let shown = Shown {
        verdict: &verdict,
        booted_state: &booted_state,
    };
    let result = run_machine(args, &root, &machine, &mnt, shown, out);
    // The bind of /usr holds the mount: gone first, or the unmount finds
    // it busy and the daemon lives on.
    let _ = rustix::mount::unmount(
        machine.path.join("usr"),
        rustix::mount::UnmountFlags::DETACH,
    );
    unmount(&mnt);
    let exit_code = result?;

    let booted_well = verdict_given(&verdict);
    let mut record = BootRecord::read(&record_path)?;
    if booted_well {
        record.booted_well(choice.state);
        record
            .write(&record_path)
            .with_context(|| record_path.display().to_string())?;
    }
    let report = BootReport {
        choice,
        booted_well,
        exit_code,
    };
    if !booted_well {
        let tries = record.states.get(&choice.state).map_or(0, |o| o.tries);
        bail!(
            "state {} did not reach boot-complete.target ({tries} failed {} in a row{})",
            choice.state,
            if tries == 1 { "boot" } else { "boots" },
            match exit_code {
                Some(0) | None => String::new(),
                Some(code) => format!("; systemd-nspawn exited with {code}"),
            }
        );
    }
    out.report(&report, |r| {
        format!("State {} booted well.\n", r.choice.state)
    })
}

/// Where a machine booted through an initramfs leaves its verdict
/// (persistent: it is read at the next boot): `ROOT/data/boot-verdict`.
fn persistent_verdict_dir(root: &Path) -> Result<WalkedDir> {
    Ok(open_beneath(root, &[exos_root::DATA_DIR])?.make_dir("boot-verdict", 0o700)?)
}

/// Marks the state tried last as good if its boot left a verdict, and
/// clears the verdict.
fn take_persistent_verdict(root: &Path, record: &mut BootRecord) -> Result<()> {
    let dir = persistent_verdict_dir(root)?;
    if !verdict_given(&dir.path) {
        return Ok(());
    }
    let last = record
        .states
        .iter()
        .max_by_key(|(n, o)| (o.last_try, **n))
        .map(|(n, _)| *n);
    if let Some(state) = last {
        record.booted_well(state);
    }
    let complete = dir.path.join("complete");
    std::fs::remove_file(&complete).with_context(|| complete.display().to_string())?;
    Ok(())
}

/// `--switch-root DIR`: everything but the machine's start, for an
/// initramfs (mounts in its namespace, under its /run, which it moves into
/// DIR before switching root).
fn switch_root(
    root: &Path,
    dir: &Path,
    choice: BootChoice,
    allow_setuid: bool,
    init: &Path,
    out: Out,
) -> Result<()> {
    // The daemon serves from inside DIR (--chroot): once DIR is the root
    // file system and the initramfs is emptied, its paths still resolve.
    // Its mount point is DIR's /run/exos/mnt, covered later by the /run the
    // initramfs moves there (the binds below hold the mount).
    let machine = machine_dir(root, Some(dir))?;
    let served = dir.join("run/exos");
    let mnt = served.join("mnt");
    std::fs::create_dir_all(&mnt).with_context(|| mnt.display().to_string())?;
    // It opens /dev/fuse inside DIR, whose /dev the initramfs fills only
    // later: lent for the start, taken back at once (it keeps the device).
    let dev = dir.join("dev");
    rustix::mount::mount_bind_recursive("/dev", &dev)
        .with_context(|| format!("binding /dev onto {}", dev.display()))?;
    let started = Command::new(std::env::current_exe().context("locating the exos binary")?)
        .arg("mount")
        .arg(root)
        .arg(&mnt)
        .args(["--state", &choice.state.to_string()])
        .args(["--daemon", "--storage-daemon", "--no-exec-cache", "-q"])
        .args(allow_setuid.then_some("--allow-setuid"))
        .arg("--chroot")
        .arg(dir)
        .arg("--block-cache")
        .arg(root.join("data/cache/blocks"))
        .arg("--pid-file")
        .arg(served.join("mountd.pid"))
        .arg("--log-file")
        .arg(served.join("mountd.log"))
        .output()
        .context("starting exos mount");
    rustix::mount::unmount(&dev, rustix::mount::UnmountFlags::DETACH)
        .with_context(|| format!("unmounting {}", dev.display()))?;
    let o = started?;
    if !o.status.success() {
        bail!(
            "mounting state {} of {}: {}",
            choice.state,
            root.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let view = mnt.join(exos_packagefs::view::MERGED_SYSTEM);
    prepare_machine(&machine, &view)?;
    if let Err(why) = check_init(&machine, init) {
        // Nothing of this state stays mounted: the daemon ends with the
        // last of its mounts.
        let _ = rustix::mount::unmount(dir.join("usr"), rustix::mount::UnmountFlags::DETACH);
        let _ = rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH);
        bail!(
            "state {} of {} has no init: {} ({why}); this boot counts as a failed try of it",
            choice.state,
            root.display(),
            init.display()
        );
    }
    let run = Path::new("/run/exos");
    for part in ["etc", "var"] {
        let at = run.join("factory").join(part);
        std::fs::create_dir_all(&at).with_context(|| at.display().to_string())?;
        rustix::mount::mount_bind(view.join(part), &at)
            .with_context(|| format!("binding {}", at.display()))?;
    }
    let verdict = run.join("boot");
    std::fs::create_dir_all(&verdict)?;
    rustix::mount::mount_bind(&persistent_verdict_dir(root)?.path, &verdict)
        .with_context(|| format!("binding {}", verdict.display()))?;
    let shown = Path::new(BOOTED_ROOT);
    std::fs::create_dir_all(shown)?;
    rustix::mount::mount_bind(root, shown).with_context(|| format!("binding {BOOTED_ROOT}"))?;
    std::fs::write(BOOTED_STATE, format!("{}\n", choice.state))
        .with_context(|| BOOTED_STATE.to_string())?;
    // The binds hold the file system: the mount itself is detached, or
    // the /run moved over it would hide a mount nothing can unmount at
    // shutdown. Unmounting the last bind ends the daemon.
    rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH)
        .with_context(|| format!("detaching {}", mnt.display()))?;
    out.note(format!(
        "state {} of {} is ready in {} (/usr from its packages)",
        choice.state,
        root.display(),
        dir.display()
    ));
    Ok(())
}

/// Whether `init` names a program in the machine: resolved as the machine
/// will resolve it (its links taken inside it, as after the switch), a
/// regular file someone may execute.
fn check_init(machine: &WalkedDir, init: &Path) -> std::result::Result<(), String> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    let relative = init.strip_prefix("/").unwrap_or(init);
    let fd = rustix::fs::openat2(
        machine.fd(),
        relative,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| std::io::Error::from(e).to_string())?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| std::io::Error::from(e).to_string())?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err("not a regular file".into());
    }
    if stat.st_mode & 0o111 == 0 {
        return Err("not executable".into());
    }
    Ok(())
}

/// The boot this system is running, seen from inside a machine `exos boot`
/// booted, when `root` is the root it booted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningBoot {
    /// The state booted.
    pub state: u64,
    /// Whether this boot already reached `boot-complete.target`.
    pub booted_well: bool,
}

/// [`RunningBoot`] for `root`, if this system booted from it.
pub fn running_boot(root: &Path) -> Option<RunningBoot> {
    let booted = std::fs::canonicalize(BOOTED_ROOT).ok()?;
    if std::fs::canonicalize(root).ok()? != booted {
        return None;
    }
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::fs::File::open(BOOTED_STATE).ok()?, 64),
        &mut text,
    )
    .ok()?;
    let state = text.trim().parse().ok()?;
    Some(RunningBoot {
        state,
        booted_well: verdict_given(Path::new(VERDICT_DIR)),
    })
}

/// Holds `system/state/boot.lock`: one boot of a root at a time.
fn lock_boots(layout: &Layout) -> Result<std::fs::File> {
    let path = layout.state_dir().join("boot.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            bail!(
                "{}: another exos boot of this root is running",
                path.display()
            )
        }
        Err(e) => Err(std::io::Error::from(e)).with_context(|| path.display().to_string()),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn runtime_base() -> PathBuf {
    let run = Path::new("/run");
    if run.is_dir() {
        run.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Opens (making it if missing) the machine's persistent directory and
/// lays out what a merged-/usr system needs at its top; `/usr` itself is a
/// mount point.
fn machine_dir(root: &Path, chosen: Option<&Path>) -> Result<WalkedDir> {
    let dir = match chosen {
        None => open_beneath(root, &[exos_root::DATA_DIR])?.make_dir("machine", 0o755)?,
        Some(path) => {
            std::fs::create_dir_all(path).with_context(|| path.display().to_string())?;
            open_beneath(path, &[])?
        }
    };
    if dir.stat.st_uid != 0 || dir.stat.st_mode & 0o022 != 0 {
        bail!(
            "{}: the machine's directory must be root's and writable by no one else",
            dir.path.display()
        );
    }
    // (dev, proc, sys and run are mount points: systemd-nspawn makes
    // them itself, an initramfs needs them there.)
    for name in [
        "usr", "etc", "var", "home", "srv", "opt", "mnt", "media", "dev", "proc", "sys", "run",
    ] {
        dir.make_dir(name, 0o755)?;
    }
    dir.make_dir("root", 0o700)?;
    if dir.open_dir("tmp").is_err() {
        // Made here (mkdir's mode goes through the umask): its mode set on
        // the directory opened without following links. One that was there
        // is the machine's own, left as it is.
        let tmp = dir.make_dir("tmp", 0o1777)?;
        rustix::fs::fchmod(tmp.fd(), rustix::fs::Mode::from_raw_mode(0o1777))
            .with_context(|| tmp.path.display().to_string())?;
    }
    for name in exos_deb::import::MERGED_INTO_USR {
        dir.symlink_if_missing(&format!("usr/{name}"), name)?;
    }
    Ok(dir)
}

fn mount_state(
    root: &Path,
    mnt: &Path,
    runtime: &Path,
    state: u64,
    allow_setuid: bool,
) -> Result<()> {
    let exe = std::env::current_exe().context("locating the exos binary")?;
    let o = Command::new(exe)
        .arg("mount")
        .arg(root)
        .arg(mnt)
        .args(["--state", &state.to_string(), "--daemon", "-q"])
        .args(allow_setuid.then_some("--allow-setuid"))
        .arg("--pid-file")
        .arg(runtime.join("mount.pid"))
        .arg("--log-file")
        .arg(runtime.join("mount.log"))
        .output()
        .context("starting exos mount")?;
    if !o.status.success() {
        bail!(
            "mounting state {state} of {}: {}",
            root.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

fn unmount(mnt: &Path) {
    if let Ok(exe) = std::env::current_exe() {
        let _ = Command::new(exe).args(["unmount", "-q"]).arg(mnt).status();
    }
}

/// Writes the machine's factory-defaults file and boot-complete unit,
/// binds the state's `/usr`, and runs systemd-nspawn until the machine
/// powers off; its exit code.
/// What `exos boot` binds into the machine under `/run/exos` besides the
/// root: the verdict directory (writable) and the booted state's number.
#[derive(Clone, Copy)]
struct Shown<'a> {
    verdict: &'a Path,
    booted_state: &'a Path,
}

fn run_machine(
    args: &BootArgs,
    root: &Path,
    machine: &WalkedDir,
    mnt: &Path,
    shown: Shown<'_>,
    out: Out,
) -> Result<Option<i32>> {
    let view = mnt.join(exos_packagefs::view::MERGED_SYSTEM);
    prepare_machine(machine, &view)?;
    let name = args.name.clone().unwrap_or_else(|| machine_name(root));
    let mut cmd = Command::new("systemd-nspawn");
    cmd.arg("--directory").arg(&machine.path).args([
        "--boot",
        "--register=no",
        "--keep-unit",
        "--machine",
        &name,
    ]);
    for part in ["etc", "var"] {
        let mut bind = OsString::from("--bind-ro=");
        bind.push(view.join(part));
        bind.push(format!(":{FACTORY}/{part}"));
        cmd.arg(bind);
    }
    let mut bind = OsString::from("--bind=");
    bind.push(shown.verdict);
    bind.push(format!(":{VERDICT_DIR}"));
    cmd.arg(bind);
    let mut bind = OsString::from("--bind-ro=");
    bind.push(shown.booted_state);
    bind.push(format!(":{BOOTED_STATE}"));
    cmd.arg(bind);
    // The root itself, for exos inside the machine (states for the next
    // boot).
    let mut bind = OsString::from("--bind=");
    bind.push(root);
    bind.push(format!(":{BOOTED_ROOT}"));
    cmd.arg(bind).args(&args.nspawn);
    // Arguments of systemd itself: no first-boot questions on the console
    // (users and groups come from sysusers, the machine id from the boot).
    cmd.arg("systemd.firstboot=off");
    out.note(format!(
        "booting state {} of {} as machine {name}",
        args.state
            .map_or_else(|| "chosen".to_string(), |s| s.to_string()),
        root.display()
    ));
    // Asked to stop (SIGTERM, ^C, a hang-up), this waits for the machine
    // to power off, which is what systemd-nspawn makes of the signal passed
    // on, and then unmounts the state: ended at once, it would leave its
    // mount daemon behind.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("catching signals")?;
    let handle = signals.handle();
    let mut child = cmd.spawn().map_err(|e| {
        anyhow::anyhow!("systemd-nspawn: {e} (Debian's systemd-container package has it)")
    })?;
    let nspawn = rustix::process::Pid::from_child(&child);
    let forwarder = std::thread::spawn(move || {
        for sig in signals.forever() {
            if let Some(sig) = rustix::process::Signal::from_named_raw(sig) {
                let _ = rustix::process::kill_process(nspawn, sig);
            }
        }
    });
    let status = child.wait();
    handle.close();
    let _ = forwarder.join();
    Ok(status.context("waiting for systemd-nspawn")?.code())
}

/// Writes the machine's factory-defaults file and boot-complete unit and
/// binds the view's `/usr` onto the machine's.
fn prepare_machine(machine: &WalkedDir, view: &Path) -> Result<()> {
    let etc = machine.make_dir("etc", 0o755)?;
    let tmpfiles = etc.make_dir("tmpfiles.d", 0o755)?;
    tmpfiles.write_file(TMPFILES_NAME, &factory_lines(view)?, 0o644)?;
    let system = etc.make_dir("systemd", 0o755)?.make_dir("system", 0o755)?;
    system.write_file(COMPLETE_UNIT, complete_unit().as_bytes(), 0o644)?;
    system
        .make_dir("multi-user.target.wants", 0o755)?
        .symlink_if_missing(&format!("../{COMPLETE_UNIT}"), COMPLETE_UNIT)?;
    // Onto the directory opened without following links (the machine's
    // root user could have left a link named usr): through its descriptor.
    let usr = machine.make_dir("usr", 0o755)?;
    let usr_fd = {
        use std::os::fd::{AsFd, AsRawFd};
        format!("/proc/self/fd/{}", usr.fd().as_fd().as_raw_fd())
    };
    rustix::mount::mount_bind(view.join("usr"), usr_fd.as_str())
        .with_context(|| format!("binding {}/usr", view.display()))?;
    Ok(())
}

/// The machine's name from the root's directory name: letters, digits and
/// `-` only.
fn machine_name(root: &Path) -> String {
    let base = root
        .file_name()
        .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
        .unwrap_or_default();
    let name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(64)
        .collect();
    if name.is_empty() {
        "exos".to_string()
    } else {
        name
    }
}

fn complete_unit() -> String {
    format!(
        "# Written by exos boot: tells it this boot reached boot-complete.target.\n\
         [Unit]\n\
         Description=Tell exos boot this state booted well\n\
         Requires=boot-complete.target\n\
         After=boot-complete.target\n\
         ConditionPathIsDirectory={VERDICT_DIR}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/bin/sh -c 'echo good > {VERDICT_DIR}/complete'\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// Whether the unit left a regular file (never a link) as its verdict.
fn verdict_given(dir: &Path) -> bool {
    open_beneath(dir, &[])
        .and_then(|d| d.open_file("complete"))
        .is_ok_and(|f| f.stat.st_mode & 0o170000 == 0o100000)
}

/// The tmpfiles.d lines that copy every missing factory default into
/// place: a `d` line per directory, an `L` line per symlink, a `C` line per
/// file, for the view's `etc` and `var`.
fn factory_lines(view: &Path) -> Result<Vec<u8>> {
    let taken = paths_in_tmpfiles(&view.join("usr/lib/tmpfiles.d"));
    let mut out = b"# Written by exos boot at every boot: the packages' /etc and /var are the\n\
# factory defaults; whatever is missing is copied into place.\n"
        .to_vec();
    for part in ["etc", "var"] {
        let mut stack = vec![PathBuf::from(part)];
        while let Some(rel) = stack.pop() {
            let dir = view.join(&rel);
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .with_context(|| dir.display().to_string())?
                .filter_map(|e| e.ok())
                .collect();
            names.sort_by_key(|e| e.file_name());
            for e in names.iter().rev() {
                let path = rel.join(e.file_name());
                let md = std::fs::symlink_metadata(view.join(&path))
                    .with_context(|| path.display().to_string())?;
                let mut absolute = b"/".to_vec();
                absolute.extend_from_slice(path.as_os_str().as_bytes());
                let target = quote(&absolute);
                if md.is_dir() {
                    stack.push(path.clone());
                }
                if taken.contains(&absolute) {
                    continue;
                }
                if md.is_dir() {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = md.permissions().mode() & 0o7777;
                    out.extend_from_slice(format!("d {target} {mode:04o} - - -\n").as_bytes());
                } else if md.file_type().is_symlink() {
                    // tmpfiles' C follows a link in its source: a link is
                    // made as the link it is.
                    let to = std::fs::read_link(view.join(&path))
                        .with_context(|| path.display().to_string())?;
                    let to = argument(to.as_os_str().as_bytes());
                    out.extend_from_slice(format!("L {target} - - - - {to}\n").as_bytes());
                } else {
                    let mut from = format!("{FACTORY}/").into_bytes();
                    from.extend_from_slice(path.as_os_str().as_bytes());
                    let from = argument(&from);
                    out.extend_from_slice(format!("C {target} - - - - {from}\n").as_bytes());
                }
            }
        }
    }
    Ok(out)
}

/// The paths the tmpfiles.d files in `dir` name (their second field, as
/// written: the packages' files name plain paths).
fn paths_in_tmpfiles(dir: &Path) -> std::collections::HashSet<Vec<u8>> {
    let mut taken = std::collections::HashSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return taken;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let Ok(text) = std::fs::read(e.path()) else {
            continue;
        };
        for line in text.split(|&b| b == b'\n') {
            let mut fields = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|f| !f.is_empty());
            if let (Some(kind), Some(path)) = (fields.next(), fields.next()) {
                if !kind.starts_with(b"#") {
                    let path = path.strip_suffix(b"/").unwrap_or(path);
                    taken.insert(path.to_vec());
                }
            }
        }
    }
    taken
}

/// A path as a tmpfiles.d field: quoted, with C escapes for quotes,
/// backslashes and every byte that is not printable ASCII (names are
/// bytes), `%` doubled (specifiers).
fn quote(bytes: &[u8]) -> String {
    format!("\"{}\"", escape_field(bytes))
}

/// A path as a tmpfiles.d argument, which is never quoted: spaces escaped
/// too.
fn argument(bytes: &[u8]) -> String {
    escape_field(bytes).replace(' ', "\\x20")
}

fn escape_field(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'%' => s.push_str("%%"),
            0x21..=0x7e | b' ' => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfiles_fields_are_quoted_and_escaped() {
        assert_eq!(quote(b"/etc/a b"), "\"/etc/a b\"");
        assert_eq!(quote(b"/etc/q\"\\%"), "\"/etc/q\\\"\\\\%%\"");
        assert_eq!(quote(b"/etc/caf\xe9\n"), "\"/etc/caf\\xe9\\x0a\"");
        assert_eq!(argument(b"/run/a b%"), "/run/a\\x20b%%");
    }

    #[test]
    fn machine_names_are_letters_digits_and_dashes() {
        assert_eq!(machine_name(Path::new("/srv/my_root.2")), "my-root-2");
        assert_eq!(machine_name(Path::new("/")), "exos");
    }
}
