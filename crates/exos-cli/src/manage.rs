//! `exos init/install/remove/upgrade/rollback/state/gc/check`: arguments
//! and output around the package manager (exos-manager), which plans and
//! carries out every change.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use exos_hpkg::Package;
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
    let path = &args.root.root;
    let root = if args.dry_run {
        Root::read_only(path)?
    } else {
        let r = Root::lock(path)?;
        for note in r.recover()? {
            out.note(format_args!("recovered an interrupted change: {note}"));
        }
        r
    };
    // Repositories take part when packages are asked for by name, and in
    // an upgrade given no -a sources.
    let use_repos = match &request {
        Request::InstallNames { .. } => true,
        Request::Upgrade { .. } => args.available.is_empty(),
        _ => false,
    };
    let remote = if use_repos {
        crate::repo::remote_candidates(path)?
    } else {
        Vec::new()
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
        remote,
        keys: args.keys.ring()?,
        from,
    };
    let mut plan = tx.plan(&root).map_err(|e| match e {
        exos_manager::Error::Unsatisfiable(_) => anyhow::Error::new(e).context(format!(
            "refusing to {} (--force to do it anyway)",
            tx.request.describe()
        )),
        e => e.into(),
    })?;
    for note in &plan.notes {
        out.note(format_args!("{note}"));
    }
    let report = |state| ChangeReport {
        dry_run: args.dry_run,
        state,
        plan: &plan,
    };
    if plan.is_empty() {
        return out.report(&report(None), |_| "Nothing to do.\n".into());
    }
    if args.dry_run {
        return out.result(&report(None), |r| {
            render_change(r, &root)
                + &format!(
                    "Dry run: nothing changed ({} would be copied).\n",
                    bytes(plan.bytes_copied)
                )
        });
    }
    let mut yes = args.yes;
    if !yes && !plan.also_removed.is_empty() && plan.essential_removed.is_empty() && !out.json {
        eprint!("{}", render_change(&report(None), &root));
        yes = confirm("Do you want to continue?");
    }
    plan.check_consent(yes, args.force)?;
    if args.lazy && !plan.downloads.is_empty() {
        crate::repo::make_lazy(&root, &mut plan, out)?;
    }
    if !plan.downloads.is_empty() {
        let digests = crate::repo::download(path, &plan.downloads, out)?;
        plan.admit_downloads(&root, &digests)?;
    }
    let n = root.commit(&plan)?;
    let report = ChangeReport {
        dry_run: false,
        state: Some(n),
        plan: &plan,
    };
    out.report(&report, |r| {
        render_change(r, &root)
            + &format!(
                "State {n}: {} ({} copied).\n",
                plan.change,
                bytes(plan.bytes_copied)
            )
    })
}

/// `exos install --missing`: the `uses` of installed packages that no
/// installed package and no `--host-api` provides, installed by API from
/// the repositories in one change.
pub fn install_missing(args: &ChangeArgs, layer: exos_root::Layer, out: Out) -> Result<()> {
    let root = Root::read_only(&args.root.root)?;
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
            let r = Root::read_only(&root.root)?;
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
            let r = Root::read_only(&root.root)?;
            let s = match number {
                Some(n) => r.state(*n)?,
                None => r.current()?,
            };
            out.result(&s, StateList::render)
        }
        StateCommand::Diff { a, b, root } => {
            let r = Root::read_only(&root.root)?;
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
