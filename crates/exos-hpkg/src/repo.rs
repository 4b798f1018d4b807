//! HPKR v2 repository indexes (spec §1.10): repository info (a flattened
//! BMessage) and one package-attribute set per package, with checksums.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::attr::{id, parse_string_table, AttrParser};
use crate::bmessage;
use crate::error::{corrupt, Result, ResultExt};
use crate::header::{RepoHeader, HPKR_HEADER_SIZE};
use crate::heap::HeapReader;
use crate::info::{Architecture, PackageInfo};

/// The repository's own description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub name: String,
    pub identifier: String,
    pub base_url: String,
    pub vendor: String,
    pub summary: String,
    pub priority: u8,
    pub architecture: Architecture,
    pub license_names: Vec<String>,
    pub license_texts: Vec<String>,
}

/// A parsed repository index.
#[derive(Debug, Clone)]
pub struct Repository {
    pub path: PathBuf,
    pub header: RepoHeader,
    pub info: RepositoryInfo,
    pub packages: Vec<PackageInfo>,
}

impl Repository {
    pub fn open(path: impl AsRef<Path>) -> Result<Repository> {
        let path = path.as_ref();
        let file = File::open(path).at(path)?;
        Repository::load(file, path).at(path)
    }

    /// Reads a repository from an already open file; `path` is used in errors.
    pub fn from_file(file: File, path: impl AsRef<Path>) -> Result<Repository> {
        let path = path.as_ref();
        Repository::load(file, path).at(path)
    }

    fn load(file: File, path: &Path) -> Result<Repository> {
        let file_size = file.metadata()?.len();
        let mut hb = vec![0u8; HPKR_HEADER_SIZE.min(file_size as usize)];
        file.read_exact_at(&mut hb, 0)?;
        let header = RepoHeader::parse(&hb, file_size)?;
        let heap = HeapReader::new(Arc::new(file), header.heap)?;

        let info_bytes = heap.read_vec(header.info_offset(), header.info_length as u64)?;
        let info = parse_info(&info_bytes)?;

        let section = heap.read_vec(header.packages_offset(), header.packages_length)?;
        let sl = header.packages_strings_length as usize;
        let strings = parse_string_table(
            "repository package strings",
            &section[..sl],
            header.packages_strings_count,
        )?;
        let mut p = AttrParser::new(
            "repository packages",
            &section[sl..],
            &strings,
            header.minor_version,
            header.heap.size_uncompressed,
        );
        let mut packages = Vec::new();
        while let Some(a) = p.next_attr()? {
            if a.id != id::PACKAGE {
                return Err(corrupt!(
                    "repository packages at byte {}: expected a package entry, found attribute id {}",
                    p.position(),
                    a.id
                ));
            }
            let mut pkg = PackageInfo {
                name: a.value.as_str().unwrap_or_default().to_string(),
                ..Default::default()
            };
            if a.has_children {
                while let Some(c) = p.next_attr()? {
                    pkg.apply(&mut p, c.id, c.value, c.has_children)?;
                }
            }
            packages.push(pkg);
        }
        p.expect_end()?;
        Ok(Repository {
            path: path.to_path_buf(),
            header,
            info,
            packages,
        })
    }
}

fn parse_info(b: &[u8]) -> Result<RepositoryInfo> {
    let mut info = RepositoryInfo::default();
    for f in bmessage::parse(b)? {
        let first = || f.strings().into_iter().next().unwrap_or_default();
        match f.name {
            "name" => info.name = first(),
            "identifier" => info.identifier = first(),
            "url" if info.identifier.is_empty() => info.identifier = first(),
            "baseUrl" => info.base_url = first(),
            "vendor" => info.vendor = first(),
            "summary" => info.summary = first(),
            "priority" => {
                info.priority = f
                    .items
                    .first()
                    .and_then(|i| i.first())
                    .copied()
                    .unwrap_or(0)
            }
            "architecture" => {
                let raw = f
                    .items
                    .first()
                    .and_then(|i| i.first())
                    .copied()
                    .unwrap_or(0);
                info.architecture = Architecture::from_raw(raw as u64)
                    .ok_or_else(|| corrupt!("repository info: architecture {raw} out of range"))?;
            }
            "licenseName" => info.license_names = f.strings(),
            "licenseText" => info.license_texts = f.strings(),
            _ => {}
        }
    }
    Ok(info)
}
