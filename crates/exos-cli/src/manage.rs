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
    /// mount fetches each verified block (16 KiB unless the repository
    /// chose another size) when it is first read (HTTP Range) into the
    /// block cache (`exos fetch` gets the rest).
    #[arg(long)]
    pub lazy: bool,
    /// Take the named packages from this repository, whatever repository
    /// the installed ones came from (like `exos install REPO/NAME`).
    #[arg(long, value_name = "REPO")]
    pub from: Option<String>,
    /// Refresh every repository's metadata first, however recent (by
    /// default an install by name or an upgrade refreshes metadata older
    /// than $EXOS_METADATA_MAX_AGE, one day unless set).
    #[arg(long)]
    pub refresh: bool,
    #[command(flatten)]
    pub mine: crate::users::Mine,
    #[command(flatten)]
    pub keys: crate::keys::KeyArgs,
}

#[derive(Subcommand)]
pub enum StateCommand {
    /// Every kept state, the current one marked.
    List {
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        mine: crate::users::Mine,
    },
    /// The packages of one state (default: the current one).
    Show {
        number: Option<u64>,
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        mine: crate::users::Mine,
    },
    /// What changes from state A to state B (default B: the current one).
    Diff {
        a: u64,
        b: Option<u64>,
        #[command(flatten)]
        root: RootArg,
        #[command(flatten)]
        mine: crate::users::Mine,
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
    /// For installs by name and upgrades: the repositories configured and
    /// those whose metadata is stale (older than the maximum age, and the
    /// refresh failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<workflow::MetadataFreshness>,
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

/// Carries out `request` on the root of `args`; `typed` is the request
/// as the user typed it, for the state's history (default: described
/// from the request).
pub fn change(
    args: &ChangeArgs,
    request: Request,
    mut from: std::collections::BTreeMap<String, String>,
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<()> {
    change_typed(args, request, &mut from, None, None, settings, out)
}

/// Before an install by name or an upgrade from repositories: refreshes
/// metadata older than the maximum age (all of it with `--refresh`; none
/// on a dry run). `None` when the root cannot be read (the change says so).
fn refresh_stale(
    args: &ChangeArgs,
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<Option<workflow::MetadataFreshness>> {
    let root = args.root.path()?;
    if Root::read_only(root).is_err() {
        return Ok(None);
    }
    let max_age = match (args.dry_run, args.refresh) {
        // A user reads the root's repositories; only root refreshes them.
        _ if args.mine.user => None,
        (true, _) => None,
        (false, true) => Some(std::time::Duration::ZERO),
        (false, false) => settings.metadata_max_age,
    };
    let frontend = Terminal { out };
    Ok(Some(workflow::refresh_stale(
        root,
        max_age,
        settings.timeouts,
        &frontend,
    )?))
}

fn change_typed(
    args: &ChangeArgs,
    mut request: Request,
    from: &mut std::collections::BTreeMap<String, String>,
    typed: Option<String>,
    metadata: Option<&workflow::MetadataFreshness>,
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
    let user = args.mine.name()?;
    if user.is_some() {
        // A user's change goes to their own layer.
        match &mut request {
            Request::Install { layer, .. }
            | Request::InstallNames { layer, .. }
            | Request::Upgrade { layer, .. } => *layer = exos_root::Layer::User,
            Request::Remove { .. } | Request::Autoremove => {}
        }
    }
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
        from: std::mem::take(from),
        typed,
    };
    let described = tx.request.describe();
    let removing = matches!(tx.request, Request::Remove { .. });
    let upgrading = matches!(tx.request, Request::Upgrade { .. });
    let options = ChangeOptions {
        dry_run: args.dry_run,
        yes: args.yes,
        force: args.force,
        lazy: args.lazy,
        repositories,
        user,
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
        metadata: metadata.cloned(),
    };
    match &changed.outcome {
        Outcome::Unchanged(_) => out.report(&report(None), |r| nothing_to_do(r, upgrading)),
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

/// "2 hours ago", for a time in seconds since the epoch.
fn since(at: Option<u64>) -> String {
    let Some(at) = at else {
        return "never (it was never refreshed)".into();
    };
    let age = exos_repo::now().saturating_sub(at);
    let (n, unit) = match age {
        0..=119 => (age, "second"),
        120..=7199 => (age / 60, "minute"),
        7200..=172_799 => (age / 3600, "hour"),
        _ => (age / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// "Nothing to do", never hiding why an install or upgrade found nothing
/// new: no repositories, or metadata that could not be refreshed.
fn nothing_to_do(r: &ChangeReport, upgrading: bool) -> String {
    let mut s = String::from("Nothing to do.\n");
    let Some(m) = &r.metadata else {
        return s;
    };
    if m.repositories == 0 && upgrading {
        s += "No repositories are configured, so nothing newer is known (`exos repo add NAME URL` adds one; -a DIR offers package files).\n";
    }
    for stale in &m.stale {
        s += &format!(
            "{}'s metadata is stale: it was refreshed {} and refreshing failed ({}); newer packages may exist.\n",
            stale.repository,
            since(stale.refreshed),
            stale.why
        );
    }
    s
}

/// The packages a request may name: installed ones, and for installs
/// and upgrades the `-a` files and the repositories' offers.
struct Catalog {
    /// (name, original name, provides, imported).
    known: Vec<(String, Option<String>, Vec<String>, bool)>,
    /// Why the repositories' offers could not be read, if they could not:
    /// an unknown name then reports this instead of "no package named".
    offers_failed: Option<anyhow::Error>,
}

impl Catalog {
    /// What `args` and the root make known for `request`; `None` when
    /// the root cannot be read (the workflow reports that).
    fn gather(
        args: &ChangeArgs,
        installs: bool,
        repositories: bool,
        settings: &crate::settings::Settings,
    ) -> Result<Option<Catalog>> {
        let root = args.root.path()?;
        let user = args.mine.name()?;
        let Ok(r) = crate::users::read(root, user.as_ref()) else {
            return Ok(None);
        };
        let entry = |m: exos_manifest::Manifest| {
            let provides = m.provides.iter().map(|x| x.api.clone()).collect();
            let imported = m.is_imported();
            (m.name, m.original_name, provides, imported)
        };
        let mut known: Vec<_> = exos_manager::query::installed_packages(&r)?
            .into_iter()
            .map(|p| entry(p.manifest))
            .collect();
        if user.is_some() {
            // A user's packages resolve against the shared layers.
            let shared = Root::read_only(root)?;
            known.extend(
                exos_manager::query::installed_packages(&shared)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| entry(p.manifest)),
            );
        }
        let mut offers_failed = None;
        if installs {
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
                            known.push(entry(m));
                        }
                    }
                }
            }
            if repositories {
                let client = exos_repo::Client::with_timeouts(root, settings.timeouts);
                match client.offered() {
                    Ok(offers) => known.extend(offers.into_iter().map(|o| entry(o.manifest))),
                    Err(e) => offers_failed = Some(e.into()),
                }
            }
        }
        Ok(Some(Catalog {
            known,
            offers_failed,
        }))
    }

    /// The name packages use for `typed` (an imported package's Debian
    /// name maps to its stored one), and whether that package was
    /// imported (its ranges are in Debian's syntax).
    fn name(&self, typed: &str) -> (String, bool) {
        let by_original = self
            .known
            .iter()
            .find(|k| k.1.as_deref() == Some(typed))
            .map(|k| k.0.clone());
        let name = by_original.unwrap_or_else(|| typed.to_string());
        let imported = self.known.iter().any(|k| k.0 == name && k.3);
        (name, imported)
    }

    /// Whether anything answers to `name` (by name, or for installs by an
    /// API it provides).
    fn knows(&self, name: &str, by_api: bool) -> bool {
        self.known.iter().any(|(n, original, provides, _)| {
            n == name
                || original.as_deref() == Some(name)
                || (by_api && provides.iter().any(|p| p == name))
        })
    }

    /// "no package named X; did you mean Y?"
    fn unknown(&mut self, name: &str, installed_only: bool) -> anyhow::Error {
        if let Some(e) = self.offers_failed.take() {
            return e.context(format!(
                "{name} is not installed and the repositories' offers cannot be read"
            ));
        }
        let names: Vec<String> = self
            .known
            .iter()
            .map(|(n, original, _, _)| original.clone().unwrap_or_else(|| n.clone()))
            .collect();
        let mut e = crate::suggest::unknown_package(name, &names);
        if installed_only {
            e = e.replacen("no package named", "no installed package named", 1);
        }
        anyhow::anyhow!("{e}")
    }
}

/// Splits `name<range>` at the range's first operator.
fn split_spec(spec: &str) -> (&str, &str) {
    let at = spec
        .find(|c: char| "<>=!~^ ".contains(c))
        .unwrap_or(spec.len());
    (spec[..at].trim(), spec[at..].trim())
}

/// A range typed in Debian's syntax (`>=1.6`, `=1.6-2.1+deb12u3`, `<<2`,
/// several joined by `,`) as the same range over the packages' mapped
/// versions, which order exactly as dpkg orders Debian's.
fn debian_range(range: &str) -> Result<String> {
    let mut terms = Vec::new();
    for term in range.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (op, version) = [
            ("<<", "<"),
            (">>", ">"),
            (">=", ">="),
            ("<=", "<="),
            ("!=", "!="),
            ("=", "="),
            ("<", "<"),
            (">", ">"),
        ]
        .iter()
        .find_map(|(typed, ours)| term.strip_prefix(typed).map(|v| (*ours, v.trim())))
        .ok_or_else(|| {
            anyhow::anyhow!("{term:?}: an imported package's range takes <<, <=, =, >=, >> (or <, >, !=) and a Debian version")
        })?;
        let v = exos_deb::version::DebVersion::parse(version)
            .map_err(|e| anyhow::anyhow!("{version:?}: not a Debian version: {e}"))?;
        terms.push(format!("{op}{}", v.to_haiku()));
    }
    Ok(terms.join(", "))
}

impl Catalog {
    /// `spec` (`name`, `name>=1.0`, an imported package's Debian name and
    /// range) as a dependency on the name packages use.
    fn dependency(&self, spec: &str) -> Result<exos_manifest::Dependency> {
        let (typed, range) = split_spec(spec);
        let (name, imported) = self.name(typed);
        let range = if imported && !range.is_empty() {
            debian_range(range)?
        } else {
            range.to_string()
        };
        exos_manifest::Dependency::parse(&format!("{name}{range}"))
            .map_err(|e| anyhow::anyhow!("{spec}: {e}"))
    }
}

/// `exos install NAME[RANGE]...` (and `REPO/NAME`): names and ranges read
/// against what is known (Debian names and ranges for imported packages),
/// an unknown name refused with the names close to it.
pub fn install_names(
    args: &ChangeArgs,
    specs: &[String],
    layer: exos_root::Layer,
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<()> {
    let metadata = refresh_stale(args, settings, out)?;
    let mut catalog = Catalog::gather(args, true, true, settings)?;
    let mut from = std::collections::BTreeMap::new();
    let mut names = Vec::new();
    for text in specs {
        let (repo, spec) = match text.split_once('/') {
            Some((repo, spec)) if !repo.is_empty() => (Some(repo), spec),
            _ => (None, text.as_str()),
        };
        let dep = match &mut catalog {
            Some(c) => {
                let dep = c.dependency(spec)?;
                if !c.knows(&dep.api, true) {
                    return Err(c.unknown(split_spec(spec).0, false));
                }
                dep
            }
            None => exos_manifest::Dependency::parse(spec)
                .map_err(|e| anyhow::anyhow!("install: {e}"))?,
        };
        if let Some(repo) = repo {
            from.insert(dep.api.clone(), repo.to_string());
        }
        names.push(dep);
    }
    change_typed(
        args,
        Request::InstallNames { names, layer },
        &mut from,
        Some(format!("install {}", specs.join(", "))),
        metadata.as_ref(),
        settings,
        out,
    )
}

/// `exos remove NAME...` / `exos upgrade [NAME...]`: names read against
/// what is installed (and for upgrades offered), Debian names included.
pub fn by_names(
    args: &ChangeArgs,
    names: &[String],
    upgrade: Option<exos_root::Layer>,
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<()> {
    let from_repositories = upgrade.is_some() && args.available.is_empty();
    let metadata = match from_repositories {
        true => refresh_stale(args, settings, out)?,
        false => None,
    };
    let mut catalog = Catalog::gather(args, upgrade.is_some(), upgrade.is_some(), settings)?;
    let mut mapped = Vec::new();
    for n in names {
        match &mut catalog {
            Some(c) => {
                if !c.knows(n, false) {
                    return Err(c.unknown(n, upgrade.is_none()));
                }
                mapped.push(c.name(n).0);
            }
            None => mapped.push(n.clone()),
        }
    }
    let request = match upgrade {
        Some(layer) => Request::Upgrade {
            names: mapped,
            layer,
        },
        None => Request::Remove { names: mapped },
    };
    change_typed(
        args,
        request,
        &mut Default::default(),
        None,
        metadata.as_ref(),
        settings,
        out,
    )
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
            metadata: None,
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
            Event::Refreshed {
                repository,
                index_changed,
            } => out.note(format_args!(
                "refreshed {repository}'s metadata ({})",
                if index_changed {
                    "a new index"
                } else {
                    "unchanged"
                }
            )),
            Event::RefreshFailed(stale) => out.note(format_args!(
                "could not refresh {}'s metadata ({}); using what it said {}",
                stale.repository,
                stale.why,
                since(stale.refreshed)
            )),
            Event::FromStore { packages } => out.note(format_args!(
                "{packages} package{} taken from the root's store (installed before), not downloaded",
                if packages == 1 { "" } else { "s" }
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
                        format!(
                            "upgrade   {old} -> {}{}\n",
                            crate::resolve::shown_version(to),
                            from(to)
                        )
                    }
                    exos_resolve::Change::Downgrade { from: old, to } => {
                        format!(
                            "downgrade {old} -> {}{}\n",
                            crate::resolve::shown_version(to),
                            from(to)
                        )
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

pub fn rollback(
    root: &Path,
    user: Option<&exos_root::UserName>,
    to: Option<u64>,
    out: Out,
) -> Result<()> {
    let r = crate::users::lock(root, user)?;
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
    /// How it booted with `exos boot` (a root's own states only; absent
    /// when never booted). The boot running now is not counted as failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<exos_root::boot::BootOutcome>,
    /// Whether the system this runs in booted this state (inside a machine
    /// `exos boot` booted from this root).
    pub running: bool,
}

pub fn state(cmd: &StateCommand, out: Out) -> Result<()> {
    match cmd {
        StateCommand::List { root, mine } => {
            let user = mine.name()?;
            let r = crate::users::read(root.path()?, user.as_ref())?;
            let current = r.current_number()?;
            let mut boots = match user {
                Some(_) => exos_root::boot::BootRecord::default(),
                None => exos_root::boot::BootRecord::read(
                    &exos_root::Layout::new(root.path()?).boot_record(),
                )?,
            };
            let running = match user {
                Some(_) => None,
                None => crate::boot::running_boot(root.path()?),
            };
            if let Some(now) = running {
                boots.while_running(now.state, now.booted_well);
            }
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
                        boot: boots.states.get(&n).copied(),
                        running: running.is_some_and(|b| b.state == n),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            out.result(&rows, |rows| {
                rows.iter()
                    .map(|s| {
                        let boot = match s.boot {
                            Some(b) if b.good && b.tries == 0 => "  [booted well]".to_string(),
                            Some(b) if b.good => {
                                format!("  [booted well; {} failed since]", b.tries)
                            }
                            Some(b) if b.tries > 0 => format!(
                                "  [{} failed {}]",
                                b.tries,
                                if b.tries == 1 { "boot" } else { "boots" }
                            ),
                            _ => String::new(),
                        };
                        let running = if s.running { "  [running now]" } else { "" };
                        format!(
                            "{} {:>6}  {}  {:>3} packages{running}{boot}  {}\n",
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
        StateCommand::Show { number, root, mine } => {
            let r = crate::users::read(root.path()?, mine.name()?.as_ref())?;
            let s = match number {
                Some(n) => r.state(*n)?,
                None => r.current()?,
            };
            out.result(&s, StateList::render)
        }
        StateCommand::Diff { a, b, root, mine } => {
            let r = crate::users::read(root.path()?, mine.name()?.as_ref())?;
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
