//! `exos`: the EXOS package tool — build and inspect packages, resolve
//! dependencies, install and remove them atomically, mount them.
//!
//! A thin layer: arguments are parsed here, the work is done by the
//! library crates, and each command prints a typed report (`output`).
//!
//! Exit codes: 0 success, 1 operational error or a refused change, 2 usage
//! error, 3 the package or repository file is invalid, 4 no consistent set
//! of packages exists for the request.

#![forbid(unsafe_code)]

use exos_cli::{
    deb, delta, inspect, keys, manage, mount, output, overlay, repo, resolve, serve, trust, view,
    RootArg,
};

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

use exos_cli::output::{ErrorBody, ErrorReport, Out};

// Resolution builds tens of thousands of small objects; mimalloc makes it
// about twice as fast (the mount daemon, exos-mountd, does not use it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line (its doc comments are `--help` text).
#[derive(Parser)]
#[command(
    name = "exos",
    version,
    about = "EXOS packages: compressed, read-only archives (Haiku HPKG v2) that are mounted, never extracted",
    long_about = "EXOS packages: compressed, read-only archives (Haiku HPKG v2) that are mounted, never extracted.\n\nBuild and inspect packages, resolve dependencies by API contract, install, remove, upgrade and roll back atomically in an EXOS root, and mount its active packages as one layered read-only file system."
)]
pub struct Cli {
    /// Print nothing but errors and the data asked for.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print one JSON document on standard output (errors too); see docs/json.md.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

// `exos run` parsed alone (see `main`).
#[derive(Parser)]
#[command(
    name = "exos run",
    bin_name = "exos run",
    version,
    about = "Run a command, or an app by package name, in a view of a mounted root (own mount namespace)."
)]
struct RunCli {
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// Errors as one JSON document on standard output; see docs/json.md.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    args: view::RunArgs,
}

/// `exos user`.
#[derive(Subcommand)]
enum UserCommand {
    /// Give a user a layer of their own (root only): ROOT/users/NAME/packages
    /// and ROOT/users/NAME/state, theirs; they then install, remove,
    /// upgrade and roll back their own packages with --user.
    Add {
        /// The user's login name.
        name: String,
        #[command(flatten)]
        root: RootArg,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Build a package from DIR; metadata comes from DIR/manifest.json.
    Build(inspect::BuildArgs),
    /// List a package's attributes and entries (like Haiku's `package list`), or a repository's packages.
    List(inspect::ListArgs),
    /// Show an installed or available package by name (version, origin,
    /// what it needs and what needs it), or a package or index file's
    /// header, sizes and attributes.
    Info {
        #[arg(value_name = "NAME|FILE")]
        target: PathBuf,
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        keys: keys::KeyArgs,
    },
    /// List the files an installed package holds (like `dpkg -L`).
    Files {
        name: String,
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        mine: exos_cli::users::Mine,
        #[command(flatten)]
        keys: keys::KeyArgs,
    },
    /// Which installed package holds a path (like `dpkg -S`): a path in a
    /// layer (`/bin/hello`), or any file under an exos mount.
    Owner {
        path: String,
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        keys: keys::KeyArgs,
    },
    /// Why a package is installed: by name or as a dependency, and which
    /// installed packages need it (by which requirement).
    Why {
        name: String,
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        mine: exos_cli::users::Mine,
    },
    /// Every state with its date, the command that made it and the
    /// package files it added and removed.
    History {
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        mine: exos_cli::users::Mine,
    },
    /// Hold packages at their installed version (or within a range,
    /// `'hello<2'`): upgrades leave them alone. No names: list the holds.
    Hold {
        names: Vec<String>,
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        mine: exos_cli::users::Mine,
    },
    /// Lift holds.
    Unhold {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        mine: exos_cli::users::Mine,
    },
    /// Remove packages installed as dependencies that nothing needs any
    /// more (asks first, as apt does).
    #[command(
        mut_arg("keys", |a| a.hide(true)),
        mut_arg("age_identities", |a| a.hide(true)),
        mut_arg("lazy", |a| a.hide(true)),
        mut_arg("from", |a| a.hide(true)),
        mut_arg("refresh", |a| a.hide(true))
    )]
    Autoremove {
        #[command(flatten)]
        change: manage::ChangeArgs,
    },
    /// Extract a package (or one path of it) into DIR.
    Extract {
        package: PathBuf,
        dir: PathBuf,
        /// Only this path inside the package.
        #[arg(long)]
        path: Option<String>,
        #[command(flatten)]
        keys: keys::KeyArgs,
    },
    /// Seal a package with a package key (--key FILE): AES-256-GCM, one sealed unit per compressed chunk; mounts read it with the same --key.
    Encrypt {
        package: PathBuf,
        /// Where to write the encrypted package.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        keys: keys::KeyArgs,
    },
    /// Make a delta that rebuilds NEW from OLD (byte for byte; see `exos apply`).
    Delta {
        old: PathBuf,
        new: PathBuf,
        /// Where to write the delta.
        #[arg(short, long)]
        output: PathBuf,
        /// zstd level of the delta's segments (1–22; 18 finds what 19 finds on deltas, faster).
        #[arg(long, default_value_t = exos_delta::MakeOptions::default().level)]
        level: i32,
    },
    /// Rebuild a package from an old version and a delta (`exos delta`); its SHA-256 is checked before OUTPUT is written.
    Apply {
        old: PathBuf,
        delta: PathBuf,
        /// Where to write the rebuilt package.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print the SHA-256 of files, as repositories record them.
    Checksum {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Compute what installing, removing or upgrading would change (dry run).
    Resolve(resolve::ResolveArgs),
    /// Mount the active packages of an EXOS root (FUSE); stays in the foreground unless --daemon.
    Mount {
        #[command(flatten)]
        args: serve::MountArgs,
        #[command(flatten)]
        keys: keys::KeyArgs,
    },
    /// Unmount an exos mount.
    Unmount { mountpoint: PathBuf },
    /// Show what a mount has active and refused, and why (the mount point,
    /// or -r ROOT: where that root is mounted).
    Status {
        mountpoint: Option<PathBuf>,
        #[command(flatten)]
        root: RootArg,
    },
    /// Convert Debian packages (.deb) to EXOS packages (merged /usr, dpkg's version order, dependencies).
    ImportDeb(deb::ImportDebArgs),
    /// Run a command, or an app by package name, in a view of a mounted root (own mount namespace).
    Run(view::RunArgs),
    /// Open an interactive shell in a view of a mounted root.
    Shell(view::ViewArgs),
    /// Create an EXOS root: system/, common/, user/ packages, state, data.
    Init { root: PathBuf },
    /// Install package files, or packages by name (`hello`, `'hello>=1.2'`) from the repositories.
    Install {
        /// Package files, or names with an optional version range.
        #[arg(required_unless_present = "missing")]
        packages: Vec<PathBuf>,
        /// Install, from the repositories, providers of the system APIs
        /// installed packages `use` and nothing provides (the packages a
        /// mount refuses for that reason).
        #[arg(long, conflicts_with = "packages")]
        missing: bool,
        /// Layer to install into.
        #[arg(short, long, default_value = "system")]
        layer: exos_root::Layer,
        #[command(flatten)]
        change: manage::ChangeArgs,
    },
    /// Remove packages by name, with whatever can no longer work without them.
    #[command(
        mut_arg("keys", |a| a.hide(true)),
        mut_arg("age_identities", |a| a.hide(true)),
        mut_arg("lazy", |a| a.hide(true)),
        mut_arg("from", |a| a.hide(true)),
        mut_arg("refresh", |a| a.hide(true))
    )]
    Remove {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        change: manage::ChangeArgs,
    },
    /// Upgrade packages (all when none named) from -a sources, else from the repositories.
    Upgrade {
        names: Vec<String>,
        /// Layer for packages newly pulled in.
        #[arg(short, long, default_value = "system")]
        layer: exos_root::Layer,
        #[command(flatten)]
        change: manage::ChangeArgs,
    },
    /// Boot a state of a root as a container (systemd-nspawn, systemd as PID 1): /usr from an exos mount of the state, /etc, /var, /root and /home persistent in the machine's directory (ROOT/data/machine), the packages' /etc and /var copied in where missing. A current state that failed --max-tries boots in a row is passed over for the one that booted well most recently
    Boot(exos_cli::boot::BootArgs),
    /// Make an earlier state current again (default: the one before the current).
    Rollback {
        state: Option<u64>,
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        mine: exos_cli::users::Mine,
    },
    /// Give users layers of their own.
    #[command(subcommand)]
    User(UserCommand),
    /// List, show and compare states.
    #[command(subcommand)]
    State(manage::StateCommand),
    /// Fetch every block of lazily installed packages (all, or those
    /// named) into the block cache, so that they work offline.
    Fetch {
        names: Vec<String>,
        #[command(flatten)]
        root: RootArg,
        /// The block cache (default: the one `exos mount` uses).
        #[arg(long, value_name = "DIR")]
        block_cache: Option<PathBuf>,
    },
    /// Delete old states and the package files only they used.
    Gc {
        #[command(flatten)]
        root: RootArg,
        /// How many of the newest states to keep (the current one is always kept).
        #[arg(long, default_value_t = 5)]
        keep: usize,
    },
    /// Verify every state's package files (presence, SHA-256) and that the current ones decompress.
    Check {
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        keys: keys::KeyArgs,
    },
    /// Make signing keys (minisign's format).
    #[command(subcommand)]
    Key(trust::KeyCommand),
    /// Sign package files: a detached PKG.minisig beside each (the package is not changed).
    Sign(trust::SignArgs),
    /// Check package files' signatures against public keys or a root's trust store.
    Verify(trust::VerifyArgs),
    /// The keys a root trusts, for which layers, and which layers require signatures.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Runtime overlays: a directory shown over one package's files (debugging, hot fixes), never part of a numbered state.
    #[command(subcommand)]
    Overlay(overlay::OverlayCommand),
    /// Publish repositories and choose the ones a root installs from.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Find packages in the repositories by name or summary.
    Search {
        text: String,
        #[command(flatten)]
        root: RootArg,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell);
    /// bash, zsh and fish also complete package names.
    Completions { shell: clap_complete::Shell },
    /// The package names a completion offers (used by the completion
    /// scripts; the root from WORDS, else $EXOS_ROOT).
    #[command(name = "__complete-names", hide = true)]
    CompleteNames {
        kind: exos_cli::completion::NameKind,
        /// The words of the command line being completed.
        #[arg(last = true)]
        words: Vec<String>,
    },
    /// Print the manual page (roff), or with --dir write exos.1 and one exos-COMMAND.1 per command.
    Manual {
        /// Write every page into DIR (e.g. /usr/local/share/man/man1) instead of printing exos(1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// exos(1) and one page per (sub)command, named as clap_mangen's
/// SEE ALSO lists them (`exos-state-list.1`); returns the files written.
fn write_manual_pages(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    fn write(
        cmd: clap::Command,
        dir: &std::path::Path,
        pages: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            write(sub, dir, pages)?;
        }
        let man = clap_mangen::Man::new(cmd);
        let file = dir.join(man.get_filename());
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        let page = man.get_filename();
        let name = page.strip_suffix(".1").unwrap_or(&page);
        roff.extend_from_slice(exos_cli::manual::extra_sections(name).as_bytes());
        std::fs::write(&file, roff)?;
        pages.push(file);
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    write(cmd, dir, &mut pages)?;
    pages.sort();
    Ok(pages)
}

fn main() -> ExitCode {
    // A command lives for a fraction of a second and touches its memory
    // once: transparent huge pages only make it zero 2 MiB per fault (and
    // count them all as resident). Measured on `exos resolve` over Debian's
    // index: peak RSS 77 MB with them, 45 MB without, same time.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    // `exos run` is on the start-up path of every program it starts, and
    // building the whole command tree costs a third of a millisecond
    // (bench/views.sh): when it is the command, only its arguments are
    // parsed (same arguments, same help).
    // A sandbox's init (PID 1 of its PID namespace): `exos run --sandbox`
    // starts it (exos_view::sandbox); never typed by people.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == exos_view::sandbox::INIT_ARG)
    {
        let fd = |n| {
            std::env::args()
                .nth(n)
                .and_then(|f| f.parse().ok())
                .unwrap_or(-1)
        };
        match exos_view::sandbox::init(fd(2), fd(3)) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("exos: {e}");
                std::process::exit(125);
            }
        }
    }
    let (result, out) = if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        let cli = RunCli::parse_from(
            std::env::args_os()
                .enumerate()
                .filter(|(i, _)| *i != 1)
                .map(|(_, a)| a),
        );
        let out = Out {
            json: cli.json,
            quiet: cli.quiet,
        };
        (view::run(&cli.args), out)
    } else {
        let cli = Cli::parse();
        let out = Out {
            json: cli.json,
            quiet: cli.quiet,
        };
        (run(&cli, out), out)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, kind) = classify(&e);
            let message = exos_cli::hints::with_hint(output::error_chain(&e), &e);
            if out.json && e.is::<output::Reported>() {
                // The command printed its own report.
            } else if out.json {
                let _ = output::write_json(&ErrorReport {
                    error: ErrorBody {
                        message: &message,
                        kind,
                        exit_code: code,
                    },
                });
            } else {
                eprintln!("exos: {message}");
            }
            ExitCode::from(code)
        }
    }
}

/// The exit code and JSON kind of an error.
fn classify(e: &anyhow::Error) -> (u8, &'static str) {
    for c in e.chain() {
        if let Some(m) = c.downcast_ref::<exos_manager::Error>() {
            match m {
                exos_manager::Error::Unsatisfiable(_) => return (4, "unsatisfiable"),
                exos_manager::Error::NeedsConsent(_) => return (1, "needs-consent"),
                exos_manager::Error::Essential(_) => return (1, "essential"),
                exos_manager::Error::Untrusted(_) => return (1, "untrusted"),
                exos_manager::Error::Package(p) if p.is_format_error() => {
                    return (3, "invalid-file")
                }
                _ => {}
            }
        }
        if matches!(
            c.downcast_ref::<exos_resolve::ResolveError>(),
            Some(exos_resolve::ResolveError::Unsatisfiable(_))
        ) {
            return (4, "unsatisfiable");
        }
        if matches!(
            c.downcast_ref::<exos_trust::TrustError>(),
            Some(exos_trust::TrustError::Format { .. })
        ) {
            return (3, "invalid-file");
        }
        if c.downcast_ref::<exos_hpkg::Error>()
            .is_some_and(|e| e.is_format_error())
        {
            return (3, "invalid-file");
        }
    }
    (1, "failed")
}

fn run(cli: &Cli, out: Out) -> Result<()> {
    // The environment, read once here and passed down.
    let settings = &exos_cli::settings::Settings::from_env();
    for problem in &settings.problems {
        out.note(format_args!("{problem}"));
    }
    match &cli.command {
        Command::Build(args) => inspect::build(args, out),
        Command::List(args) => inspect::list(args, out),
        Command::Info { target, root, keys } => {
            if exos_cli::query::looks_like_file(target) {
                inspect::info(target, &keys.ring()?, out)
            } else if root.root.is_none() {
                anyhow::bail!(
                    "{}: no such file; to show a package by name give -r ROOT or set $EXOS_ROOT",
                    target.display()
                )
            } else {
                exos_cli::query::info_name(&target.to_string_lossy(), root.path()?, out)
            }
        }
        Command::Files {
            name,
            root,
            mine,
            keys,
        } => exos_cli::query::files(
            name,
            root.path()?,
            mine.name()?.as_ref(),
            keys.ring()?,
            settings,
            out,
        ),
        Command::Owner { path, root, keys } => {
            exos_cli::query::owner(path, root.root.as_deref(), keys.ring()?, settings, out)
        }
        Command::Why { name, root, mine } => {
            exos_cli::query::why(name, root.path()?, mine.name()?.as_ref(), out)
        }
        Command::History { root, mine } => {
            exos_cli::query::history(root.path()?, mine.name()?.as_ref(), out)
        }
        Command::Hold { names, root, mine } => {
            exos_cli::query::hold(names, false, root.path()?, mine.name()?.as_ref(), out)
        }
        Command::Unhold { names, root, mine } => {
            exos_cli::query::hold(names, true, root.path()?, mine.name()?.as_ref(), out)
        }
        Command::Autoremove { change } => manage::change(
            change,
            exos_manager::Request::Autoremove,
            Default::default(),
            settings,
            out,
        ),
        Command::Extract {
            package,
            dir,
            path,
            keys,
        } => inspect::extract(package, dir, path.as_deref(), &keys.ring()?, out),
        Command::Checksum { files } => inspect::checksum(files, out),
        Command::Delta {
            old,
            new,
            output,
            level,
        } => delta::make(old, new, output, *level, out),
        Command::Apply { old, delta, output } => delta::apply(old, delta, output, out),
        Command::Encrypt {
            package,
            output,
            keys,
        } => trust::encrypt(package, output, &keys.load()?, out),
        Command::Resolve(args) => resolve::run(args, out),
        Command::Mount { args, keys } => mount::mount(args, &keys.load()?, settings, out),
        Command::Unmount { mountpoint } => mount::unmount(mountpoint, out),
        Command::Status { mountpoint, root } => match mountpoint {
            Some(m) => mount::status(m, out),
            None => mount::status(&exos_view::find_mount(root.path()?)?, out),
        },
        Command::ImportDeb(args) => deb::import(args, out),
        Command::Run(args) => view::run(args),
        Command::Shell(args) => view::shell(args, settings.shell.as_deref()),
        Command::Init { root } => manage::init(root, out),
        Command::Install {
            missing: true,
            layer,
            change,
            ..
        } => manage::install_missing(change, *layer, settings, out),
        Command::Install {
            packages,
            layer,
            change,
            ..
        } => {
            // A name, unless it is a file or looks like one.
            let is_file = |p: &PathBuf| {
                p.exists() || p.extension().is_some_and(|e| e == "hpkg" || e == "deb")
            };
            if let Some(deb) = packages
                .iter()
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
            {
                anyhow::bail!(
                    "{}: a Debian package; convert it first: exos import-deb {} -o DIR, then install DIR's .hpkg",
                    deb.display(),
                    deb.display()
                );
            }
            if packages.iter().all(is_file) {
                let request = exos_manager::Request::Install {
                    files: packages.clone(),
                    layer: *layer,
                };
                manage::change(change, request, Default::default(), settings, out)
            } else if packages.iter().any(is_file) {
                anyhow::bail!(
                    "install: give package files or package names, not both (files can go to -a)"
                );
            } else {
                let specs: Vec<String> = packages
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                manage::install_names(change, &specs, *layer, settings, out)
            }
        }
        Command::Remove { names, change } => manage::by_names(change, names, None, settings, out),
        Command::Upgrade {
            names,
            layer,
            change,
        } => manage::by_names(change, names, Some(*layer), settings, out),
        Command::Boot(args) => exos_cli::boot::boot(args, out),
        Command::Rollback { state, root, mine } => {
            manage::rollback(root.path()?, mine.name()?.as_ref(), *state, out)
        }
        Command::User(UserCommand::Add { name, root }) => {
            exos_cli::users::add(name, root.path()?, out)
        }
        Command::State(cmd) => manage::state(cmd, out),
        Command::Fetch {
            names,
            root,
            block_cache,
        } => repo::fetch(root.path()?, names, block_cache.as_deref(), settings, out),
        Command::Gc { root, keep } => manage::gc(root.path()?, *keep, out),
        Command::Check { root, keys } => manage::check(root.path()?, &keys.ring()?, out),
        Command::Key(cmd) => trust::key(cmd, out),
        Command::Repo(cmd) => repo::repo(cmd, settings, out),
        Command::Search { text, root } => repo::search(text, root.path()?, out),
        Command::Sign(args) => trust::sign(args, out),
        Command::Verify(args) => trust::verify(args, out),
        Command::Trust(cmd) => trust::trust(cmd, out),
        Command::Overlay(cmd) => overlay::overlay(cmd, out),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "exos", &mut buf);
            let script =
                exos_cli::completion::complete_script(*shell, &String::from_utf8_lossy(&buf));
            output::write_stdout(&script)
        }
        Command::CompleteNames { kind, words } => output::write_stdout(
            &exos_cli::completion::names(*kind, words, settings.exos_root.clone()),
        ),
        Command::Manual { dir: None } => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
            buf.extend_from_slice(exos_cli::manual::extra_sections("exos").as_bytes());
            output::write_stdout(&String::from_utf8_lossy(&buf))
        }
        Command::Manual { dir: Some(dir) } => {
            let pages = write_manual_pages(dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
            let report = output::ManualReport { pages };
            out.report(&report, |r| {
                format!(
                    "wrote {} manual pages into {}\n",
                    r.pages.len(),
                    dir.display()
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap checks a command's definition (e.g. two options with one name,
    /// which a global option can cause in any subcommand) only in debug
    /// builds: scripts/test.sh runs this test in one.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
