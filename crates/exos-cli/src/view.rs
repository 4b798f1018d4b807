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
    // Read before entering the view: packages the mount refused, to say so
    // if the program turns out to be missing.
    let refused = refused_packages(&spec.mountpoint);
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
            refused_holder(&refused, &program).unwrap_or_default()
        );
        std::process::exit(127);
    }
    Err(error).with_context(|| format!("{}", Path::new(&program).display()))
}

/// A package the mount refused: its file, why, and the paths of the files
/// it holds (read before entering the view, where the root's files may not
/// be visible).
struct Refused {
    file: PathBuf,
    reason: String,
    paths: Vec<String>,
}

/// The packages the mount at `mountpoint` refused (the first 16).
fn refused_packages(mountpoint: &Path) -> Vec<Refused> {
    let Some(status) = std::fs::read_to_string(mountpoint.join(".exos/status.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<exos_packagefs::Status>(&t).ok())
    else {
        return Vec::new();
    };
    status
        .refused
        .into_iter()
        .take(16)
        .map(|r| Refused {
            paths: file_paths(&r.file),
            file: r.file,
            reason: r.reason,
        })
        .collect()
}

/// The paths of the files (not directories) a package holds; none if it
/// cannot be read (e.g. sealed).
fn file_paths(file: &Path) -> Vec<String> {
    let Ok(pkg) = exos_hpkg::Package::open(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut path: Vec<&str> = Vec::new();
    for (depth, entry) in pkg.toc().walk() {
        path.truncate(depth);
        path.push(entry.name());
        if !entry.is_dir() {
            out.push(path.join("/"));
        }
    }
    out
}

/// "; gpuapp.hpkg holds share/gpu-tool but the mount refused it: REASON",
/// when a refused package holds a file named like `program`.
fn refused_holder(refused: &[Refused], program: &std::ffi::OsStr) -> Option<String> {
    let name = Path::new(program).file_name()?.to_str()?;
    refused.iter().find_map(|r| {
        let held = r
            .paths
            .iter()
            .find(|p| p.rsplit('/').next() == Some(name))?;
        Some(format!(
            "; {} holds {held} but the mount refused it: {}",
            r.file.file_name()?.to_string_lossy(),
            r.reason
        ))
    })
}
