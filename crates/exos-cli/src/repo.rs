//! `exos repo …` and `exos search`: arguments and output around exos-repo
//! (publishing, the repositories a root uses, downloads).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use exos_repo::publish::Lifetimes;
use exos_repo::Client;
use serde::Serialize;

use crate::output::{bytes, Out};
use crate::RootArg;

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Publish DIR's packages: sign those without a signature, write the
    /// signed index.json and timestamp.json (and root.json the first time).
    Index {
        dir: PathBuf,
        /// The repository's secret key.
        #[arg(short, long = "secret-key")]
        key: PathBuf,
        /// Days the index stays valid.
        #[arg(long, default_value_t = 30)]
        index_days: u64,
        /// Days the timestamp stays valid (re-sign with refresh-timestamp).
        #[arg(long, default_value_t = 1)]
        timestamp_days: u64,
        /// For Haiku's `repo` index: the repository's name (default: DIR's name).
        #[arg(long, default_value = "")]
        name: String,
        /// For Haiku's `repo` index: the vendor (package_repo requires every package's vendor to match).
        #[arg(long, default_value = "")]
        vendor: String,
        /// For Haiku's `repo` index: a one-line summary.
        #[arg(long, default_value = "")]
        summary: String,
        /// For Haiku's `repo` index: the base URL Haiku fetches packages from.
        #[arg(long, default_value = "")]
        base_url: String,
        /// Publish deltas to each package's newest version from up to N older versions in DIR (kept between runs; 0 removes them).
        #[arg(long, default_value_t = 0, value_name = "N")]
        deltas: usize,
    },
    /// Re-sign DIR's timestamp.json with a new version and expiry (run daily).
    RefreshTimestamp {
        dir: PathBuf,
        /// The repository's secret key (its timestamp role).
        #[arg(short, long = "secret-key")]
        key: PathBuf,
        #[arg(long, default_value_t = 1)]
        timestamp_days: u64,
    },
    /// Replace DIR's root key: a new root.json signed by the old key and the new one (then re-index with the new key).
    RotateRoot {
        dir: PathBuf,
        /// The current root secret key.
        #[arg(short, long = "secret-key")]
        key: PathBuf,
        /// The new secret key (it takes every role).
        #[arg(long)]
        new_key: PathBuf,
    },
    /// Add a repository (file://, a path, http:// or https://), pinning its root key.
    Add {
        name: String,
        url: String,
        /// The repository's root public key (file or minisign's base64 line).
        #[arg(short, long = "root-key")]
        key: String,
        /// A package not installed yet comes from the highest-priority
        /// repositories offering it; installed packages stay on the
        /// repository they came from whatever the priorities.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        #[command(flatten)]
        root: RootArg,
    },
    /// Forget a repository and its metadata.
    Remove {
        name: String,
        #[command(flatten)]
        root: RootArg,
    },
    /// The configured repositories.
    List {
        #[command(flatten)]
        root: RootArg,
    },
    /// Fetch and check the repositories' metadata (all when none named).
    Refresh {
        names: Vec<String>,
        #[command(flatten)]
        root: RootArg,
    },
}

/// `exos repo list`.
#[derive(Serialize)]
pub struct RepoListing {
    pub repositories: Vec<exos_repo::Repository>,
}

/// `exos repo refresh` and `exos repo add`.
#[derive(Serialize)]
pub struct RefreshReport {
    pub refreshed: Vec<exos_repo::client::Refreshed>,
}

/// `exos search`.
#[derive(Serialize)]
pub struct SearchReport {
    pub packages: Vec<Found>,
}

#[derive(Serialize)]
pub struct Found {
    pub name: String,
    pub version: String,
    pub summary: String,
    pub repository: String,
    pub size: u64,
    /// The version installed, when the package is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed: Option<String>,
}

fn refreshed_text(r: &RefreshReport) -> String {
    r.refreshed
        .iter()
        .map(|x| {
            format!(
                "{}: index version {} ({} packages{}), valid until {}\n",
                x.name,
                x.index_version,
                x.packages,
                if x.index_changed { ", new" } else { "" },
                exos_repo::utc(x.expires)
            )
        })
        .collect()
}

pub fn repo(cmd: &RepoCommand, settings: &crate::settings::Settings, out: Out) -> Result<()> {
    let client = |root: &Path| Client::with_timeouts(root, settings.timeouts);
    match cmd {
        RepoCommand::Index {
            dir,
            key,
            index_days,
            timestamp_days,
            name,
            vendor,
            summary,
            base_url,
            deltas,
        } => {
            let key = exos_trust::read_secret_key(key)?;
            let life = Lifetimes {
                index_days: *index_days,
                timestamp_days: *timestamp_days,
                ..Lifetimes::default()
            };
            let haiku = exos_repo::publish::HaikuInfo {
                name: name.clone(),
                vendor: vendor.clone(),
                summary: summary.clone(),
                base_url: base_url.clone(),
                ..Default::default()
            };
            // One bar per delta made (a big package's takes a while).
            let bar: std::sync::Mutex<Option<(String, indicatif::ProgressBar)>> =
                std::sync::Mutex::new(None);
            let p = exos_repo::publish::index_with_progress(
                dir,
                &key,
                life,
                &haiku,
                *deltas,
                &|file, done, total| {
                    let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
                    if bar.as_ref().is_none_or(|(f, _)| f != file) {
                        if let Some((_, old)) = bar.take() {
                            old.finish_and_clear();
                        }
                        *bar = crate::output::progress_bar(
                            out,
                            total,
                            &format!("delta {file}"),
                            crate::output::Counting::Items,
                        )
                        .map(|pb| (file.to_string(), pb));
                    }
                    if let Some((_, pb)) = bar.as_ref() {
                        pb.set_position(done);
                    }
                },
            );
            if let Some((_, pb)) = bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
                pb.finish_and_clear();
            }
            let p = p?;
            out.report(&p, |p| {
                let mut s = String::new();
                for d in &p.deltas {
                    s += &format!(
                        "delta {}: {} -> {}, {} ({:.1}% of the package){}\n",
                        d.file,
                        d.from,
                        d.to,
                        bytes(d.size),
                        100.0 * d.size as f64 / d.package_size.max(1) as f64,
                        if d.reused { ", kept" } else { "" }
                    );
                }
                let deltas = match p.deltas.len() {
                    0 => String::new(),
                    n => format!(", {n} deltas"),
                };
                s + &format!(
                    "{}: {} packages ({} signed now){deltas}, index version {}, timestamp version {}, valid until {}\n",
                    p.dir.display(),
                    p.packages,
                    p.signed_now,
                    p.index_version,
                    p.timestamp_version,
                    exos_repo::utc(p.expires)
                )
            })
        }
        RepoCommand::RefreshTimestamp {
            dir,
            key,
            timestamp_days,
        } => {
            let key = exos_trust::read_secret_key(key)?;
            let life = Lifetimes {
                timestamp_days: *timestamp_days,
                ..Lifetimes::default()
            };
            let ts = exos_repo::publish::write_timestamp(dir, &key, life)?;
            out.report(&ts, |t| {
                format!(
                    "{}: timestamp version {}, valid until {}\n",
                    dir.display(),
                    t.version,
                    exos_repo::utc(t.expires)
                )
            })
        }
        RepoCommand::RotateRoot { dir, key, new_key } => {
            let old = exos_trust::read_secret_key(key)?;
            let new = exos_trust::read_secret_key(new_key)?;
            let r = exos_repo::publish::rotate_root(dir, &old, &new, Lifetimes::default())?;
            out.report(&r, |r| {
                format!(
                    "{}: root version {} with key {} (now run: exos repo index {} -k {})\n",
                    dir.display(),
                    r.version,
                    new.id,
                    dir.display(),
                    new_key.display()
                )
            })
        }
        RepoCommand::Add {
            name,
            url,
            key,
            priority,
            root,
        } => {
            let _lock = exos_manager::Root::lock(root.path()?)?;
            if !url.contains("://") && !Path::new(url).is_dir() {
                bail!(
                    "{url}: not a directory, nor a URL (a server's repository is http://HOST/PATH or https://HOST/PATH)"
                );
            }
            let secret = std::fs::read_to_string(key).unwrap_or_default();
            if secret
                .lines()
                .next()
                .is_some_and(|l| l.contains("secret key"))
            {
                bail!("{key}: a secret key; repo add pins the public key (the .pub file beside it); keep the secret key with the publisher");
            }
            let key = crate::trust::public_key(key)?;
            let r = client(root.path()?).add(name, url, &key, *priority)?;
            out.report(&RefreshReport { refreshed: vec![r] }, refreshed_text)
        }
        RepoCommand::Remove { name, root } => {
            let _lock = exos_manager::Root::lock(root.path()?)?;
            Client::new(root.path()?).remove(name)?;
            out.report(
                &RepoListing {
                    repositories: Client::new(root.path()?).config()?.repositories,
                },
                |_| format!("removed repository {name}\n"),
            )
        }
        RepoCommand::List { root } => {
            let c = Client::new(root.path()?).config()?;
            out.result(
                &RepoListing {
                    repositories: c.repositories,
                },
                |l| {
                    l.repositories
                        .iter()
                        .map(|r| format!("{}\t{}\n", r.name, r.url))
                        .collect()
                },
            )
        }
        RepoCommand::Refresh { names, root } => {
            let _lock = exos_manager::Root::lock(root.path()?)?;
            let client = client(root.path()?);
            let names: Vec<String> = if names.is_empty() {
                client
                    .config()?
                    .repositories
                    .into_iter()
                    .map(|r| r.name)
                    .collect()
            } else {
                names.clone()
            };
            let mut refreshed = Vec::new();
            for n in &names {
                refreshed.push(
                    client
                        .refresh(n)
                        .with_context(|| format!("refreshing {n}"))?,
                );
            }
            out.report(&RefreshReport { refreshed }, refreshed_text)
        }
    }
}

/// `exos search TEXT`: packages whose name or summary contains TEXT
/// (case-insensitive), newest first per name.
pub fn search(text: &str, root: &Path, out: Out) -> Result<()> {
    let needle = text.to_lowercase();
    let installed: std::collections::BTreeMap<String, String> = exos_manager::Root::read_only(root)
        .and_then(|r| exos_manager::query::installed_packages(&r))
        .map(|all| all.into_iter().map(|p| (p.name, p.version)).collect())
        .unwrap_or_default();
    let mut offered: Vec<exos_repo::OfferedPackage> = Client::new(root)
        .offered()?
        .into_iter()
        .filter(|p| {
            let m = &p.manifest;
            m.name.to_lowercase().contains(&needle)
                || m.original_name
                    .as_ref()
                    .is_some_and(|n| n.to_lowercase().contains(&needle))
                || m.summary.to_lowercase().contains(&needle)
        })
        .collect();
    offered.sort_by(|a, b| {
        a.manifest
            .name
            .cmp(&b.manifest.name)
            .then(b.manifest.version.compare(&a.manifest.version))
    });
    let packages: Vec<Found> = offered
        .into_iter()
        .map(|p| Found {
            name: p
                .manifest
                .original_name
                .clone()
                .unwrap_or_else(|| p.manifest.name.clone()),
            version: exos_manager::query::display_version(&p.manifest),
            summary: p.manifest.summary.clone(),
            repository: p.origin.repository.clone(),
            size: p.size(),
            installed: installed.get(&p.manifest.name).cloned(),
        })
        .collect();
    out.result(&SearchReport { packages }, |r| {
        r.packages
            .iter()
            .map(|p| {
                let installed = match &p.installed {
                    Some(v) if *v == p.version => ", installed".to_string(),
                    Some(v) => format!(", {v} installed"),
                    None => String::new(),
                };
                format!(
                    "{} {}  {}  [{}, {}{installed}]\n",
                    p.name,
                    p.version,
                    p.summary,
                    p.repository,
                    bytes(p.size)
                )
            })
            .collect()
    })
}

/// What `exos fetch` did.
#[derive(Serialize)]
pub struct FetchReport {
    pub block_cache: PathBuf,
    pub packages: Vec<Fetched>,
}

#[derive(Serialize)]
pub struct Fetched {
    pub file: String,
    pub name: String,
    pub blocks: u64,
    /// Bytes fetched now (0 when every block was cached already).
    pub bytes_fetched: u64,
}

/// `exos fetch`: completes lazily installed packages in the block cache.
pub fn fetch(
    root: &Path,
    names: &[String],
    cache: Option<&Path>,
    settings: &crate::settings::Settings,
    out: Out,
) -> Result<()> {
    let dir = match cache {
        Some(d) => d.to_path_buf(),
        None => settings
            .block_cache
            .clone()
            .context(crate::settings::NO_DEFAULT_CACHE)?,
    };
    let r = exos_manager::Root::read_only(root)?;
    let current = r.current()?;
    let cache = std::sync::Arc::new(
        exos_lazy::BlockCache::open(&dir, exos_lazy::cache::DEFAULT_CAPACITY)
            .with_context(|| format!("block cache {}", dir.display()))?,
    );
    let timeouts = settings.timeouts;
    let mut report = FetchReport {
        block_cache: dir.clone(),
        packages: Vec::new(),
    };
    let mut named: Vec<&String> = names.iter().collect();
    for e in &current.entries {
        if r.locate(e).is_some() || !r.is_lazy(e) {
            continue;
        }
        let Some(lazy) = exos_lazy::LazyPackage::read(&r.layout, &e.sha256)? else {
            continue;
        };
        let name = lazy.record.manifest["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !names.is_empty() && !names.contains(&name) {
            continue;
        }
        named.retain(|n| **n != name);
        let blocks = lazy.blocks.block_count();
        let size = lazy.record.size;
        let source = exos_lazy::RemoteSource::new(lazy, cache.clone(), timeouts)?;
        let pb = crate::output::progress_bar(
            out,
            size,
            &format!("fetching {}", e.file),
            crate::output::Counting::Bytes,
        );
        let fetched = source.fetch_all(&|n| {
            if let Some(pb) = &pb {
                pb.set_position(n);
            }
        });
        if let Some(pb) = &pb {
            pb.finish_and_clear();
        }
        fetched.with_context(|| format!("fetching {}", source.url()))?;
        let bytes_fetched = source.stats().bytes_fetched;
        if bytes_fetched > 0 {
            out.note(format_args!("{}: {} fetched", e.file, bytes(bytes_fetched)));
        }
        report.packages.push(Fetched {
            file: e.file.to_string(),
            name,
            blocks,
            bytes_fetched,
        });
    }
    if let Some(n) = named.first() {
        anyhow::bail!("{n}: no lazily installed package of that name in the current state");
    }
    out.result(&report, |r| {
        let total: u64 = r.packages.iter().map(|p| p.bytes_fetched).sum();
        format!(
            "{} lazy packages complete in {} ({} fetched).\n",
            r.packages.len(),
            r.block_cache.display(),
            bytes(total)
        )
    })
}
