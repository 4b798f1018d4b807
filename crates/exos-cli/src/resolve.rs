//! `exos resolve`: a dry run of install, remove or upgrade.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use exos_manifest::Dependency;
use exos_resolve::{Change, Origin, Plan, Request};
use serde::Serialize;

use crate::output::Out;
use crate::sources::Loader;

#[derive(Args)]
pub struct ResolveArgs {
    /// What to do.
    #[arg(value_enum)]
    action: Action,
    /// Packages or APIs, each optionally with a range: `app`, `libfoo>=1.2`,
    /// `"libfoo ~2.1"`. For remove and upgrade: package names (upgrade
    /// without names upgrades everything).
    targets: Vec<String>,
    /// EXOS root whose current packages are the installed set (default: $EXOS_ROOT, if set).
    #[arg(short, long, env = "EXOS_ROOT")]
    root: Option<PathBuf>,
    /// Installed packages: a package file or a directory of them (repeatable).
    #[arg(long)]
    installed: Vec<PathBuf>,
    /// Available packages: a package, a directory, an .hpkr repository or a
    /// .jsonl manifest index (repeatable).
    #[arg(short, long)]
    available: Vec<PathBuf>,
    /// An API the host system provides, `name` or `name=version` (repeatable).
    #[arg(long = "host-api", value_name = "API[=VERSION]")]
    host_api: Vec<String>,
    /// Print load and solve times to stderr.
    #[arg(long)]
    stats: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Action {
    Install,
    Remove,
    Upgrade,
}

/// `exos resolve --json`.
#[derive(Serialize)]
pub struct ResolveReport<'a> {
    pub plan: &'a Plan,
}

pub fn run(args: &ResolveArgs, out: Out) -> Result<()> {
    let request = match args.action {
        Action::Install => {
            if args.targets.is_empty() {
                bail!("install: name at least one package or API");
            }
            Request::Install(
                args.targets
                    .iter()
                    .map(|t| Dependency::parse(t).map_err(|e| anyhow::anyhow!("{t:?}: {e}")))
                    .collect::<Result<_>>()?,
            )
        }
        Action::Remove => {
            if args.targets.is_empty() {
                bail!("remove: name at least one package");
            }
            Request::Remove(args.targets.clone())
        }
        Action::Upgrade => Request::Upgrade(args.targets.clone()),
    };
    let load_started = Instant::now();
    let mut loader = Loader::new(out.quiet || out.json);
    if let Some(root) = &args.root {
        loader.load_root(root)?;
    }
    for p in &args.installed {
        loader.load(p, true)?;
    }
    for p in &args.available {
        loader.load(p, false)?;
    }
    for h in &args.host_api {
        let p = crate::serve::parse_host_api(h)?;
        let host = exos_resolve::host_api(&p.api, p.version);
        loader.add(host.manifest, host.origin);
    }
    let installed = loader.installed;
    let originals = std::mem::take(&mut loader.originals);
    let universe = loader.finish();
    let load_seconds = load_started.elapsed().as_secs_f64();
    let outcome = exos_resolve::resolve(&universe, &request);
    if args.stats {
        let solve = match &outcome {
            Ok((_, s)) => format!("{:.3} s", s.solve_seconds),
            Err(_) => "failed".into(),
        };
        let m = universe.memory();
        eprintln!(
            "stats: {} candidates ({installed} installed), load {load_seconds:.3} s, solve {solve}; \
             pool: {} names, {} versions, {} ranges, {:.1} MiB",
            universe.len(),
            m.names,
            m.versions,
            m.ranges,
            m.bytes as f64 / (1 << 20) as f64
        );
    }
    let (mut plan, _) = outcome?;
    plan.name_originals(|id| originals.get(&id.0).cloned().unwrap_or((None, None)));
    out.result(&ResolveReport { plan: &plan }, |r| {
        render(r.plan, out.quiet)
    })
}

/// A package's version as people know it (its origin's, when mapped).
pub fn shown_version(p: &exos_resolve::PackageRef) -> String {
    p.original_version
        .clone()
        .unwrap_or_else(|| p.version.to_string())
}

fn origin_text(o: &Origin) -> String {
    match o {
        Origin::Installed { location } => location.clone(),
        Origin::Available { source } => source.clone(),
        Origin::Host => "host".into(),
    }
}

/// A plan for people: one line per change, then a summary.
pub fn render(plan: &Plan, quiet: bool) -> String {
    let mut s = String::new();
    if plan.is_empty() {
        s += "Nothing to do.\n";
    }
    let width = plan
        .changes
        .iter()
        .map(|c| match c {
            Change::Install { package } => package.to_string().len(),
            Change::Upgrade { from, to } | Change::Downgrade { from, to } => {
                format!("{from} -> {}", shown_version(to)).len()
            }
            Change::Remove { package, .. } => package.to_string().len(),
        })
        .max()
        .unwrap_or(0);
    let (mut n_install, mut n_upgrade, mut n_remove) = (0, 0, 0);
    for c in &plan.changes {
        let (verb, what, note) = match c {
            Change::Install { package } => {
                n_install += 1;
                (
                    "install",
                    package.to_string(),
                    format!("from {}", origin_text(&package.origin)),
                )
            }
            Change::Upgrade { from, to } => {
                n_upgrade += 1;
                (
                    "upgrade",
                    format!("{from} -> {}", shown_version(to)),
                    format!("from {}", origin_text(&to.origin)),
                )
            }
            Change::Downgrade { from, to } => {
                n_upgrade += 1;
                (
                    "downgrade",
                    format!("{from} -> {}", shown_version(to)),
                    format!("from {}", origin_text(&to.origin)),
                )
            }
            Change::Remove { package, reason } => {
                n_remove += 1;
                ("remove", package.to_string(), reason.to_string())
            }
        };
        s += &format!("  {verb:<9} {what:<width$}  ({note})\n");
    }
    if !quiet && !plan.is_empty() {
        s += &format!(
            "{n_install} to install, {n_upgrade} to change version, {n_remove} to remove; {} packages in the result.\n",
            plan.result.len()
        );
    }
    s
}
