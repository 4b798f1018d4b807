//! Activation: which package files of an EXOS root become part of the view.
//!
//! Every `*.hpkg` under `ROOT/<layer>/packages` is opened and validated
//! (header, TOC and attribute structure, manifest; the SHA-256 when the
//! root's `system/state/active.list` records one). A package whose `uses`
//! names a system API that no other active package (nor the host) provides
//! is refused. Refused packages are reported with their reason; everything
//! else is activated. Packages unchanged since the previous scan (same
//! device, inode, size and mtime) are reused, not reopened.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use exos_hpkg::Package;
use exos_manifest::{Dependency, Manifest, Provide};

use crate::cache::ChunkCache;

/// The layers, lowest priority first.
pub const LAYERS: [&str; 3] = ["system", "common", "user"];

/// A package file's identity on disk: a replaced file is a new package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }
}

/// An activated package.
pub struct ActivePackage {
    /// Unique for the life of the mount; part of its files' inode numbers.
    pub id: u64,
    pub layer: usize,
    pub path: PathBuf,
    pub file_name: String,
    pub identity: FileIdentity,
    pub package: Package,
    pub manifest: Manifest,
    /// SHA-256 of the file, when it was verified against the state.
    pub sha256: Option<String>,
}

/// A package file that was not activated, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    pub layer: usize,
    pub path: PathBuf,
    pub reason: String,
}

/// The outcome of a scan.
#[derive(Default)]
pub struct Activation {
    /// Per layer, sorted by file name.
    pub layers: [Vec<Arc<ActivePackage>>; 3],
    pub refused: Vec<Refused>,
}

impl Activation {
    pub fn all(&self) -> impl Iterator<Item = &Arc<ActivePackage>> {
        self.layers.iter().flatten()
    }
}

/// How to scan a root.
pub struct Scanner {
    pub root: PathBuf,
    /// APIs the host provides (for `uses`).
    pub host_apis: Vec<Provide>,
    pub cache: Arc<ChunkCache>,
    next_id: AtomicU64,
}

/// SHA-256 by (layer, file name).
type ExpectedHashes = HashMap<(String, String), String>;

/// Expected SHA-256 per (layer, file name), from `system/state/active.list`
/// (lines: `layer file-name sha256`; `#` comments).
fn expected_hashes(root: &Path) -> Result<Option<ExpectedHashes>, String> {
    let path = root.join("system/state/active.list");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            [layer, file, hash]
                if LAYERS.contains(layer)
                    && hash.len() == 64
                    && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                out.insert(
                    (layer.to_string(), file.to_string()),
                    hash.to_ascii_lowercase(),
                );
            }
            _ => {
                return Err(format!(
                    "{} line {}: expected \"layer file-name sha256\"",
                    path.display(),
                    i + 1
                ))
            }
        }
    }
    Ok(Some(out))
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl Scanner {
    pub fn new(root: PathBuf, host_apis: Vec<Provide>, cache: Arc<ChunkCache>) -> Scanner {
        Scanner {
            root,
            host_apis,
            cache,
            next_id: AtomicU64::new(1),
        }
    }

    /// Directory of a layer's package files.
    pub fn packages_dir(&self, layer: usize) -> PathBuf {
        self.root.join(LAYERS[layer]).join("packages")
    }

    /// Scans the root; `previous` lets unchanged packages be reused.
    pub fn scan(&self, previous: Option<&Activation>) -> Activation {
        let mut out = Activation::default();
        let reuse: HashMap<(usize, FileIdentity), &Arc<ActivePackage>> = previous
            .into_iter()
            .flat_map(|a| a.all())
            .map(|p| ((p.layer, p.identity), p))
            .collect();
        let expected = match expected_hashes(&self.root) {
            Ok(e) => e,
            Err(reason) => {
                // An unreadable state refuses nothing by itself, but is shown.
                out.refused.push(Refused {
                    layer: 0,
                    path: self.root.join("system/state/active.list"),
                    reason,
                });
                None
            }
        };
        for (layer, layer_name) in LAYERS.iter().enumerate() {
            let dir = self.packages_dir(layer);
            let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "hpkg"))
                    .collect(),
                Err(_) => Vec::new(),
            };
            files.sort();
            for path in files {
                let file_name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let refuse = |reason: String| Refused {
                    layer,
                    path: path.clone(),
                    reason,
                };
                let meta = match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    // Vanished between listing and stat: a concurrent removal.
                    Err(_) => continue,
                };
                let identity = FileIdentity::of(&meta);
                let want = expected
                    .as_ref()
                    .map(|e| e.get(&(layer_name.to_string(), file_name.clone())));
                if let Some(None) = want {
                    out.refused.push(refuse(
                        "not in system/state/active.list (not part of the current state)".into(),
                    ));
                    continue;
                }
                if let Some(p) = reuse.get(&(layer, identity)) {
                    out.layers[layer].push(Arc::clone(p));
                    continue;
                }
                match self.open(layer, &path, file_name, identity, want.flatten()) {
                    Ok(p) => out.layers[layer].push(Arc::new(p)),
                    Err(reason) => out.refused.push(refuse(reason)),
                }
            }
        }
        self.check_uses(&mut out);
        out
    }

    fn open(
        &self,
        layer: usize,
        path: &Path,
        file_name: String,
        identity: FileIdentity,
        expected_sha: Option<&String>,
    ) -> Result<ActivePackage, String> {
        let sha256 = match expected_sha {
            Some(want) => {
                let got = sha256_file(path).map_err(|e| e.to_string())?;
                if &got != want {
                    return Err(format!(
                        "checksum mismatch: SHA-256 is {got}, the state expects {want}"
                    ));
                }
                Some(got)
            }
            None => None,
        };
        let package = Package::open(path).map_err(|e| e.to_string())?;
        let manifest = Manifest::from_package(&package).map_err(|e| e.to_string())?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        package.heap().use_shared_cache(self.cache.clone(), id);
        Ok(ActivePackage {
            id,
            layer,
            path: path.to_path_buf(),
            file_name,
            identity,
            package,
            manifest,
            sha256,
        })
    }

    /// Refuses packages whose `uses` nothing provides, until stable (a
    /// refused package's provides disappear with it).
    fn check_uses(&self, act: &mut Activation) {
        loop {
            let provided = |dep: &Dependency, me: &Arc<ActivePackage>, act: &Activation| {
                self.host_apis.iter().any(|p| dep.is_met_by(p))
                    || act.all().any(|o| {
                        !Arc::ptr_eq(o, me) && o.manifest.provides.iter().any(|p| dep.is_met_by(p))
                    })
            };
            let mut refused_now = Vec::new();
            for p in act.all() {
                if let Some(missing) = p.manifest.uses.iter().find(|u| !provided(u, p, act)) {
                    refused_now.push((
                        p.id,
                        format!("uses system API {missing}, which no active package provides"),
                    ));
                }
            }
            if refused_now.is_empty() {
                return;
            }
            for layer in act.layers.iter_mut() {
                layer.retain(|p| match refused_now.iter().find(|(id, _)| *id == p.id) {
                    Some((_, reason)) => {
                        act.refused.push(Refused {
                            layer: p.layer,
                            path: p.path.clone(),
                            reason: reason.clone(),
                        });
                        false
                    }
                    None => true,
                });
            }
        }
    }
}
