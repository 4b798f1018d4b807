//! Where `exos resolve` finds packages: package files, directories of them,
//! HPKR repository indexes, JSON-lines manifest indexes, and an EXOS root.
//! Everything goes straight into the resolver's interned universe.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use exos_hpkg::{FileKind, Package, Repository};
use exos_manifest::Manifest;
use exos_resolve::{Candidate, CandidateId, Origin, Universe, UniverseBuilder};
use exos_root::{Layer, Layout};

/// Loads candidates into a universe, numbering them as they come
/// (`resolve` maps nothing back).
pub struct Loader {
    next: u32,
    pub quiet: bool,
    builder: UniverseBuilder,
    /// Candidates loaded as installed.
    pub installed: usize,
    /// Original names and versions (imported Debian packages'), by
    /// candidate, for showing plans.
    pub originals: std::collections::HashMap<u32, (Option<String>, Option<String>)>,
}

impl Loader {
    pub fn new(quiet: bool) -> Loader {
        Loader {
            next: 0,
            quiet,
            builder: UniverseBuilder::new(),
            installed: 0,
            originals: Default::default(),
        }
    }

    fn next_id(&mut self, origin: &Origin) -> CandidateId {
        self.next += 1;
        if matches!(origin, Origin::Installed { .. }) {
            self.installed += 1;
        }
        CandidateId(self.next - 1)
    }

    pub fn add(&mut self, manifest: Manifest, origin: Origin) {
        let id = self.next_id(&origin);
        if manifest.original_name.is_some() || manifest.original_version.is_some() {
            self.originals.insert(
                id.0,
                (
                    manifest.original_name.clone(),
                    manifest.original_version.clone(),
                ),
            );
        }
        self.builder.add(&Candidate {
            manifest,
            origin,
            id,
        });
    }

    pub fn finish(self) -> Universe {
        self.builder.finish()
    }

    /// Candidates from PATH: a package, a directory of packages, a
    /// repository (`.hpkr`) or a manifest index (`.jsonl`, one manifest per
    /// line). Broken package files in a directory are reported on stderr and
    /// skipped.
    pub fn load(&mut self, path: &Path, installed: bool) -> Result<()> {
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
            for file in exos_manager::package_files(path)? {
                match package_manifest(&file) {
                    Ok(manifest) => self.add(manifest, origin(&file)),
                    Err(e) if !self.quiet => eprintln!(
                        "exos: skipping {}: {}",
                        file.display(),
                        crate::output::error_chain(&e)
                    ),
                    Err(_) => {}
                }
            }
            return Ok(());
        }
        if path.extension().is_some_and(|e| e == "jsonl") {
            return self.load_index(path, origin(path));
        }
        match exos_hpkg::detect(path)? {
            FileKind::Package => {
                let m = package_manifest(path)?;
                self.add(m, origin(path));
            }
            FileKind::Repository => {
                let repo = Repository::open(path)?;
                for info in repo.packages() {
                    self.add(Manifest::from_package_info(&info), origin(path));
                }
            }
        }
        Ok(())
    }

    /// The installed packages of an EXOS root: its current state when the
    /// package manager keeps one, else every `ROOT/<layer>/packages/*.hpkg`.
    pub fn load_root(&mut self, root: &Path) -> Result<()> {
        let layout = Layout::new(root);
        if layout.active_list().exists() {
            let r = exos_manager::Root::read_only(root)?;
            let current = r.current()?;
            for (e, m) in exos_manager::installed(&r, &current)? {
                let location = format!("{}/{}", e.layer, e.file);
                self.add(
                    std::sync::Arc::unwrap_or_clone(m),
                    Origin::Installed { location },
                );
            }
            return Ok(());
        }
        for layer in Layer::ALL {
            let dir = layout.packages_dir(layer);
            if dir.is_dir() {
                self.load(&dir, true)?;
            }
        }
        Ok(())
    }

    /// A JSON-lines index, read a block at a time: each block's lines are
    /// parsed and checked on every core, then interned in order. Memory
    /// holds one block, never the whole file or its manifests.
    fn load_index(&mut self, path: &Path, origin: Origin) -> Result<()> {
        const BLOCK: usize = 1 << 20;
        let mut file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        if let Ok(meta) = file.metadata() {
            self.builder.reserve_for_json(meta.len() as usize);
        }
        let mut block: Vec<u8> = Vec::with_capacity(BLOCK);
        let mut carry: Vec<u8> = Vec::new();
        let mut lines_before = 0usize;
        let file_name = path.display().to_string();
        loop {
            block.clear();
            block.append(&mut carry);
            let before = block.len();
            (&mut file)
                .take(BLOCK as u64)
                .read_to_end(&mut block)
                .with_context(|| file_name.clone())?;
            let eof = block.len() == before;
            // Whole lines only; the rest waits for the next block.
            let end = if eof {
                block.len()
            } else {
                match memchr::memrchr(b'\n', &block) {
                    Some(i) => i + 1,
                    // A line longer than a block: read on.
                    None => {
                        std::mem::swap(&mut carry, &mut block);
                        continue;
                    }
                }
            };
            carry.extend_from_slice(&block[end..]);
            let added = self.builder.add_json_lines(
                &block[..end],
                lines_before,
                &file_name,
                origin.clone(),
                self.next,
            )?;
            self.next += added as u32;
            lines_before += memchr::memchr_iter(b'\n', &block[..end]).count();
            if eof {
                return Ok(());
            }
        }
    }
}

/// Loads the manifest of one package file.
fn package_manifest(path: &Path) -> Result<Manifest> {
    let pkg = Package::open(path)?;
    Ok(Manifest::from_package(&pkg)?)
}
