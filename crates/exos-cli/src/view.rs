//! `exos run` and `exos shell`: a command in a per-process view of a
//! mounted root (exos-view does the work).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use exos_view::{Audience, Person, Sandbox, ViewSpec};

#[derive(clap::Args)]
pub struct ViewArgs {
    #[command(flatten)]
    pub root: crate::RootArg,
    /// Run as this user (root only), in a user view: system, common and user layers.
    #[arg(short, long, conflicts_with = "system")]
    pub user: Option<String>,
    /// A system view: the system and common layers only.
    #[arg(long)]
    pub system: bool,
    /// Run confined: user and mount namespaces, no network, only /data/NAME writable, Landlock.
    #[arg(long)]
    pub sandbox: bool,
    /// With --sandbox: keep the host's network.
    #[arg(long, requires = "sandbox")]
    pub net: bool,
    /// With --sandbox: the NAME of the writable /data/NAME (default: the app's or the command's name).
    #[arg(long, requires = "sandbox")]
    pub data: Option<String>,
    /// The mount of ROOT to use (default: the one serving ROOT, found in the mount table).
    #[arg(short, long)]
    pub mount: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub view: ViewArgs,
    /// An app (package) to start: its command, with its private libraries first.
    pub app: Option<String>,
    /// The command and its arguments (after `--`); with an app, the app's arguments.
    #[arg(last = true)]
    pub command: Vec<OsString>,
}

/// `exos run`: execs the command in the view; returns only on failure.
pub fn run(args: &RunArgs) -> Result<()> {
    let mut spec = spec(&args.view)?;
    let (program, rest) = match &args.app {
        Some(name) => {
            let app = crate::apps::find(&spec, name)?;
            spec.library_dirs = app.library_dirs;
            (app.command.into_os_string(), args.command.clone())
        }
        None => {
            let Some((first, rest)) = args.command.split_first() else {
                bail!("run: give an app or a command after `--` (exos run -- CMD ARGS...)");
            };
            (first.clone(), rest.to_vec())
        }
    };
    if let Some(s) = &mut spec.sandbox {
        if args.view.data.is_none() {
            let base = args.app.clone().unwrap_or_else(|| {
                Path::new(&program)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "sandbox".into())
            });
            s.data_name = base;
        }
    }
    exec(&spec, program, rest)
}

/// `exos shell`: the caller's `$SHELL` (`login_shell`), else the user's
/// login shell (if the view has it, else /bin/sh); with `--user`, that
/// user's login shell.
pub fn shell(view: &ViewArgs, login_shell: Option<&Path>) -> Result<()> {
    let mut spec = spec(view)?;
    if let Some(s) = &mut spec.sandbox {
        if view.data.is_none() {
            s.data_name = "shell".into();
        }
    }
    let shell = match (login_shell, &view.user) {
        (Some(own), None) => own.to_path_buf(),
        _ => spec.person.shell.clone(),
    };
    exec(&spec, shell.into_os_string(), Vec::new())
}

fn spec(args: &ViewArgs) -> Result<ViewSpec> {
    let given = args.root.path()?;
    let root = given
        .canonicalize()
        .with_context(|| format!("{}: not an EXOS root", given.display()))?;
    if !exos_root::Layout::new(&root).exists() {
        bail!("{}: not an EXOS root (exos init makes one)", root.display());
    }
    let mountpoint = match &args.mount {
        Some(m) => {
            crate::mount::abandoned(m)?;
            m.canonicalize()
                .with_context(|| format!("{}", m.display()))?
        }
        None => exos_view::find_mount(&root)?,
    };
    crate::mount::abandoned(&mountpoint)?;
    if !mountpoint.join(".exos/status.json").exists() {
        bail!("{}: not an exos mount", mountpoint.display());
    }
    let me = Person::current()?;
    let person = match &args.user {
        Some(name) => Person::by_name(name)?,
        // A sandbox never runs as root: root's sandboxes run as nobody.
        None if args.sandbox && me.is_root() => Person::by_name("nobody")?,
        None => me,
    };
    let audience = if args.system {
        Audience::System
    } else {
        Audience::User
    };
    let sandbox = args.sandbox.then(|| Sandbox {
        net: args.net,
        data_name: args.data.clone().unwrap_or_default(),
    });
    if let Some(s) = &sandbox {
        let n = &s.data_name;
        if n == "." || n == ".." || n.contains(['/', '\0']) {
            bail!("--data {n:?}: a name, not a path");
        }
    }
    Ok(ViewSpec {
        root,
        mountpoint,
        audience,
        person,
        sandbox,
        library_dirs: Vec::new(),
    })
}

fn exec(spec: &ViewSpec, program: OsString, args: Vec<OsString>) -> Result<()> {
    if spec.sandbox.is_some() {
        // Its own PID namespace, under an init (this program again).
        let launch = exos_view::sandbox::Launch {
            spec: spec.clone(),
            program,
            args,
            path: std::env::var_os("PATH"),
        };
        let init = std::env::current_exe().context("locating the exos binary")?;
        let code = exos_view::sandbox::launch(&launch, &init)?;
        std::process::exit(code);
    }
    // Opened before entering the view (where the mount point may not be
    // reachable) but read only if the program turns out to be missing: this
    // is on the start-up path of every program run.
    let status = std::fs::File::open(spec.mountpoint.join(".exos/status.json")).ok();
    let entered = exos_view::enter(spec)?;
    let mut command = std::process::Command::new(&program);
    command
        .args(&args)
        .envs(entered.env.iter().cloned())
        .current_dir(&entered.cwd);
    let path = entered
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let error = command.exec();
    if error.kind() == std::io::ErrorKind::NotFound {
        eprintln!(
            "exos: {}{}",
            exos_view::not_found_reason(&program, path.as_deref()),
            status
                .and_then(|f| refused_holder(&refused_packages(f), &program))
                .unwrap_or_default()
        );
        std::process::exit(127);
    }
    Err(error).with_context(|| format!("{}", Path::new(&program).display()))
}

/// The packages the mount refused, from its status file: (file, reason).
fn refused_packages(status: std::fs::File) -> Vec<(PathBuf, String)> {
    serde_json::from_reader::<_, exos_packagefs::Status>(std::io::BufReader::new(status))
        .map(|st| st.refused.into_iter().map(|r| (r.file, r.reason)).collect())
        .unwrap_or_default()
}

/// Whether the package at `file` holds a file (not a directory) named
/// `name`, and its path; `None` if not, or if it cannot be read (sealed,
/// or out of sight of the view).
fn held_by(file: &Path, name: &str) -> Option<String> {
    let pkg = exos_hpkg::Package::open(file).ok()?;
    let mut path: Vec<&[u8]> = Vec::new();
    for (depth, entry) in pkg.toc().walk() {
        path.truncate(depth);
        path.push(entry.name_bytes());
        if entry.name_bytes() == name.as_bytes() && !entry.is_dir() {
            return Some(String::from_utf8_lossy(&path.join(&b'/')).into_owned());
        }
    }
    None
}

/// "; gpuapp.hpkg holds share/gpu-tool but the mount refused it: REASON",
/// when one of the first 16 refused packages holds a file named like
/// `program`.
fn refused_holder(refused: &[(PathBuf, String)], program: &std::ffi::OsStr) -> Option<String> {
    let name = Path::new(program).file_name()?.to_str()?;
    refused.iter().take(16).find_map(|(file, reason)| {
        let held = held_by(file, name)?;
        Some(format!(
            "; {} holds {held} but the mount refused it: {reason}",
            file.file_name()?.to_string_lossy()
        ))
    })
}
