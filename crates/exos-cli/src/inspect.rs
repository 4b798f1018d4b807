//! `exos build`, `list`, `info`, `extract`, `checksum`: making and looking
//! into package files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use exos_hpkg::crypt::KeyRing;
use exos_hpkg::tree::ScanTotals;
use exos_hpkg::{
    BuildOptions, Compression, FileKind, OpenOptions, Package, PackageInfo, Repository,
};
use exos_manifest::Manifest;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::listing;
use crate::output::{bytes, write_json, Out};

#[derive(Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Zlib,
    Zstd,
    None,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::Zlib => Compression::Zlib,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::None => Compression::None,
        }
    }
}

#[derive(Args)]
pub struct BuildArgs {
    dir: PathBuf,
    /// Output file (default: <name>-<version>-<arch>.hpkg in the current directory).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Heap compression: zlib (Haiku's default, widest compatibility), zstd, none.
    #[arg(short = 'c', long, value_enum, default_value = "zlib")]
    compression: CompressionArg,
    /// Compression level (zlib 1-12, libdeflate's levels, default 9; zstd 1-22, default 19).
    #[arg(short, long)]
    level: Option<i32>,
    /// Compression threads (default: all cores).
    #[arg(short = 'j', long, default_value_t = 0)]
    threads: usize,
    /// Store identical files separately instead of once.
    #[arg(long)]
    no_dedup: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// A package or repository index file (not with --installed).
    #[arg(required_unless_present = "installed")]
    file: Option<PathBuf>,
    /// List the packages installed in a root instead: by layer, with
    /// version, origin, size and whether installed by name or as a
    /// dependency.
    #[arg(long, conflicts_with_all = ["file", "attributes", "info", "paths"])]
    installed: bool,
    #[command(flatten)]
    root: crate::RootArg,
    #[command(flatten)]
    mine: crate::users::Mine,
    /// Also list each entry's file attributes.
    #[arg(short, long)]
    attributes: bool,
    /// Only print the package attributes.
    #[arg(short, long)]
    info: bool,
    /// Only print entry paths.
    #[arg(short, long)]
    paths: bool,
    #[command(flatten)]
    keys: crate::keys::KeyArgs,
}

fn progress_bar(out: Out, total: u64, what: &str) -> Option<ProgressBar> {
    crate::output::progress_bar(out, total, what, crate::output::Counting::Bytes)
}

/// What `exos build` made.
#[derive(Serialize)]
pub struct BuildReport {
    pub output: PathBuf,
    pub name: String,
    pub version: exos_hpkg::Version,
    #[serde(flatten)]
    pub stats: exos_hpkg::BuildStats,
    pub seconds: f64,
}

/// Haiku's `package` and `package_repo` refuse a package without a
/// summary, a license and a copyright ("incomplete package-info"), and
/// `package_repo` takes a package only into a repository of the same
/// vendor. A manifest may leave them out (the design's own example does):
/// they get stated defaults, and each default is said.
fn fill_haiku_defaults(m: &mut Manifest) -> Vec<String> {
    let mut said = Vec::new();
    if m.summary.trim().is_empty() {
        m.summary = m.name.clone();
        said.push(format!(
            "no \"summary\": {:?} used (Haiku's tools need one)",
            m.name
        ));
    }
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|t| t.trim().is_empty());
    if blank(&m.license) {
        m.license = Some("Unknown".into());
        said.push("no \"license\": \"Unknown\" used (Haiku's tools need one; say which)".into());
    }
    if blank(&m.copyright) {
        m.copyright = Some("Unknown".into());
        said.push("no \"copyright\": \"Unknown\" used (Haiku's tools need one)".into());
    }
    if blank(&m.vendor) {
        said.push("no \"vendor\": \"EXOS\" used; Haiku's package_repo takes a package only into a repository of the same vendor".into());
    }
    said
}

pub fn build(args: &BuildArgs, out: Out) -> Result<()> {
    let dir = &args.dir;
    let manifest_path = dir.join("manifest.json");
    if !dir.is_dir() {
        bail!(
            "{}: {}; exos build takes a package directory (files and a manifest.json)",
            dir.display(),
            if dir.exists() {
                "not a directory"
            } else {
                "no such directory"
            }
        );
    }
    if !manifest_path.exists() {
        bail!(
            "{}: missing; a package directory needs a manifest.json with at least \"name\" and \"version\"",
            manifest_path.display()
        );
    }
    let mut manifest = Manifest::load(&manifest_path)?;
    for warning in fill_haiku_defaults(&mut manifest) {
        out.note(format_args!("{}: {warning}", manifest_path.display()));
    }
    for reserved in exos_root::RESERVED_NAMES {
        if std::fs::symlink_metadata(dir.join(reserved)).is_ok() {
            bail!(
                "{}: a package may not contain {reserved:?} at its top level: packagefs shows package metadata there",
                dir.join(reserved).display()
            );
        }
    }
    let info = manifest.to_package_info();
    let mut options = BuildOptions::with_compression(args.compression.into());
    if let Some(l) = args.level {
        options.level = l;
    }
    options.threads = args.threads;
    options.dedup = !args.no_dedup;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(info.canonical_file_name()));
    let t = Instant::now();
    // Created once the scan knows the total; read by the progress callback.
    let pb: std::cell::OnceCell<Option<ProgressBar>> = std::cell::OnceCell::new();
    let stats = exos_hpkg::build_from_dir(
        dir,
        &output,
        &info,
        options,
        &mut |totals: ScanTotals| {
            let _ = pb.set(progress_bar(out, totals.file_bytes, "building"));
        },
        &mut |done| {
            if let Some(Some(pb)) = pb.get() {
                pb.set_position(done)
            }
        },
    )?;
    if let Some(Some(pb)) = pb.get() {
        pb.finish_and_clear();
    }
    let report = BuildReport {
        output,
        name: info.name.clone(),
        version: info.version.clone(),
        stats,
        seconds: t.elapsed().as_secs_f64(),
    };
    if out.json {
        return write_json(&report);
    }
    let s = &report.stats;
    let ratio = if s.file_bytes > 0 {
        s.package_size as f64 / s.file_bytes as f64 * 100.0
    } else {
        100.0
    };
    out.note(format_args!(
        "built {} ({} {}): {} entries, {} of files -> {} ({ratio:.1}%), {} in {:.2?}",
        report.output.display(),
        report.name,
        report.version,
        s.entries,
        bytes(s.file_bytes),
        bytes(s.package_size),
        if s.deduplicated_bytes > 0 {
            format!("{} deduplicated", bytes(s.deduplicated_bytes))
        } else {
            "no duplicates".to_string()
        },
        t.elapsed()
    ));
    Ok(())
}

pub fn list(args: &ListArgs, out: Out) -> Result<()> {
    let Some(file) = &args.file else {
        return crate::query::list_installed(args.root.path()?, args.mine.name()?.as_ref(), out);
    };
    let opts = listing::ListOptions {
        attributes: args.attributes,
        info_only: args.info,
        paths_only: args.paths,
        escape_names: std::io::stdout().is_terminal(),
    };
    match exos_hpkg::detect(file)? {
        FileKind::Package => {
            let pkg = Package::open_with(file, &OpenOptions::with_keys(args.keys.ring()?))?;
            if out.json {
                return write_json(&listing::PackageListing::new(&pkg, opts));
            }
            listing::stream(|w| listing::render_package(&pkg, opts, w))
        }
        FileKind::Repository => {
            let repo = Repository::open(file)?;
            if out.json {
                return write_json(&listing::RepositoryListing::new(&repo));
            }
            listing::stream(|w| listing::render_repository(&repo, w))
        }
    }
}

/// `exos info` of a package.
#[derive(Serialize)]
pub struct PackageReport<'a> {
    pub kind: &'static str,
    pub path: &'a Path,
    pub format: Format,
    pub compression: &'static str,
    /// The package key's id when the file is sealed (`exos encrypt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_with: Option<String>,
    pub chunk_size: u32,
    pub chunks: u64,
    pub file_size: u64,
    pub heap_size_compressed: u64,
    pub heap_size_uncompressed: u64,
    pub toc_length: u64,
    pub attributes_length: u32,
    /// Memory opening it costs (index, attributes, chunk table).
    pub open_memory_bytes: u64,
    pub entries: usize,
    pub files: usize,
    pub info: &'a PackageInfo,
    /// `package` (manifest.json in the package) or `attributes` (derived).
    pub manifest_source: &'static str,
    pub manifest: Manifest,
}

#[derive(Serialize)]
pub struct Format {
    pub version: u16,
    pub minor_version: u16,
}

/// `exos info` of a repository index.
#[derive(Serialize)]
pub struct RepositoryReport<'a> {
    pub kind: &'static str,
    pub path: &'a Path,
    pub format: Format,
    pub compression: &'static str,
    pub file_size: u64,
    #[serde(flatten)]
    pub info: &'a exos_hpkg::RepositoryInfo,
    pub packages: usize,
}

pub fn info(file: &Path, keys: &KeyRing, out: Out) -> Result<()> {
    match exos_hpkg::detect(file)? {
        FileKind::Package => {
            let pkg = Package::open_with(file, &OpenOptions::with_keys(keys.clone()))?;
            let h = pkg.header();
            let toc = pkg.toc();
            let has_manifest = toc
                .lookup(toc.root().id(), exos_manifest::MANIFEST_FILE)
                .is_some();
            let report = PackageReport {
                kind: "package",
                path: file,
                format: Format {
                    version: h.version,
                    minor_version: h.minor_version,
                },
                compression: h.heap.compression.name(),
                encrypted_with: pkg.sealed_with().map(|k| k.to_string()),
                chunk_size: exos_hpkg::header::CHUNK_SIZE,
                chunks: pkg.heap().chunk_count(),
                file_size: h.total_size,
                heap_size_compressed: h.heap.size_compressed,
                heap_size_uncompressed: h.heap.size_uncompressed,
                toc_length: h.toc_length,
                attributes_length: h.attributes_length,
                open_memory_bytes: pkg.memory_usage(),
                entries: toc.walk().count(),
                files: toc
                    .walk()
                    .filter(|(_, e)| e.kind() == exos_hpkg::EntryKind::File)
                    .count(),
                info: pkg.info(),
                manifest_source: if has_manifest {
                    "package"
                } else {
                    "attributes"
                },
                manifest: Manifest::from_package(&pkg)?,
            };
            out.result(&report, |r| {
                let mut s = String::new();
                s += &format!("file:          {}\n", file.display());
                s += &format!(
                    "format:        HPKG {}.{}\n",
                    r.format.version, r.format.minor_version
                );
                s += &format!(
                    "compression:   {} ({} chunks of 64 KiB)\n",
                    r.compression, r.chunks
                );
                if let Some(k) = &r.encrypted_with {
                    s += &format!("encryption:    AES-256-GCM, package key {k}\n");
                }
                s += &format!(
                    "file size:     {} ({} bytes)\n",
                    bytes(r.file_size),
                    r.file_size
                );
                s += &format!(
                    "heap:          {} compressed, {} uncompressed\n",
                    bytes(r.heap_size_compressed),
                    bytes(r.heap_size_uncompressed)
                );
                s += &format!("entries:       {} ({} files)\n", r.entries, r.files);
                s += &format!("TOC:           {} bytes\n", r.toc_length);
                s += &format!("attributes:    {} bytes\n", r.attributes_length);
                s += &format!(
                    "open memory:   {} (index, attributes, chunk table)\n",
                    bytes(r.open_memory_bytes)
                );
                s += &format!(
                    "manifest:      {}\n",
                    if has_manifest {
                        "manifest.json in the package"
                    } else {
                        "derived from the package attributes"
                    }
                );
                listing::render_info(&mut s, r.info);
                if r.manifest.essential {
                    s += "\tessential (removing it needs --force)\n";
                }
                if !r.manifest.uses.is_empty() {
                    s += "\tuses:\n";
                    for u in &r.manifest.uses {
                        s += &format!("\t\t{u}\n");
                    }
                }
                s
            })
        }
        FileKind::Repository => {
            let repo = Repository::open(file)?;
            let h = &repo.header;
            let report = RepositoryReport {
                kind: "repository",
                path: file,
                format: Format {
                    version: h.version,
                    minor_version: h.minor_version,
                },
                compression: h.heap.compression.name(),
                file_size: h.total_size,
                info: &repo.info,
                packages: repo.len(),
            };
            out.result(&report, |r| {
                let i = r.info;
                format!(
                    "file:          {}\nformat:        HPKR {}.{}\ncompression:   {}\nname:          {}\nidentifier:    {}\nbase URL:      {}\nvendor:        {}\nsummary:       {}\npriority:      {}\narchitecture:  {}\npackages:      {}\n",
                    file.display(), r.format.version, r.format.minor_version, r.compression,
                    i.name, i.identifier, i.base_url, i.vendor, i.summary, i.priority,
                    i.architecture, r.packages
                )
            })
        }
    }
}

/// What `exos extract` wrote.
#[derive(Serialize)]
pub struct ExtractReport<'a> {
    pub destination: &'a Path,
    #[serde(flatten)]
    pub stats: crate::extract::ExtractStats,
    pub seconds: f64,
}

fn subtree_bytes(e: exos_hpkg::Entry<'_>) -> u64 {
    e.size() + e.children().map(subtree_bytes).sum::<u64>()
}

pub fn extract(
    package: &Path,
    dir: &Path,
    path: Option<&str>,
    keys: &KeyRing,
    out: Out,
) -> Result<()> {
    let pkg = Package::open_with(package, &OpenOptions::with_keys(keys.clone()))?;
    let total = match path {
        Some(p) => pkg.toc().lookup_path(p).map_or(0, |e| subtree_bytes(e)),
        None => subtree_bytes(pkg.toc().root()),
    };
    let pb = progress_bar(out, total, "extracting");
    let t = Instant::now();
    let stats = crate::extract::extract(&pkg, dir, path, &|b| {
        if let Some(pb) = &pb {
            pb.set_position(b)
        }
    })?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let report = ExtractReport {
        destination: dir,
        stats,
        seconds: t.elapsed().as_secs_f64(),
    };
    if out.json {
        return write_json(&report);
    }
    out.note(format_args!(
        "extracted {} entries ({}) to {} in {:.2?}",
        stats.entries,
        bytes(stats.bytes),
        dir.display(),
        t.elapsed()
    ));
    if stats.attributes_skipped > 0 {
        out.note(format_args!(
            "{} file attributes not stored (no extended attribute support for them here)",
            stats.attributes_skipped
        ));
    }
    Ok(())
}

/// One line of `exos checksum`.
#[derive(Serialize)]
pub struct Checksum<'a> {
    pub file: &'a Path,
    pub sha256: exos_root::Sha256,
}

pub fn checksum(files: &[PathBuf], out: Out) -> Result<()> {
    let sums = files
        .iter()
        .map(|f| {
            Ok(Checksum {
                file: f,
                sha256: exos_root::Sha256::of_file(f).with_context(|| f.display().to_string())?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    out.result(&sums, |sums| {
        sums.iter()
            .map(|c| format!("{}  {}\n", c.sha256, c.file.display()))
            .collect()
    })
}
