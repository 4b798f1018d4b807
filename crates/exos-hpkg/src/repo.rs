//! HPKR v2 repository indexes (spec §1.10): repository info (a flattened
//! BMessage) and one package-attribute set per package, with checksums.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::attr::{id, parse_string_table, AttrParser};
use crate::bmessage;
use crate::budget::{Budget, Limits};
use crate::error::{corrupt, Result, ResultExt};
use crate::header::{RepoHeader, HPKR_HEADER_SIZE};
use crate::heap::HeapReader;
use crate::info::{Architecture, PackageInfo};

/// The repository's own description.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepositoryInfo {
    /// The repository's name.
    pub name: String,
    /// A URL naming it.
    pub identifier: String,
    /// Where packages are fetched from.
    pub base_url: String,
    /// Who publishes it.
    pub vendor: String,
    /// One line about it.
    pub summary: String,
    /// Its priority among repositories.
    pub priority: u8,
    /// Its architecture.
    pub architecture: Architecture,
    /// Names of licences it lists.
    pub license_names: Vec<String>,
    /// Their texts.
    pub license_texts: Vec<String>,
}

/// An open repository index. The packages section is kept as read and
/// decoded one package at a time ([`Repository::packages`]): a repository's
/// decoded metadata is many times its compressed size, and callers that
/// list, search or convert packages never need them all at once.
#[derive(Debug, Clone)]
pub struct Repository {
    /// The file's path.
    pub path: PathBuf,
    /// The validated header.
    pub header: RepoHeader,
    /// The repository's description.
    pub info: RepositoryInfo,
    /// The decompressed packages section.
    section: Vec<u8>,
    count: usize,
}

impl Repository {
    /// Opens a repository index and validates every package entry, within
    /// the default memory [`Limits`] (for the section; each package is
    /// decoded within its own budget).
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
        let budget = Budget::new(Limits::default(), file_size);
        let mut hb = vec![0u8; HPKR_HEADER_SIZE.min(file_size as usize)];
        file.read_exact_at(&mut hb, 0)?;
        let header = RepoHeader::parse(&hb, file_size)?;
        let heap = HeapReader::new(Arc::new(file), header.heap, &budget)?;

        budget.charge(header.info_length as u64, "repository info")?;
        let info_bytes = heap.read_vec(header.info_offset(), header.info_length as u64)?;
        let info = parse_info(&info_bytes, &budget)?;

        budget.charge(header.packages_length, "repository packages")?;
        let section = heap.read_vec(header.packages_offset(), header.packages_length)?;
        let mut repo = Repository {
            path: path.to_path_buf(),
            header,
            info,
            section,
            count: 0,
        };
        let mut count = 0;
        {
            for p in repo.decoder(&budget)? {
                p?;
                count += 1;
            }
        }
        repo.count = count;
        Ok(repo)
    }

    /// Number of packages in the index.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it lists no package.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The packages, decoded one at a time (every entry was validated at
    /// open, so errors here only follow a failed allocation budget).
    pub fn packages(&self) -> impl Iterator<Item = PackageInfo> + '_ {
        // The table costs 16 bytes per string, at most 8 × the table's size;
        // the section already passed this check at open.
        let budget = Budget::unlimited();
        let decoder = self.decoder(&budget).ok();
        decoder.into_iter().flat_map(|d| d.map_while(|p| p.ok()))
    }

    fn decoder(&self, budget: &Budget) -> Result<PackageDecoder<'_>> {
        let sl = usize::try_from(self.header.packages_strings_length)
            .ok()
            .filter(|&l| l <= self.section.len())
            .ok_or_else(|| corrupt!("repository package strings exceed the section"))?;
        let strings = parse_string_table(
            "repository package strings",
            &self.section[..sl],
            self.header.packages_strings_count,
            budget,
        )?;
        Ok(PackageDecoder {
            repo: self,
            body: &self.section[sl..],
            strings,
            position: 0,
            done: false,
        })
    }
}

/// Decodes the packages section one package at a time, each within a
/// budget of its own.
struct PackageDecoder<'a> {
    repo: &'a Repository,
    body: &'a [u8],
    strings: Vec<&'a [u8]>,
    position: usize,
    done: bool,
}

impl Iterator for PackageDecoder<'_> {
    type Item = Result<PackageInfo>;

    fn next(&mut self) -> Option<Result<PackageInfo>> {
        if self.done {
            return None;
        }
        let r = self.decode_one();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r.transpose()
    }
}

impl PackageDecoder<'_> {
    fn decode_one(&mut self) -> Result<Option<PackageInfo>> {
        let budget = Budget::new(Limits::default(), 0);
        let mut p = AttrParser::new(
            "repository packages",
            self.body,
            &self.strings,
            self.repo.header.minor_version,
            self.repo.header.heap.size_uncompressed,
            &budget,
        );
        p.seek(self.position);
        let Some(a) = p.next_attr()? else {
            p.expect_end()?;
            return Ok(None);
        };
        if a.id != id::PACKAGE {
            return Err(corrupt!(
                "repository packages at byte {}: expected a package entry, found attribute id {}",
                p.position(),
                a.id
            ));
        }
        let name = a.value.as_str().ok_or_else(|| {
            corrupt!(
                "repository packages at byte {}: the package name is not a UTF-8 string",
                p.position()
            )
        })?;
        crate::info::check_name(name).map_err(|e| {
            corrupt!(
                "repository packages at byte {}: package name {name:?} is invalid: {e}",
                p.position()
            )
        })?;
        p.charge(name.len())?;
        let mut pkg = PackageInfo {
            name: name.to_string(),
            ..Default::default()
        };
        if a.has_children {
            while let Some(c) = p.next_attr()? {
                pkg.apply(&mut p, c.id, c.value, c.has_children)?;
            }
        }
        self.position = p.position();
        Ok(Some(pkg))
    }
}

impl RepositoryInfo {
    /// Parses a repository-info section (a flattened BMessage), within the
    /// default memory limits for its size.
    pub fn parse(bytes: &[u8]) -> Result<RepositoryInfo> {
        parse_info(bytes, &Budget::new(Limits::default(), bytes.len() as u64))
    }
}

fn parse_info(b: &[u8], budget: &Budget) -> Result<RepositoryInfo> {
    let mut info = RepositoryInfo::default();
    for f in bmessage::parse(b, budget)? {
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
    if info.base_url.is_empty() && info.identifier.starts_with("http") {
        // Haiku's rule: without a base URL, an http(s) identifier is one.
        info.base_url = info.identifier.clone();
    }
    Ok(info)
}
