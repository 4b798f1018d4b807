//! `exos`: the EXOS package tool.
//!
//! Exit codes: 0 success, 1 operational error (I/O, bad arguments' targets),
//! 2 usage error, 3 the package or repository file is invalid, 4 no
//! consistent set of packages exists for the request.

#![forbid(unsafe_code)]

mod extract;
mod listing;
mod manage;
mod mount;
mod resolve;
// Shared with exos-mountd, which runs `serve::serve`.
#[allow(dead_code)]
mod serve;
mod sources;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use exos_hpkg::tree::ScanTotals;
use exos_hpkg::{BuildOptions, Compression, FileKind, Package, Repository};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

// Resolution builds tens of thousands of small objects; mimalloc is
// markedly faster than glibc's allocator at that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "exos",
    version,
    about = "Build, inspect and extract EXOS packages (Haiku HPKG v2)"
)]
struct Cli {
    /// Print nothing but errors (and the requested data).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Zlib,
    Zstd,
    None,
}

#[derive(Subcommand)]
enum Command {
    /// Build a package from DIR; metadata comes from DIR/manifest.json.
    Build {
        dir: PathBuf,
        /// Output file (default: <name>-<version>-<arch>.hpkg in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Heap compression: zlib (Haiku's default, widest compatibility), zstd, none.
        #[arg(short = 'c', long, value_enum, default_value = "zlib")]
        compression: CompressionArg,
        /// Compression level (zlib 1-9, default 9; zstd 1-22, default 19).
        #[arg(short, long)]
        level: Option<i32>,
        /// Compression threads (default: all cores).
        #[arg(short = 'j', long, default_value_t = 0)]
        threads: usize,
        /// Store identical files separately instead of once.
        #[arg(long)]
        no_dedup: bool,
    },
    /// List a package's attributes and entries (like Haiku's `package list`), or a repository's packages.
    List {
        file: PathBuf,
        /// Also list each entry's file attributes.
        #[arg(short, long)]
        attributes: bool,
        /// Only print the package attributes.
        #[arg(short, long)]
        info: bool,
        /// Only print entry paths.
        #[arg(short, long)]
        paths: bool,
    },
    /// Show header, compression, sizes and package attributes.
    Info {
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Extract a package (or one path of it) into DIR.
    Extract {
        package: PathBuf,
        dir: PathBuf,
        /// Only this path inside the package.
        #[arg(long)]
        path: Option<String>,
    },
    /// Print the SHA-256 of a file, as repositories record it.
    Checksum { files: Vec<PathBuf> },
    /// Compute what installing, removing or upgrading would change (dry run).
    Resolve(resolve::ResolveArgs),
    /// Mount the active packages of an EXOS root (FUSE); stays in the foreground unless --daemon.
    Mount(serve::MountArgs),
    /// Unmount an exos mount.
    Unmount { mountpoint: PathBuf },
    /// Create an EXOS root: system/, common/, user/ packages, state, data.
    Init { root: PathBuf },
    /// Install package files (dependencies checked; atomically; a new state).
    Install {
        packages: Vec<PathBuf>,
        /// Layer to install into.
        #[arg(short, long, value_enum, default_value = "system")]
        layer: manage::LayerArg,
        #[command(flatten)]
        change: manage::ChangeArgs,
    },
    /// Remove packages by name, with whatever can no longer work without them.
    Remove {
        names: Vec<String>,
        #[command(flatten)]
        change: manage::ChangeArgs,
    },
    /// Upgrade packages (all when none named) from -a sources.
    Upgrade {
        names: Vec<String>,
        /// Layer for packages newly pulled in.
        #[arg(short, long, value_enum, default_value = "system")]
        layer: manage::LayerArg,
        #[command(flatten)]
        change: manage::ChangeArgs,
    },
    /// Make an earlier state current again (default: the one before the current).
    Rollback {
        state: Option<u64>,
        #[arg(short, long, env = "EXOS_ROOT")]
        root: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List, show and compare states.
    #[command(subcommand)]
    State(manage::StateCommand),
    /// Delete old states and the package files only they used.
    Gc {
        #[arg(short, long, env = "EXOS_ROOT")]
        root: PathBuf,
        /// How many of the newest states to keep (the current one is always kept).
        #[arg(long, default_value_t = 5)]
        keep: usize,
    },
    /// Verify that every state's package files are present with the right hash.
    Check {
        #[arg(short, long, env = "EXOS_ROOT")]
        root: PathBuf,
    },
    /// Show what a mount has active and refused, and why.
    Status {
        mountpoint: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is::<resolve::Reported>() {
                eprintln!("exos: {e:#}");
            }
            let invalid = e.chain().any(|c| {
                c.downcast_ref::<exos_hpkg::Error>()
                    .is_some_and(|e| e.is_format_error())
            });
            let unsolvable = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<exos_resolve::ResolveError>(),
                    Some(exos_resolve::ResolveError::Unsatisfiable(_))
                ) || c.is::<resolve::Reported>()
            });
            ExitCode::from(if unsolvable {
                4
            } else if invalid {
                3
            } else {
                1
            })
        }
    }
}

fn progress_bar(quiet: bool, total: u64, what: &str) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    Some(pb)
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Build {
            dir,
            output,
            compression,
            level,
            threads,
            no_dedup,
        } => build(
            cli.quiet,
            dir,
            output.as_deref(),
            *compression,
            *level,
            *threads,
            !*no_dedup,
        ),
        Command::List {
            file,
            attributes,
            info,
            paths,
        } => {
            let stdout = std::io::stdout().lock();
            let mut out = std::io::BufWriter::new(stdout);
            let written = match exos_hpkg::detect(file)? {
                FileKind::Package => listing::render_package(
                    &Package::open(file)?,
                    listing::ListOptions {
                        attributes: *attributes,
                        info_only: *info,
                        paths_only: *paths,
                    },
                    &mut out,
                ),
                FileKind::Repository => {
                    listing::render_repository(&Repository::open(file)?, &mut out)
                }
            }
            .and_then(|_| out.flush());
            match written {
                // `exos list | head` is a success.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.context("writing to standard output"),
            }
        }
        Command::Info { file, json } => info(file, *json),
        Command::Extract { package, dir, path } => {
            let pkg = Package::open(package)?;
            let total = match path {
                Some(p) => pkg.toc().lookup_path(p).map_or(0, |e| subtree_bytes(e)),
                None => subtree_bytes(pkg.toc().root()),
            };
            let pb = progress_bar(cli.quiet, total, "extracting");
            let t = Instant::now();
            let stats = extract::extract(&pkg, dir, path.as_deref(), &mut |b| {
                if let Some(pb) = &pb {
                    pb.set_position(b)
                }
            })?;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            if !cli.quiet {
                eprintln!(
                    "extracted {} entries ({}) to {} in {:.2?}",
                    stats.entries,
                    human_bytes(stats.bytes),
                    dir.display(),
                    t.elapsed()
                );
                if stats.attributes_skipped > 0 {
                    eprintln!(
                        "note: {} file attributes not stored (no extended attribute support for them here)",
                        stats.attributes_skipped
                    );
                }
            }
            Ok(())
        }
        Command::Checksum { files } => {
            if files.is_empty() {
                bail!("no file given");
            }
            let mut out = String::new();
            for f in files {
                out.push_str(&format!("{}  {}\n", sha256_file(f)?, f.display()));
            }
            write_stdout(&out)
        }
        Command::Resolve(args) => resolve::run(args, cli.quiet),
        Command::Mount(args) => mount::mount(args, cli.quiet),
        Command::Unmount { mountpoint } => mount::unmount(mountpoint),
        Command::Status { mountpoint, json } => mount::status(mountpoint, *json),
        Command::Init { root } => manage::init(root),
        Command::Install {
            packages,
            layer,
            change,
        } => manage::install(change, packages, *layer, cli.quiet),
        Command::Remove { names, change } => manage::remove(change, names, cli.quiet),
        Command::Upgrade {
            names,
            layer,
            change,
        } => manage::upgrade(change, names, *layer, cli.quiet),
        Command::Rollback { state, root, json } => manage::rollback(root, *state, *json, cli.quiet),
        Command::State(cmd) => manage::state(cmd),
        Command::Gc { root, keep } => manage::gc(root, *keep),
        Command::Check { root } => manage::check(root),
    }
}

/// Writes to stdout, treating a closed pipe (`exos list | head`) as success.
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

fn subtree_bytes(e: exos_hpkg::Entry<'_>) -> u64 {
    e.size() + e.children().map(subtree_bytes).sum::<u64>()
}

fn build(
    quiet: bool,
    dir: &Path,
    output: Option<&Path>,
    compression: CompressionArg,
    level: Option<i32>,
    threads: usize,
    dedup: bool,
) -> Result<()> {
    let manifest_path = dir.join("manifest.json");
    if !manifest_path.exists() {
        bail!(
            "{}: missing; a package directory needs a manifest.json with at least \"name\" and \"version\"",
            manifest_path.display()
        );
    }
    let manifest = exos_manifest::Manifest::load(&manifest_path)?;
    // Haiku's `package` and `package_repo` refuse a package without these
    // ("incomplete package-info"); vendor, packager and description have
    // defaults.
    let missing: Vec<&str> = [
        ("summary", manifest.summary.trim().is_empty()),
        (
            "license",
            manifest
                .license
                .as_deref()
                .is_none_or(|l| l.trim().is_empty()),
        ),
        (
            "copyright",
            manifest
                .copyright
                .as_deref()
                .is_none_or(|c| c.trim().is_empty()),
        ),
    ]
    .into_iter()
    .filter_map(|(key, absent)| absent.then_some(key))
    .collect();
    if !missing.is_empty() {
        bail!(
            "{}: missing {}: every package needs \"summary\", \"license\" and \"copyright\" (Haiku's tools refuse a package without them)",
            manifest_path.display(),
            missing.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
        );
    }
    for reserved in exos_packagefs::activate::RESERVED_NAMES {
        if std::fs::symlink_metadata(dir.join(reserved)).is_ok() {
            bail!(
                "{}: a package may not contain {reserved:?} at its top level: packagefs shows package metadata there",
                dir.join(reserved).display()
            );
        }
    }
    let info = manifest.to_package_info();
    let compression = match compression {
        CompressionArg::Zlib => Compression::Zlib,
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::None => Compression::None,
    };
    let mut options = BuildOptions::with_compression(compression);
    if let Some(l) = level {
        options.level = l;
    }
    options.threads = threads;
    options.dedup = dedup;
    let output = output
        .map(Path::to_path_buf)
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
            let _ = pb.set(progress_bar(quiet, totals.file_bytes, "building"));
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
    if !quiet {
        let ratio = if stats.file_bytes > 0 {
            stats.package_size as f64 / stats.file_bytes as f64 * 100.0
        } else {
            100.0
        };
        eprintln!(
            "built {} ({} {}): {} entries, {} of files -> {} ({ratio:.1}%), {} in {:.2?}",
            output.display(),
            info.name,
            info.version,
            stats.entries,
            human_bytes(stats.file_bytes),
            human_bytes(stats.package_size),
            if stats.deduplicated_bytes > 0 {
                format!("{} deduplicated", human_bytes(stats.deduplicated_bytes))
            } else {
                "no duplicates".to_string()
            },
            t.elapsed()
        );
    }
    Ok(())
}

fn info(file: &Path, json: bool) -> Result<()> {
    let text = match exos_hpkg::detect(file)? {
        FileKind::Package => {
            let pkg = Package::open(file)?;
            let h = pkg.header();
            let i = pkg.info();
            let entries = pkg.toc().walk().count();
            let files = pkg
                .toc()
                .walk()
                .filter(|(_, e)| e.kind() == exos_hpkg::EntryKind::File)
                .count();
            if json {
                let v = json!({
                    "kind": "package",
                    "path": file,
                    "format": { "version": h.version, "minor_version": h.minor_version },
                    "compression": h.heap.compression.name(),
                    "chunk_size": exos_hpkg::header::CHUNK_SIZE,
                    "chunks": pkg.heap().chunk_count(),
                    "file_size": h.total_size,
                    "heap_size_compressed": h.heap.size_compressed,
                    "heap_size_uncompressed": h.heap.size_uncompressed,
                    "toc_length": h.toc_length,
                    "attributes_length": h.attributes_length,
                    "open_memory_bytes": pkg.memory_usage(),
                    "entries": entries,
                    "files": files,
                    "info": info_json(i),
                    "manifest_source": manifest_source(&pkg),
                    "manifest": exos_manifest::Manifest::from_package(&pkg)?.to_json(),
                });
                serde_json::to_string_pretty(&v)? + "\n"
            } else {
                let mut s = String::new();
                s += &format!("file:          {}\n", file.display());
                s += &format!("format:        HPKG {}.{}\n", h.version, h.minor_version);
                s += &format!(
                    "compression:   {} ({} chunks of 64 KiB)\n",
                    h.heap.compression,
                    pkg.heap().chunk_count()
                );
                s += &format!(
                    "file size:     {} ({} bytes)\n",
                    human_bytes(h.total_size),
                    h.total_size
                );
                s += &format!(
                    "heap:          {} compressed, {} uncompressed\n",
                    human_bytes(h.heap.size_compressed),
                    human_bytes(h.heap.size_uncompressed)
                );
                s += &format!("entries:       {entries} ({files} files)\n");
                s += &format!("TOC:           {} bytes\n", h.toc_length);
                s += &format!("attributes:    {} bytes\n", h.attributes_length);
                s += &format!(
                    "open memory:   {} (index, attributes, chunk table)\n",
                    human_bytes(pkg.memory_usage())
                );
                s += &format!("manifest:      {}\n", manifest_source(&pkg));
                listing::render_info(&mut s, i);
                let m = exos_manifest::Manifest::from_package(&pkg)?;
                if !m.uses.is_empty() {
                    s += "\tuses:\n";
                    for u in &m.uses {
                        s += &format!("\t\t{u}\n");
                    }
                }
                s
            }
        }
        FileKind::Repository => {
            let repo = Repository::open(file)?;
            let h = &repo.header;
            let r = &repo.info;
            if json {
                let v = json!({
                    "kind": "repository",
                    "path": file,
                    "format": { "version": h.version, "minor_version": h.minor_version },
                    "compression": h.heap.compression.name(),
                    "file_size": h.total_size,
                    "name": r.name, "identifier": r.identifier, "base_url": r.base_url,
                    "vendor": r.vendor, "summary": r.summary, "priority": r.priority,
                    "architecture": r.architecture.name(),
                    "licenses": r.license_names,
                    "packages": repo.packages().map(|p| info_json(&p)).collect::<Vec<_>>(),
                });
                serde_json::to_string_pretty(&v)? + "\n"
            } else {
                format!(
                    "file:          {}\nformat:        HPKR {}.{}\ncompression:   {}\nname:          {}\nidentifier:    {}\nvendor:        {}\nsummary:       {}\npriority:      {}\narchitecture:  {}\npackages:      {}\n",
                    file.display(), h.version, h.minor_version, h.heap.compression, r.name, r.identifier,
                    r.vendor, r.summary, r.priority, r.architecture, repo.len()
                )
            }
        }
    };
    write_stdout(&text)
}

fn manifest_source(pkg: &Package) -> &'static str {
    let toc = pkg.toc();
    if toc
        .lookup(toc.root().id(), exos_manifest::MANIFEST_FILE)
        .is_some()
    {
        "manifest.json in the package"
    } else {
        "derived from the package attributes"
    }
}

fn info_json(i: &exos_hpkg::PackageInfo) -> serde_json::Value {
    json!({
        "name": i.name,
        "version": i.version.to_string(),
        "architecture": i.architecture.name(),
        "summary": i.summary,
        "description": i.description,
        "vendor": i.vendor,
        "packager": i.packager,
        "flags": i.flags,
        "copyrights": i.copyrights,
        "licenses": i.licenses,
        "urls": i.urls,
        "source_urls": i.source_urls,
        "provides": i.provides.iter().map(|p| json!({
            "name": p.name,
            "version": p.version.as_ref().map(|v| v.to_string()),
            "compatible": p.compatible.as_ref().map(|v| v.to_string()),
        })).collect::<Vec<_>>(),
        "requires": i.requires.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "supplements": i.supplements.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "conflicts": i.conflicts.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "freshens": i.freshens.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "replaces": i.replaces,
        "checksum": (!i.checksum.is_empty()).then_some(&i.checksum),
    })
}

fn sha256_file(path: &Path) -> Result<String> {
    exos_hpkg::sha256_file(path).with_context(|| path.display().to_string())
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
