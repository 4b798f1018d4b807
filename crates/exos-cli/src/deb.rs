//! `exos import-deb`: Debian packages to EXOS packages (exos-deb does the work).

use std::path::PathBuf;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::output::Out;

#[derive(clap::Args)]
pub struct ImportDebArgs {
    /// Debian packages (.deb).
    #[arg(required = true)]
    pub debs: Vec<PathBuf>,
    /// Where the EXOS packages go (made if missing).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Heap compression: zstd (default: decompresses several times faster
    /// than zlib, so programs start faster from a mount), zlib (readable by
    /// Haiku's oldest tools), none.
    #[arg(short = 'c', long, value_enum, default_value = "zstd")]
    pub compression: crate::inspect::CompressionArg,
    /// Compression level (zlib 1-12, libdeflate's levels, default 9; zstd 1-22, default 9).
    #[arg(short, long)]
    pub level: Option<i32>,
    /// Refuse a .deb holding a file larger than this, unpacked (a small
    /// archive can hold gigabytes of zeros).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_file_mib: u64,
    /// Refuse a .deb whose data unpacks to more than this.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_package_mib: u64,
}

#[derive(serde::Serialize)]
pub struct ImportReport {
    pub packages: Vec<exos_deb::Imported>,
    /// The package with the top-level links of merged /usr (bin -> usr/bin, …).
    pub usr_links: PathBuf,
}

pub fn import(args: &ImportDebArgs, out: Out) -> Result<()> {
    std::fs::create_dir_all(&args.output).with_context(|| format!("{}", args.output.display()))?;
    let mut options = exos_hpkg::BuildOptions::with_compression(args.compression.into());
    if matches!(args.compression, crate::inspect::CompressionArg::Zstd) {
        options.level = exos_deb::import::DEFAULT_ZSTD_LEVEL;
    }
    if let Some(l) = args.level {
        options.level = l;
    }
    let limits = exos_deb::Limits {
        max_file: args.max_file_mib.saturating_mul(1 << 20),
        max_package: args.max_package_mib.saturating_mul(1 << 20),
    };
    let pb = crate::output::progress_bar(
        out,
        args.debs.len() as u64,
        "importing",
        crate::output::Counting::Items,
    );
    let packages = args
        .debs
        .par_iter()
        .map(|deb| {
            let imported = exos_deb::import_limited(deb, &args.output, &options, limits);
            if let Some(pb) = &pb {
                pb.inc(1);
            }
            imported
        })
        .collect::<Result<Vec<_>, _>>();
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let packages = packages?;
    let usr_links = exos_deb::usr_links_package(&args.output)?;
    let report = ImportReport {
        packages,
        usr_links,
    };
    out.report(&report, |r| {
        let mut text = String::new();
        for p in &r.packages {
            text.push_str(&format!(
                "{} {} -> {} ({} files{}{})\n",
                p.debian_name,
                p.debian_version,
                p.output.display(),
                p.files,
                if p.alternatives.is_empty() {
                    String::new()
                } else {
                    format!(", {} alternative links", p.alternatives.len())
                },
                if p.skipped.is_empty() {
                    String::new()
                } else {
                    format!(", {} device files dropped", p.skipped.len())
                },
            ));
        }
        text.push_str(&format!(
            "imported {} packages; top-level links of merged /usr in {}\n",
            r.packages.len(),
            r.usr_links.display()
        ));
        text
    })
}
