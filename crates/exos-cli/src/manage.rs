//! `exos init/install/remove/upgrade/rollback/state/gc/check`: the package
//! manager over an EXOS root (see the exos-manager crate).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use exos_hpkg::Package;
use exos_manager::{diff, entry_for, Entry, NewPackage, Root, State};
use exos_manifest::Manifest;
use exos_packagefs::activate::{sha256_file, LAYERS};
use exos_resolve::{Candidate, Change, Origin, Plan, Request, ResolveError, Universe};
use serde_json::json;

use crate::{human_bytes, sources, write_stdout};

#[derive(Clone, Copy, ValueEnum)]
pub enum LayerArg {
    System,
    Common,
    User,
}

impl LayerArg {
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Args)]
pub struct ChangeArgs {
    /// The EXOS root (default: $EXOS_ROOT).
    #[arg(short, long, env = "EXOS_ROOT")]
    root: PathBuf,
    /// Show what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Skip the dependency check: apply exactly what was asked.
    #[arg(long)]
    force: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Packages that may be installed to satisfy dependencies or upgrades:
    /// package files or directories of them (repeatable).
    #[arg(short, long)]
    available: Vec<PathBuf>,
    /// APIs the host provides, for `uses` (repeatable).
    #[arg(long = "host-api", value_name = "API[=VERSION]")]
    host_api: Vec<String>,
}

#[derive(Subcommand)]
pub enum StateCommand {
    /// Every kept state, the current one marked.
    List {
        #[arg(short, long, env = "EXOS_ROOT")]
        root: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The packages of one state (default: the current one).
    Show {
        number: Option<u64>,
        #[arg(short, long, env = "EXOS_ROOT")]
        root: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// What changes from state A to state B (default B: the current one).
    Diff {
        a: u64,
        b: Option<u64>,
        #[arg(short, long, env = "EXOS_ROOT")]
        root: PathBuf,
    },
}

/// An installed or offered package, with where its file is.
struct Known {
    candidate: Candidate,
    entry: Option<Entry>,
    new: Option<NewPackage>,
}

fn load_installed(root: &Root, current: &State) -> Result<Vec<Known>> {
    Ok(sources::load_state(root, current)?
        .into_iter()
        .map(|(entry, candidate)| Known {
            candidate,
            entry: Some(entry),
            new: None,
        })
        .collect())
}

fn offer(path: &Path, layer: usize) -> Result<Known> {
    let pkg = Package::open(path)?;
    // Every chunk must decompress: a package whose data is corrupt would
    // install and then fail reads with EIO.
    pkg.verify_data()?;
    exos_packagefs::activate::check_reserved_names(&pkg)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let manifest = Manifest::from_package(&pkg)?;
    let sha256 = sha256_file(path).with_context(|| path.display().to_string())?;
    let size = std::fs::metadata(path)?.len();
    let file = match path.file_name().map(|n| n.to_string_lossy().into_owned()) {
        Some(n) if n.ends_with(".hpkg") && !n.starts_with('.') => n,
        _ => pkg.info().canonical_file_name(),
    };
    Ok(Known {
        candidate: Candidate {
            manifest,
            origin: Origin::Available {
                source: path.display().to_string(),
            },
        },
        entry: None,
        new: Some(NewPackage {
            source: path.to_path_buf(),
            layer,
            file,
            sha256,
            size,
        }),
    })
}

fn offers(paths: &[PathBuf], layer: usize) -> Result<Vec<Known>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            for f in sources::package_files(p)? {
                out.push(offer(&f, layer)?);
            }
        } else {
            out.push(offer(p, layer)?);
        }
    }
    Ok(out)
}

enum What<'a> {
    Install(&'a [PathBuf], usize),
    Remove(&'a [String]),
    Upgrade(&'a [String], usize),
}

pub fn install(
    args: &ChangeArgs,
    packages: &[PathBuf],
    layer: LayerArg,
    quiet: bool,
) -> Result<()> {
    if packages.is_empty() {
        bail!("install: name at least one package file");
    }
    change(args, What::Install(packages, layer.index()), quiet)
}

pub fn remove(args: &ChangeArgs, names: &[String], quiet: bool) -> Result<()> {
    if names.is_empty() {
        bail!("remove: name at least one package");
    }
    change(args, What::Remove(names), quiet)
}

pub fn upgrade(args: &ChangeArgs, names: &[String], layer: LayerArg, quiet: bool) -> Result<()> {
    if args.available.is_empty() {
        bail!("upgrade: say where newer packages are with -a PATH");
    }
    change(args, What::Upgrade(names, layer.index()), quiet)
}

fn change(args: &ChangeArgs, what: What, quiet: bool) -> Result<()> {
    let root = if args.dry_run {
        Root::read_only(&args.root)?
    } else {
        let r = Root::lock(&args.root)?;
        for note in r.recover()? {
            if !quiet {
                eprintln!("exos: recovered an interrupted change: {note}");
            }
        }
        r
    };
    let current = root.current()?;
    let mut known = load_installed(&root, &current)?;
    let (request, description) = match &what {
        What::Install(paths, layer) => {
            let new = offers(paths, *layer)?;
            let releases = new
                .iter()
                .map(|k| {
                    (
                        k.candidate.manifest.name.clone(),
                        k.candidate.manifest.version.clone(),
                    )
                })
                .collect();
            let names: Vec<String> = new
                .iter()
                .map(|k| {
                    format!(
                        "{} {}",
                        k.candidate.manifest.name, k.candidate.manifest.version
                    )
                })
                .collect();
            known.extend(new);
            (
                Request::InstallExact(releases),
                format!("install {}", names.join(", ")),
            )
        }
        What::Remove(names) => (
            Request::Remove(names.to_vec()),
            format!("remove {}", names.join(", ")),
        ),
        What::Upgrade(names, _) => (
            Request::Upgrade(names.to_vec()),
            if names.is_empty() {
                "upgrade".to_string()
            } else {
                format!("upgrade {}", names.join(", "))
            },
        ),
    };
    let layer_for_available = match &what {
        What::Install(_, l) | What::Upgrade(_, l) => *l,
        What::Remove(_) => 0,
    };
    known.extend(offers(&args.available, layer_for_available)?);
    let mut candidates: Vec<Candidate> = known.iter().map(|k| k.candidate.clone()).collect();
    for h in &args.host_api {
        let p = crate::serve::parse_host_api(h)?;
        candidates.push(exos_resolve::host_api(&p.api, p.version));
    }
    let universe = Universe::new(candidates);

    // The target state.
    let by_origin: HashMap<String, &Known> = known
        .iter()
        .map(|k| (origin_key(&k.candidate.origin), k))
        .collect();
    let resolved = if args.force {
        None
    } else {
        Some(exos_resolve::resolve(&universe, &request))
    };
    let (target, new, plan) = match resolved {
        None => forced_target(&current, &known, &what)?,
        Some(resolved) => match resolved {
            Ok((plan, _)) => {
                let mut target = Vec::new();
                let mut new = Vec::new();
                for p in &plan.result {
                    let k = by_origin.get(&origin_key(&p.origin)).with_context(|| {
                        format!("{} {}: no package file for it", p.name, p.version)
                    })?;
                    match (&k.entry, &k.new) {
                        (Some(e), _) => target.push(e.clone()),
                        (None, Some(n)) => {
                            target.push(entry_for(n.layer, &n.file, &n.sha256));
                            new.push(n.clone());
                        }
                        _ => bail!("{} {}: no package file for it", p.name, p.version),
                    }
                }
                (target, new, Some(plan))
            }
            Err(e @ ResolveError::Unsatisfiable(_)) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "refusing to {description} (--force to do it anyway)"
                )));
            }
            Err(ResolveError::BadRequest(m)) => bail!("{m}"),
        },
    };
    // Two packages may not share a file name in one layer.
    let mut seen = HashMap::new();
    for e in &target {
        if let Some(other) = seen.insert((e.layer, e.file.clone()), e.sha256.clone()) {
            if other != e.sha256 {
                bail!("two packages would both be {}/{}", LAYERS[e.layer], e.file);
            }
        }
    }
    let changes = diff(
        &current,
        &State {
            entries: target.clone(),
            ..Default::default()
        },
    );
    let bytes: u64 = new.iter().map(|n| n.size).sum();
    let summary = |n: Option<u64>| {
        json!({
            "ok": true,
            "dry_run": args.dry_run,
            "state": n,
            "change": description,
            "changes": plan.as_ref().map(plan_changes).unwrap_or_default(),
            "files": changes.iter().map(|(c, e)| json!({
                "action": if *c == '+' { "add" } else { "remove" },
                "layer": LAYERS[e.layer], "file": e.file, "sha256": e.sha256,
            })).collect::<Vec<_>>(),
            "bytes_copied": bytes,
        })
    };
    if changes.is_empty() {
        if args.json {
            return write_stdout(&(serde_json::to_string_pretty(&summary(None))? + "\n"));
        }
        return write_stdout("Nothing to do.\n");
    }
    let mut text = String::new();
    if let Some(plan) = &plan {
        text += &render_plan(plan);
    } else {
        text += "Dependencies not checked (--force).\n";
    }
    let size_of = |e: &Entry| {
        new.iter()
            .find(|n| n.sha256 == e.sha256)
            .map(|n| n.size)
            .or_else(|| {
                root.locate(e)
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len())
            })
            .map(|b| format!(" ({})", human_bytes(b)))
            .unwrap_or_default()
    };
    for (c, e) in &changes {
        text += &format!("  {c} {}/{}{}\n", LAYERS[e.layer], e.file, size_of(e));
    }
    if args.dry_run {
        if args.json {
            return write_stdout(&(serde_json::to_string_pretty(&summary(None))? + "\n"));
        }
        text += &format!(
            "Dry run: nothing changed ({} would be copied).\n",
            human_bytes(bytes)
        );
        return write_stdout(&text);
    }
    let n = root.switch(target, &new, &description)?;
    if args.json {
        return write_stdout(&(serde_json::to_string_pretty(&summary(Some(n)))? + "\n"));
    }
    if !quiet {
        text += &format!(
            "State {n}: {description} ({} copied).\n",
            human_bytes(bytes)
        );
    }
    write_stdout(&text)
}

fn origin_key(o: &Origin) -> String {
    match o {
        Origin::Installed { location } => format!("i:{location}"),
        Origin::Available { source } => format!("a:{source}"),
        Origin::Host => "host".into(),
    }
}

/// `--force`: exactly the named change, no resolution.
fn forced_target(
    current: &State,
    known: &[Known],
    what: &What,
) -> Result<(Vec<Entry>, Vec<NewPackage>, Option<Plan>)> {
    let mut target = current.entries.clone();
    let mut new = Vec::new();
    match what {
        What::Install(paths, _) => {
            // Only the files named on the command line, not -a offers.
            for n in known
                .iter()
                .filter_map(|k| k.new.as_ref())
                .filter(|n| paths.contains(&n.source))
            {
                let n = n.clone();
                target.retain(|e| !(e.layer == n.layer && e.file == n.file));
                target.push(entry_for(n.layer, &n.file, &n.sha256));
                new.push(n);
            }
        }
        What::Remove(names) => {
            for n in names.iter() {
                if !known
                    .iter()
                    .any(|k| k.entry.is_some() && &k.candidate.manifest.name == n)
                {
                    bail!("{n} is not installed, so it cannot be removed");
                }
            }
            let doomed: Vec<&Entry> = known
                .iter()
                .filter(|k| names.contains(&k.candidate.manifest.name))
                .filter_map(|k| k.entry.as_ref())
                .collect();
            target.retain(|e| !doomed.contains(&e));
        }
        What::Upgrade(..) => bail!("upgrade cannot be forced: it needs a consistent plan"),
    }
    Ok((target, new, None))
}

fn plan_changes(plan: &Plan) -> Vec<serde_json::Value> {
    plan.changes
        .iter()
        .map(|c| match c {
            Change::Install(p) => json!({"action": "install", "name": p.name, "version": p.version.to_string()}),
            Change::Upgrade { from, to } => json!({"action": "upgrade", "name": from.name, "from": from.version.to_string(), "to": to.version.to_string()}),
            Change::Downgrade { from, to } => json!({"action": "downgrade", "name": from.name, "from": from.version.to_string(), "to": to.version.to_string()}),
            Change::Remove { package, reason } => json!({"action": "remove", "name": package.name, "version": package.version.to_string(), "reason": reason.to_string()}),
        })
        .collect()
}

fn render_plan(plan: &Plan) -> String {
    let mut s = String::new();
    for c in &plan.changes {
        s += &match c {
            Change::Install(p) => format!("install   {p}\n"),
            Change::Upgrade { from, to } => format!("upgrade   {from} -> {}\n", to.version),
            Change::Downgrade { from, to } => format!("downgrade {from} -> {}\n", to.version),
            Change::Remove { package, reason } => format!("remove    {package} ({reason})\n"),
        };
    }
    s
}

pub fn init(root: &Path) -> Result<()> {
    let r = Root::init(root)?;
    let n = r.current_number()?.unwrap_or(0);
    write_stdout(&format!(
        "EXOS root at {}: system/, common/, user/ packages; state {n}; data/ for writable data.\n",
        root.display()
    ))
}

pub fn rollback(root: &Path, to: Option<u64>, json_out: bool, quiet: bool) -> Result<()> {
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
    let changes = diff(&before, &target);
    if json_out {
        let v = json!({"ok": true, "state": n, "rolled_back_to": target_n,
            "files": changes.iter().map(|(c, e)| json!({"action": if *c == '+' {"add"} else {"remove"}, "layer": LAYERS[e.layer], "file": e.file})).collect::<Vec<_>>()});
        return write_stdout(&(serde_json::to_string_pretty(&v)? + "\n"));
    }
    let mut s = String::new();
    for (c, e) in &changes {
        s += &format!("  {c} {}/{}\n", LAYERS[e.layer], e.file);
    }
    if !quiet {
        s += &format!("State {n}: rolled back to state {target_n} (renames only).\n");
    }
    write_stdout(&s)
}

pub fn state(cmd: &StateCommand) -> Result<()> {
    match cmd {
        StateCommand::List { root, json } => {
            let r = Root::read_only(root)?;
            let current = r.current_number()?;
            let mut rows = Vec::new();
            for n in r.states()? {
                let s = r.state(n)?;
                rows.push((n, s));
            }
            if *json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, s)| json!({"state": n, "current": Some(*n) == current, "created": s.created, "change": s.change, "packages": s.entries.len()}))
                    .collect();
                return write_stdout(&(serde_json::to_string_pretty(&v)? + "\n"));
            }
            let mut out = String::new();
            for (n, s) in rows {
                out += &format!(
                    "{} {n:>6}  {}  {:>3} packages  {}\n",
                    if Some(n) == current { "*" } else { " " },
                    crate::listing::format_utc(s.created),
                    s.entries.len(),
                    s.change
                );
            }
            write_stdout(&out)
        }
        StateCommand::Show { number, root, json } => {
            let r = Root::read_only(root)?;
            let s = match number {
                Some(n) => r.state(*n)?,
                None => r.current()?,
            };
            if *json {
                let v = json!({"created": s.created, "change": s.change, "packages": s.entries.iter().map(|e| json!({"layer": LAYERS[e.layer], "file": e.file, "sha256": e.sha256})).collect::<Vec<_>>()});
                return write_stdout(&(serde_json::to_string_pretty(&v)? + "\n"));
            }
            write_stdout(&s.render())
        }
        StateCommand::Diff { a, b, root } => {
            let r = Root::read_only(root)?;
            let sa = r.state(*a)?;
            let sb = match b {
                Some(n) => r.state(*n)?,
                None => r.current()?,
            };
            let mut out = String::new();
            for (c, e) in diff(&sa, &sb) {
                out += &format!("{c} {}/{} {}\n", LAYERS[e.layer], e.file, e.sha256);
            }
            write_stdout(&out)
        }
    }
}

pub fn gc(root: &Path, keep: usize) -> Result<()> {
    let r = Root::lock(root)?;
    let (states, files, bytes) = r.gc(keep)?;
    write_stdout(&format!(
        "Removed {states} old states and {files} package files no kept state uses ({} freed).\n",
        human_bytes(bytes)
    ))
}

pub fn check(root: &Path) -> Result<()> {
    let r = Root::read_only(root)?;
    let mut problems = r.check()?;
    // The current state's packages must also be readable, every chunk.
    if let Ok(current) = r.current() {
        for e in &current.entries {
            if let Some(path) = r.locate(e) {
                if let Err(err) = Package::open(&path).and_then(|p| p.verify_data()) {
                    problems.push(err.to_string());
                }
            }
        }
    }
    if problems.is_empty() {
        return write_stdout(
            "consistent: every state's packages are present with the right SHA-256, and the current ones decompress.\n",
        );
    }
    for p in &problems {
        eprintln!("exos: {p}");
    }
    bail!("{} problems in {}", problems.len(), root.display())
}
