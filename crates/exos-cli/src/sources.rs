//! Where `exos resolve` finds packages: package files, directories of them,
//! HPKR repository indexes, JSON-lines manifest indexes, and an EXOS root.

use std::path::Path;

use anyhow::{Context, Result};
use exos_hpkg::{FileKind, Package, Repository};
use exos_manifest::Manifest;
use exos_resolve::{Candidate, CandidateId, Origin};
use exos_root::{Layer, Layout};
use rayon::prelude::*;

/// Candidates numbered as they are loaded (`resolve` maps nothing back).
pub struct Loader {
    next: u32,
    pub quiet: bool,
}

impl Loader {
    pub fn new(quiet: bool) -> Loader {
        Loader { next: 0, quiet }
    }

    fn candidate(&mut self, manifest: Manifest, origin: Origin) -> Candidate {
        self.next += 1;
        Candidate {
            manifest,
            origin,
            id: CandidateId(self.next - 1),
        }
    }

    /// Candidates from PATH: a package, a directory of packages, a
    /// repository (`.hpkr`) or a manifest index (`.jsonl`, one manifest per
    /// line). Broken package files in a directory are reported on stderr and
    /// skipped.
    pub fn load(&mut self, path: &Path, installed: bool) -> Result<Vec<Candidate>> {
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
            for file in exos_manager::package_files(path)? {
                match package_manifest(&file) {
                    Ok(manifest) => out.push(self.candidate(manifest, origin(&file))),
                    Err(e) if !self.quiet => eprintln!("exos: skipping {}: {e:#}", file.display()),
                    Err(_) => {}
                }
            }
            return Ok(out);
        }
        if path.extension().is_some_and(|e| e == "jsonl") {
            let manifests = load_index(path)?;
            return Ok(manifests
                .into_iter()
                .map(|m| self.candidate(m, origin(path)))
                .collect());
        }
        match exos_hpkg::detect(path)? {
            FileKind::Package => {
                let m = package_manifest(path)?;
                Ok(vec![self.candidate(m, origin(path))])
            }
            FileKind::Repository => {
                let repo = Repository::open(path)?;
                Ok(repo
                    .packages()
                    .map(|info| self.candidate(Manifest::from_package_info(&info), origin(path)))
                    .collect())
            }
        }
    }

    /// The installed packages of an EXOS root: its current state when the
    /// package manager keeps one, else every `ROOT/<layer>/packages/*.hpkg`.
    pub fn load_root(&mut self, root: &Path) -> Result<Vec<Candidate>> {
        let layout = Layout::new(root);
        if layout.active_list().exists() {
            let r = exos_manager::Root::read_only(root)?;
            let current = r.current()?;
            return Ok(exos_manager::installed(&r, &current)?
                .into_iter()
                .map(|(e, m)| {
                    self.candidate(
                        m,
                        Origin::Installed {
                            location: format!("{}/{}", e.layer, e.file),
                        },
                    )
                })
                .collect());
        }
        let mut out = Vec::new();
        for layer in Layer::ALL {
            let dir = layout.packages_dir(layer);
            if dir.is_dir() {
                out.extend(self.load(&dir, true)?);
            }
        }
        Ok(out)
    }
}

/// Loads the manifest of one package file.
fn package_manifest(path: &Path) -> Result<Manifest> {
    let pkg = Package::open(path)?;
    Ok(Manifest::from_package(&pkg)?)
}

/// A JSON-lines index, parsed on every core (order kept).
fn load_index(path: &Path) -> Result<Vec<Manifest>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    // Indexed collect (straight into one vector), then unwrap in order.
    let parsed: Vec<Result<Manifest, exos_manifest::ManifestError>> = lines
        .par_iter()
        .map(|(i, line)| {
            Manifest::parse(line.as_bytes(), "").map_err(|mut e| {
                e.file = format!("{} line {}", path.display(), i + 1);
                e
            })
        })
        .collect();
    parsed
        .into_iter()
        .map(|r| r.map_err(anyhow::Error::from))
        .collect()
}
