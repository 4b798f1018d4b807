//! Where `exos resolve` finds packages: package files, directories of them,
//! HPKR repository indexes, JSON-lines manifest indexes, and an EXOS root.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use exos_hpkg::{FileKind, Package, Repository};
use exos_manifest::Manifest;
use exos_resolve::{Candidate, Origin};

use exos_packagefs::activate::{ACTIVE_LIST, LAYERS};

/// Loads the manifest of one package file.
pub fn package_manifest(path: &Path) -> Result<Manifest> {
    let pkg = Package::open(path)?;
    Ok(Manifest::from_package(&pkg)?)
}

/// `*.hpkg` files directly inside `dir`, sorted by name.
pub fn package_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry.with_context(|| dir.display().to_string())?.path();
        if path.extension().is_some_and(|e| e == "hpkg") && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Candidates from PATH: a package, a directory of packages, a repository
/// (`.hpkr`) or a manifest index (`.jsonl`, one manifest per line). Broken
/// package files in a directory are reported on stderr and skipped.
pub fn load(path: &Path, installed: bool, quiet: bool) -> Result<Vec<Candidate>> {
    let origin = |p: &Path| {
        if installed {
            Origin::Installed {
                location: p.display().to_string(),
            }
        } else {
            Origin::Available {
                source: p.display().to_string(),
            }
        }
    };
    if path.is_dir() {
        let mut out = Vec::new();
        for file in package_files(path)? {
            match package_manifest(&file) {
                Ok(manifest) => out.push(Candidate {
                    manifest,
                    origin: origin(&file),
                }),
                Err(e) if !quiet => eprintln!("exos: skipping {}: {e:#}", file.display()),
                Err(_) => {}
            }
        }
        return Ok(out);
    }
    if path.extension().is_some_and(|e| e == "jsonl") {
        return load_index(path, &origin(path));
    }
    match exos_hpkg::detect(path)? {
        FileKind::Package => Ok(vec![Candidate {
            manifest: package_manifest(path)?,
            origin: origin(path),
        }]),
        FileKind::Repository => {
            let repo = Repository::open(path)?;
            Ok(repo
                .packages()
                .map(|info| Candidate {
                    manifest: Manifest::from_package_info(&info),
                    origin: origin(path),
                })
                .collect())
        }
    }
}

fn load_index(path: &Path, origin: &Origin) -> Result<Vec<Candidate>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let lines: Vec<&str> = text.lines().collect();
    // Manifests are independent: parse them on every core, keep the order.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = lines.len().div_ceil(threads).max(1);
    let parsed: Vec<Result<Vec<Candidate>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = lines
            .chunks(per_thread)
            .enumerate()
            .map(|(chunk, part)| {
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    for (i, line) in part.iter().enumerate() {
                        if line.trim().is_empty() {
                            continue;
                        }
                        let line_no = chunk * per_thread + i + 1;
                        let where_ = format!("{} line {line_no}", path.display());
                        out.push(Candidate {
                            manifest: Manifest::parse(line.as_bytes(), &where_)?,
                            origin: origin.clone(),
                        });
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("index parser thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(lines.len());
    for part in parsed {
        out.extend(part?);
    }
    Ok(out)
}

/// The packages a state lists, each with its entry, found where the
/// manager keeps them (packages directory or store).
pub fn load_state(
    root: &exos_manager::Root,
    state: &exos_manager::State,
) -> Result<Vec<(exos_manager::Entry, Candidate)>> {
    let mut out = Vec::new();
    for e in &state.entries {
        let location = format!("{}/{}", LAYERS[e.layer], e.file);
        let path = root
            .locate(e)
            .with_context(|| format!("{location} of the state is missing (run `exos check`)"))?;
        let candidate = Candidate {
            manifest: package_manifest(&path)?,
            origin: Origin::Installed { location },
        };
        out.push((e.clone(), candidate));
    }
    Ok(out)
}

/// The installed packages of an EXOS root: its current state when the
/// package manager keeps one, else every `ROOT/<layer>/packages/*.hpkg`.
pub fn load_root(root: &Path, quiet: bool) -> Result<Vec<Candidate>> {
    if root.join(ACTIVE_LIST).exists() {
        let r = exos_manager::Root::read_only(root)?;
        let current = r.current()?;
        return Ok(load_state(&r, &current)?
            .into_iter()
            .map(|(_, c)| c)
            .collect());
    }
    let mut out = Vec::new();
    for layer in LAYERS {
        let dir = root.join(layer).join("packages");
        if dir.is_dir() {
            out.extend(load(&dir, true, quiet)?);
        }
    }
    Ok(out)
}
