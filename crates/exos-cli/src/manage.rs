//! `exos init/install/remove/upgrade/rollback/state/gc/check`: arguments
//! and output around the package manager (exos-manager), which plans and
//! carries out every change.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use exos_hpkg::Package;
use exos_manager::workflow::{self, ChangeOptions, Event, Frontend, Outcome, Progress};
use exos_manager::{diff, FileChange, GcReport, Plan, Request, Root, StateList, Transaction};
use serde::Serialize;

use crate::output::{bytes, Out};
use crate::RootArg;

#[derive(Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    root: RootArg,
    /// Show what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Skip the dependency check and apply exactly what was asked; also
    /// allows removing essential packages.
    #[arg(long)]
    force: bool,
    /// Go ahead when the change removes packages that were not named,
    /// without asking.
    #[arg(short, long)]
    yes: bool,
    /// Packages that may be installed to satisfy dependencies or upgrades:
    /// package files or directories of them (repeatable).
    #[arg(short, long)]
    pub available: Vec<PathBuf>,
    /// APIs the host provides, for `uses` (repeatable).
    #[arg(long = "host-api", value_name = "API[=VERSION]")]
    host_api: Vec<String>,
    /// Install packages from repositories without downloading them: a
    /// mount fetches each verified 64 KiB block when it is first read
    /// (HTTP Range) into the block cache (`exos fetch` gets the rest).
    #[arg(long)]
    pub lazy: bool,
    /// Take the named packages from this repository, whatever repository
    /// the installed ones came from (like `exos install REPO/NAME`).
    #[arg(long, value_name = "REPO")]
    pub from: Option<String>,
    #[command(flatten)]
    pub keys: crate::keys::KeyArgs,
}

#[derive(Subcommand)]
pub enum StateCommand {
    /// Every kept state, the current one marked.
    List {
        #[command(flatten)]
        root: RootArg,
    },
    /// The packages of one state (default: the current one).
    Show {
        number: Option<u64>,
        #[command(flatten)]
        root: RootArg,
    },
    /// What changes from state A to state B (default B: the current one).
    Diff {
        a: u64,
        b: Option<u64>,
        #[command(flatten)]
        root: RootArg,
    },
}

/// What an install, remove or upgrade did (or would do, with `--dry-run`).
#[derive(Serialize)]
pub struct ChangeReport<'a> {
    pub dry_run: bool,
    /// The new state's number; `null` for a dry run or when nothing changed.
    pub state: Option<u64>,
    pub plan: &'a Plan,
    /// After a removal: packages installed as dependencies that nothing
    /// needs any more (`exos autoremove` removes them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub autoremovable: Vec<String>,
}

/// Asks on the terminal, as apt does; false without one.
fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "Yes")
}

pub fn change(
    args: &ChangeArgs,
    request: Request,
    mut from: std::collections::BTreeMap<String, String>,
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<()> {
    if let Some(repo) = &args.from {
        let names: Vec<String> = match &request {
            Request::InstallNames { names, .. } => names.iter().map(|d| d.api.clone()).collect(),
            Request::Upgrade { names, .. } => names.clone(),
            _ => bail!("--from applies to packages installed or upgraded by name"),
        };
        if names.is_empty() {
            bail!("--from {repo}: name the packages to take from {repo}");
        }
        for n in names {
            from.insert(n, repo.clone());
        }
    }
    // Repositories take part when packages are asked for by name, and in
    // an upgrade given no -a sources.
    let repositories = match &request {
        Request::InstallNames { .. } => true,
        Request::Upgrade { .. } => args.available.is_empty(),
        _ => false,
    };
    let tx = Transaction {
        request,
        available: args.available.clone(),
        host_apis: args
            .host_api
            .iter()
            .map(|h| crate::serve::parse_host_api(h))
            .collect::<Result<_>>()?,
        force: args.force,
        remote: Vec::new(),
        keys: args.keys.ring()?,
        from,
    };
    check_names(args, &tx.request, repositories, settings)?;
    let described = tx.request.describe();
    let removing = matches!(tx.request, Request::Remove { .. });
    let options = ChangeOptions {
        dry_run: args.dry_run,
        yes: args.yes,
        force: args.force,
        lazy: args.lazy,
        repositories,
    };
    let frontend = Terminal { out };
    let changed = workflow::change(
        args.root.path()?,
        tx,
        &options,
        &settings.for_changes(),
        &frontend,
    )
    .map_err(|e| match e {
        exos_manager::Error::Unsatisfiable(_) => anyhow::Error::new(e)
            .context(format!("refusing to {described} (--force to do it anyway)")),
        e => e.into(),
    })?;
    let root = &changed.root;
    let plan = changed.outcome.plan();
    // After a removal, what it left unneeded (as apt says).
    let autoremovable = match (&changed.outcome, removing) {
        (Outcome::Committed { .. }, true) => exos_manager::query::installed_packages(root)
            .map(|all| exos_manager::query::autoremovable(&all))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let report = |state| ChangeReport {
        dry_run: args.dry_run,
        state,
        plan,
        autoremovable: autoremovable.clone(),
    };
    match &changed.outcome {
        Outcome::Unchanged(_) => out.report(&report(None), |_| "Nothing to do.\n".into()),
        Outcome::DryRun(_) => out.result(&report(None), |r| {
            render_change(r, root)
                + &format!(
                    "Dry run: nothing changed ({} would be copied).\n",
                    bytes(plan.bytes_copied)
                )
        }),
        Outcome::Committed { state, .. } => out.report(&report(Some(*state)), |r| {
            let mut s = render_change(r, root)
                + &format!(
                    "State {state}: {} ({} copied).\n",
                    plan.change,
                    bytes(plan.bytes_copied)
                );
            if !r.autoremovable.is_empty() {
                s += &format!(
                    "No longer needed (installed as dependencies): {}; `exos autoremove` removes them.\n",
                    r.autoremovable.join(", ")
                );
            }
            s
        }),
    }
}

/// Refuses a request naming a package nothing offers (and nothing
/// installed has), with the names close to it — before any planning, so
/// that the answer is "did you mean", never "--force".
fn check_names(
    args: &ChangeArgs,
    request: &Request,
    repositories: bool,
    settings: &crate::settings::Settings,
) -> Result<()> {
    let asked: Vec<&str> = match request {
        Request::InstallNames { names, .. } => names.iter().map(|d| d.api.as_str()).collect(),
        Request::Remove { names } | Request::Upgrade { names, .. } => {
            names.iter().map(String::as_str).collect()
        }
        _ => return Ok(()),
    };
    if asked.is_empty() {
        return Ok(());
    }
    let root = args.root.path()?;
    let mut known: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
    // A root that cannot be read is the workflow's to report.
    let Ok(r) = Root::read_only(root) else {
        return Ok(());
    };
    {
        for p in exos_manager::query::installed_packages(&r)? {
            let provides = p.manifest.provides.iter().map(|x| x.api.clone()).collect();
            known.push((p.name, p.manifest.original_name, provides));
        }
    }
    if matches!(
        request,
        Request::InstallNames { .. } | Request::Upgrade { .. }
    ) {
        for path in &args.available {
            let files = if path.is_dir() {
                exos_manager::package_files(path)?
            } else {
                vec![path.clone()]
            };
            for f in files {
                let options = exos_hpkg::OpenOptions::with_keys(args.keys.ring()?);
                if let Ok(pkg) = exos_hpkg::Package::open_with(&f, &options) {
                    if let Ok(m) = exos_manifest::Manifest::from_package(&pkg) {
                        let provides = m.provides.iter().map(|x| x.api.clone()).collect();
                        known.push((m.name, m.original_name, provides));
                    }
                }
            }
        }
        if repositories {
            let client = exos_repo::Client::with_timeouts(root, settings.timeouts);
            for o in client.offered().unwrap_or_default() {
                let provides = o.manifest.provides.iter().map(|x| x.api.clone()).collect();
                known.push((o.manifest.name, o.manifest.original_name, provides));
            }
        }
    }
    let matches = |n: &str| {
        known.iter().any(|(name, original, provides)| {
            name == n
                || original.as_deref() == Some(n)
                || (matches!(request, Request::InstallNames { .. })
                    && provides.iter().any(|p| p == n))
        })
    };
    for n in asked {
        if !matches(n) {
            let names: Vec<String> = known
                .iter()
                .map(|(name, original, _)| original.clone().unwrap_or_else(|| name.clone()))
                .collect();
            let scope = match request {
                Request::Remove { .. } => " installed",
                _ => "",
            };
            let mut e = crate::suggest::unknown_package(n, &names);
            if !scope.is_empty() {
                e = e.replacen("no package named", &format!("no{scope} package named"), 1);
            }
            bail!("{e}");
        }
    }
    Ok(())
}

/// The terminal as a change's front end: asks as apt does, draws a
/// progress bar for downloads, says what happened.
struct Terminal {
    out: Out,
}

impl Frontend for Terminal {
    fn confirm(&self, root: &Root, plan: &Plan) -> bool {
        if self.out.json {
            return false;
        }
        let report = ChangeReport {
            dry_run: false,
            state: None,
            plan,
            autoremovable: Vec::new(),
        };
        eprint!("{}", render_change(&report, root));
        confirm("Do you want to continue?")
    }

    fn event(&self, event: Event) {
        let out = self.out;
        match event {
            Event::Recovered(note) => {
                out.note(format_args!("recovered an interrupted change: {note}"))
            }
            Event::Note(note) => out.note(format_args!("{note}")),
            Event::DeltaNotUsed { file, why } => out.note(format_args!(
                "{file}: delta not used ({why}); downloaded whole"
            )),
            Event::RebuiltFromDelta { file, delta, size } => out.note(format_args!(
                "{file}: rebuilt from a {} delta instead of downloading {}",
                bytes(delta),
                bytes(size)
            )),
            Event::Downloaded {
                packages,
                fetched,
                by_delta,
                total,
            } => out.note(format_args!(
                "downloaded {packages} packages ({}{})",
                bytes(fetched),
                if by_delta > 0 {
                    format!(", {by_delta} by delta, instead of {}", bytes(total))
                } else {
                    String::new()
                }
            )),
            Event::Lazy { packages, cache } => out.note(format_args!(
                "{packages} packages installed lazily (blocks fetched when read, cached in {})",
                cache.display()
            )),
        }
    }

    fn downloading(&self, count: usize, total: u64) -> Box<dyn Progress + '_> {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        let out = self.out;
        let bar = if out.quiet || out.json || !std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("downloading {count} packages"));
        Box::new(Bar(bar))
    }
}

/// A progress bar (indicatif's is thread-safe).
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// `exos install --missing`: the `uses` of installed packages that no
/// installed package and no `--host-api` provides, installed by API from
/// the repositories in one change.
pub fn install_missing(
    args: &ChangeArgs,
    layer: exos_root::Layer,
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<()> {
    let root = Root::read_only(args.root.path()?)?;
    let installed = exos_manager::installed(&root, &root.current()?)?;
    let host: Vec<exos_manifest::Provide> = args
        .host_api
        .iter()
        .map(|h| crate::serve::parse_host_api(h))
        .collect::<Result<_>>()?;
    let mut missing: Vec<exos_manifest::Dependency> = Vec::new();
    for (_, m) in &installed {
        for u in &m.uses {
            let met = host.iter().any(|p| u.is_met_by(p))
                || installed
                    .iter()
                    .any(|(_, o)| o.name != m.name && o.provides.iter().any(|p| u.is_met_by(p)));
            if !met && !missing.contains(u) {
                out.note(format_args!(
                    "{} {} uses {u}, which nothing installed provides",
                    m.name, m.version
                ));
                missing.push(u.clone());
            }
        }
    }
    drop(root);
    if missing.is_empty() {
        return out.report(
            &ChangeReportEmpty {
                missing: Vec::new(),
            },
            |_| "Nothing is missing: every system API installed packages use is provided.\n".into(),
        );
    }
    change(
        args,
        Request::InstallNames {
            names: missing,
            layer,
        },
        Default::default(),
        settings,
        out,
    )
}

/// `exos install --missing` when nothing is missing.
#[derive(Serialize)]
pub struct ChangeReportEmpty {
    pub missing: Vec<String>,
}

/// A plan for people: the resolver's changes, then the files.
fn render_change(r: &ChangeReport, root: &Root) -> String {
    let plan = r.plan;
    let mut text = String::new();
    // Where a package downloaded from a repository comes from.
    let from = |p: &exos_resolve::PackageRef| {
        plan.origins
            .iter()
            .find(|d| d.package.name == p.name && d.package.version == p.version)
            .map(|d| format!("  (from {})", d.origin.repository))
            .unwrap_or_default()
    };
    match &plan.resolution {
        Some(p) => {
            for c in &p.changes {
                text += &match c {
                    exos_resolve::Change::Install { package } => {
                        format!("install   {package}{}\n", from(package))
                    }
                    exos_resolve::Change::Upgrade { from: old, to } => {
                        format!("upgrade   {old} -> {}{}\n", to.version, from(to))
                    }
                    exos_resolve::Change::Downgrade { from: old, to } => {
                        format!("downgrade {old} -> {}{}\n", to.version, from(to))
                    }
                    exos_resolve::Change::Remove { package, reason } => {
                        format!("remove    {package} ({reason})\n")
                    }
                };
            }
        }
        None => text += "Dependencies not checked (--force).\n",
    }
    for c in &plan.files {
        let size = plan
            .new
            .iter()
            .find(|n| n.sha256 == c.entry.sha256)
            .map(|n| n.size)
            .or_else(|| {
                root.locate(&c.entry)
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len())
            })
            .map(|b| format!(" ({})", bytes(b)))
            .unwrap_or_default();
        text += &format!(
            "  {} {}/{}{size}\n",
            c.action.sign(),
            c.entry.layer,
            c.entry.file
        );
    }
    if !plan.essential_removed.is_empty() {
        text += &format!(
            "Removes essential packages: {}\n",
            plan.essential_removed
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    text
}

/// What `exos init` made.
#[derive(Serialize)]
pub struct InitReport<'a> {
    pub root: &'a Path,
    pub state: u64,
}

pub fn init(root: &Path, out: Out) -> Result<()> {
    let r = Root::init(root)?;
    let state = r.current_number()?.unwrap_or(0);
    out.report(&InitReport { root, state }, |r| {
        format!(
            "EXOS root at {}: system/, common/, user/ packages; state {}; data/ for writable data.\n",
            r.root.display(),
            r.state
        )
    })
}

/// What `exos rollback` did.
#[derive(Serialize)]
pub struct RollbackReport {
    pub state: u64,
    pub rolled_back_to: u64,
    pub files: Vec<FileChange>,
}

pub fn rollback(root: &Path, to: Option<u64>, out: Out) -> Result<()> {
    let r = Root::lock(root)?;
    r.recover()?;
    let states = r.states()?;
    let current = r.current_number()?;
    let target_n = match to {
        Some(n) => n,
        None => {
            let cur = current.context(
                "the current state has no numbered copy; name the state to roll back to",
            )?;
            *states
                .iter()
                .rev()
                .find(|&&n| n < cur)
                .context("there is no earlier state")?
        }
    };
    if !states.contains(&target_n) {
        bail!("state {target_n} does not exist (see `exos state list`)");
    }
    let target = r.state(target_n)?;
    let before = r.current()?;
    let n = r.switch(
        target.entries.clone(),
        &[],
        &format!("rollback to state {target_n}"),
    )?;
    let report = RollbackReport {
        state: n,
        rolled_back_to: target_n,
        files: diff(&before, &target),
    };
    out.report(&report, |r| {
        let mut s = String::new();
        for c in &r.files {
            s += &format!("  {} {}/{}\n", c.action.sign(), c.entry.layer, c.entry.file);
        }
        s + &format!(
            "State {}: rolled back to state {} (renames only).\n",
            r.state, r.rolled_back_to
        )
    })
}

/// One line of `exos state list`.
#[derive(Serialize)]
pub struct StateSummary {
    pub state: u64,
    pub current: bool,
    pub created: u64,
    pub change: String,
    pub packages: usize,
}

pub fn state(cmd: &StateCommand, out: Out) -> Result<()> {
    match cmd {
        StateCommand::List { root } => {
            let r = Root::read_only(root.path()?)?;
            let current = r.current_number()?;
            let rows = r
                .states()?
                .into_iter()
                .map(|n| {
                    let s = r.state(n)?;
                    Ok(StateSummary {
                        state: n,
                        current: Some(n) == current,
                        created: s.created,
                        change: s.change,
                        packages: s.entries.len(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            out.result(&rows, |rows| {
                rows.iter()
                    .map(|s| {
                        format!(
                            "{} {:>6}  {}  {:>3} packages  {}\n",
                            if s.current { "*" } else { " " },
                            s.state,
                            crate::listing::format_utc(s.created),
                            s.packages,
                            s.change
                        )
                    })
                    .collect()
            })
        }
        StateCommand::Show { number, root } => {
            let r = Root::read_only(root.path()?)?;
            let s = match number {
                Some(n) => r.state(*n)?,
                None => r.current()?,
            };
            out.result(&s, StateList::render)
        }
        StateCommand::Diff { a, b, root } => {
            let r = Root::read_only(root.path()?)?;
            let sa = r.state(*a)?;
            let sb = match b {
                Some(n) => r.state(*n)?,
                None => r.current()?,
            };
            out.result(&diff(&sa, &sb), |changes| {
                changes
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}/{} {}\n",
                            c.action.sign(),
                            c.entry.layer,
                            c.entry.file,
                            c.entry.sha256
                        )
                    })
                    .collect()
            })
        }
    }
}

pub fn gc(root: &Path, keep: usize, out: Out) -> Result<()> {
    let r = Root::lock(root)?;
    let report: GcReport = r.gc(keep)?;
    out.report(&report, |g| {
        format!(
            "Removed {} old states and {} package files no kept state uses ({} freed).\n",
            g.states_removed,
            g.files_removed,
            bytes(g.bytes_freed)
        )
    })
}

/// What `exos check` found.
#[derive(Serialize)]
pub struct CheckReport {
    pub consistent: bool,
    pub problems: Vec<String>,
    /// Encrypted packages whose contents were not read for want of their
    /// key (`--key`); their SHA-256 was checked.
    pub sealed_unchecked: Vec<String>,
}

pub fn check(root: &Path, keys: &exos_hpkg::crypt::KeyRing, out: Out) -> Result<()> {
    let r = Root::read_only(root)?;
    let mut problems = r.check()?;
    let mut sealed_unchecked = Vec::new();
    // The current state's packages must also be readable, every chunk.
    if let Ok(current) = r.current() {
        for e in &current.entries {
            if let Some(path) = r.locate(e) {
                let options = exos_hpkg::OpenOptions::with_keys(keys.clone());
                match Package::open_with(&path, &options).and_then(|p| p.verify_data()) {
                    Ok(()) => {}
                    Err(err) if matches!(err.kind(), exos_hpkg::ErrorKind::Encrypted(_)) => {
                        sealed_unchecked.push(format!("{}/{}", e.layer, e.file));
                    }
                    Err(err) => problems.push(err.to_string()),
                }
            }
        }
    }
    let report = CheckReport {
        consistent: problems.is_empty(),
        problems,
        sealed_unchecked,
    };
    if report.consistent {
        return out.report(&report, |r| {
            let mut text = "consistent: every state's packages are present with the right SHA-256, and the current ones decompress.\n".to_string();
            if !r.sealed_unchecked.is_empty() {
                text += &format!(
                    "not decompressed (encrypted, no --key given): {}\n",
                    r.sealed_unchecked.join(", ")
                );
            }
            text
        });
    }
    let summary = format!("{} problems in {}", report.problems.len(), root.display());
    if out.json {
        crate::output::write_json(&report)?;
        return Err(crate::output::Reported(summary).into());
    }
    for p in &report.problems {
        eprintln!("exos: {p}");
    }
    bail!(summary)
}
