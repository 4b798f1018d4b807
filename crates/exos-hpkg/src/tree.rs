//! Packing a directory tree: scan it (sorted, so builds are reproducible),
//! then stream every entry into a [`PackageBuilder`].
//!
//! Haiku file attributes are taken from `user.haiku.<NAME>` extended
//! attributes (value = 4-byte type code, little-endian, then the data) —
//! the convention of Haiku's own Linux host tools (spec §1.15). Devices,
//! FIFOs and sockets cannot be represented and are refused by name.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, ResultExt};
use crate::info::PackageInfo;
use crate::toc::{check_entry_name, Timestamp};
use crate::writer::{BuildOptions, BuildStats, EntryMeta, FileData, PackageBuilder};

/// Files up to this size are read whole (one read, hashed in memory);
/// larger ones are hashed in a first pass and streamed in a second.
const SMALL_FILE: u64 = 8 << 20;

/// Prefix of the extended attributes that carry Haiku file attributes.
pub const HAIKU_XATTR_PREFIX: &str = "user.haiku.";

/// Name of the generated metadata file Haiku's tools expect at the root.
pub const PACKAGE_INFO_FILE: &str = ".PackageInfo";

enum ScanKind {
    Dir(Vec<ScanEntry>),
    File,
    Symlink(Vec<u8>),
    /// A file made by the build (the generated `.PackageInfo`).
    Generated(Vec<u8>),
}

struct ScanEntry {
    /// As the file system has it: bytes, UTF-8 or not (as Haiku's tools).
    name: Vec<u8>,
    path: PathBuf,
    meta: EntryMeta,
    kind: ScanKind,
}

/// What a scan found, for progress reporting before the build starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanTotals {
    /// Entries found.
    pub entries: u64,
    /// Bytes of regular files.
    pub file_bytes: u64,
}

/// Progress callback: bytes of file data packed so far.
pub type Progress<'a> = &'a mut dyn FnMut(u64);

/// Packs `dir` into a package at `out` with metadata `info`.
///
/// A `.PackageInfo` text file is generated at the root unless `dir` already
/// has one, so a package extracted later can be rebuilt by Haiku's tools.
pub fn build_from_dir(
    dir: &Path,
    out: &Path,
    info: &PackageInfo,
    options: BuildOptions,
    on_scan: &mut dyn FnMut(ScanTotals),
    progress: Progress<'_>,
) -> Result<BuildStats> {
    let mut totals = ScanTotals::default();
    let root_meta = fs::symlink_metadata(dir).at(dir)?;
    if !root_meta.is_dir() {
        return Err(Error::unsupported("not a directory").with_path(dir));
    }
    let mut entries = scan_dir(dir, &mut totals, 0)?;
    if let Err(at) =
        entries.binary_search_by(|e| e.name.as_slice().cmp(PACKAGE_INFO_FILE.as_bytes()))
    {
        // Generated in its sorted place, dated like the manifest it comes
        // from: extracting and rebuilding then gives the same bytes.
        let dated = fs::symlink_metadata(dir.join("manifest.json")).unwrap_or(root_meta);
        entries.insert(
            at,
            ScanEntry {
                name: PACKAGE_INFO_FILE.into(),
                path: dir.join(PACKAGE_INFO_FILE),
                meta: EntryMeta {
                    mtime: timestamp(dated.mtime(), dated.mtime_nsec()),
                    ..Default::default()
                },
                kind: ScanKind::Generated(info.to_package_info_text().into_bytes()),
            },
        );
    }
    on_scan(totals);
    let mut b = PackageBuilder::create(out, options)?;
    let mut done = 0u64;
    let mut buf = Vec::new();
    for e in &entries {
        add_entry(&mut b, e, &mut buf, &mut done, progress)?;
    }
    b.finish(info)
}

fn timestamp(secs: i64, nanos: i64) -> Timestamp {
    // HPKG times are unsigned; clamp pre-1970 times to the epoch.
    if secs < 0 {
        return Timestamp::default();
    }
    Timestamp {
        secs: secs as u64,
        nanos: nanos.clamp(0, 999_999_999) as u32,
    }
}

fn scan_dir(dir: &Path, totals: &mut ScanTotals, depth: usize) -> Result<Vec<ScanEntry>> {
    if depth > crate::attr::MAX_DEPTH {
        return Err(Error::unsupported("directories nested too deeply").with_path(dir));
    }
    let mut names: Vec<_> = fs::read_dir(dir)
        .at(dir)?
        .map(|r| r.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .at(dir)?;
    // Byte order, independent of locale and of the directory's on-disk order.
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut out = Vec::with_capacity(names.len());
    for os_name in names {
        let path = dir.join(&os_name);
        let name = os_name.into_vec();
        check_entry_name(&name).map_err(|e| Error::unsupported(e).with_path(&path))?;
        let md = fs::symlink_metadata(&path).at(&path)?;
        let ft = md.file_type();
        let meta = EntryMeta {
            permissions: Some((md.permissions().mode() & 0o7777) as u16),
            mtime: timestamp(md.mtime(), md.mtime_nsec()),
            atime: None,
            crtime: None,
            attributes: read_haiku_attributes(&path)?,
        };
        let kind = if ft.is_dir() {
            ScanKind::Dir(scan_dir(&path, totals, depth + 1)?)
        } else if ft.is_file() {
            totals.file_bytes += md.len();
            ScanKind::File
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).at(&path)?;
            ScanKind::Symlink(target.into_os_string().into_vec())
        } else {
            return Err(Error::unsupported(
                "cannot be packaged: not a regular file, directory or symlink (device, FIFO or socket)",
            )
            .with_path(&path));
        };
        totals.entries += 1;
        out.push(ScanEntry {
            name,
            path,
            meta,
            kind,
        });
    }
    Ok(out)
}

fn add_entry(
    b: &mut PackageBuilder,
    e: &ScanEntry,
    buf: &mut Vec<u8>,
    done: &mut u64,
    progress: Progress<'_>,
) -> Result<()> {
    match &e.kind {
        ScanKind::Dir(children) => {
            b.begin_directory(&e.name, e.meta.clone())?;
            for c in children {
                add_entry(b, c, buf, done, progress)?;
            }
            b.end_directory()?;
        }
        ScanKind::Symlink(target) => b.add_symlink(&e.name, e.meta.clone(), target)?,
        ScanKind::Generated(bytes) => {
            b.add_file(&e.name, e.meta.clone(), FileData::Bytes(bytes))?
        }
        ScanKind::File => {
            let mut f = File::open(&e.path).at(&e.path)?;
            // Size now, not at scan time: the file is read right after this.
            let size = f.metadata().at(&e.path)?.len();
            if size <= SMALL_FILE {
                buf.clear();
                (&mut f).take(size + 1).read_to_end(buf).at(&e.path)?;
                if buf.len() as u64 != size {
                    return Err(Error::unsupported("file changed size while being packaged")
                        .with_path(&e.path));
                }
                b.add_file(&e.name, e.meta.clone(), FileData::Bytes(buf))
                    .map_err(|err| err.with_path(&e.path))?;
            } else {
                let hash = hash_file(&mut f).at(&e.path)?;
                let mut f = File::open(&e.path).at(&e.path)?;
                b.add_file(
                    &e.name,
                    e.meta.clone(),
                    FileData::Reader {
                        reader: &mut f,
                        size,
                        hash: Some(hash),
                    },
                )
                .map_err(|err| err.with_path(&e.path))?;
            }
            *done += size;
            progress(*done);
        }
    }
    Ok(())
}

fn hash_file(f: &mut File) -> std::io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update_reader(f)?;
    Ok(*h.finalize().as_bytes())
}

/// Reads `user.haiku.*` extended attributes as Haiku file attributes.
/// File systems without xattr support simply yield none.
pub fn read_haiku_attributes(path: &Path) -> Result<Vec<(String, u32, Vec<u8>)>> {
    use rustix::fs::{lgetxattr, llistxattr};
    let mut names = vec![0u8; 4096];
    let n = loop {
        match llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if names.len() < (1 << 20) => {
                let l = names.len() * 4;
                names.resize(l, 0);
            }
            Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::NOSYS) => return Ok(Vec::new()),
            Err(e) => return Err(Error::from(std::io::Error::from(e)).with_path(path)),
        }
    };
    let mut out = Vec::new();
    for raw in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Some(rest) = raw.strip_prefix(HAIKU_XATTR_PREFIX.as_bytes()) else {
            continue;
        };
        let Ok(escaped) = std::str::from_utf8(rest) else {
            continue;
        };
        let name = unescape_attr_name(escaped);
        let mut value = vec![0u8; 64 << 10];
        let len = loop {
            match lgetxattr(path, raw, &mut value) {
                Ok(l) => break l,
                Err(rustix::io::Errno::RANGE) if value.len() < (16 << 20) => {
                    let l = value.len() * 4;
                    value.resize(l, 0);
                }
                Err(e) => return Err(Error::from(std::io::Error::from(e)).with_path(path)),
            }
        };
        value.truncate(len);
        if value.len() < 4 {
            return Err(Error::unsupported(format!(
                "extended attribute {} is shorter than its 4-byte type code",
                String::from_utf8_lossy(raw)
            ))
            .with_path(path));
        }
        let ty = u32::from_le_bytes(value[..4].try_into().unwrap());
        out.push((name, ty, value[4..].to_vec()));
    }
    out.sort();
    Ok(out)
}

/// `user.haiku.` names escape `/` as `%\` and `%` as `%%`.
pub fn escape_attr_name(name: &str) -> String {
    name.replace('%', "%%").replace('/', "%\\")
}

/// Undoes [`escape_attr_name`].
pub fn unescape_attr_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '%' {
            match it.next() {
                Some('%') => out.push('%'),
                Some('\\') => out.push('/'),
                Some(o) => {
                    out.push('%');
                    out.push(o);
                }
                None => out.push('%'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_name_escaping_round_trips() {
        for n in ["BEOS:TYPE", "a/b", "100%", "%\\/"] {
            assert_eq!(unescape_attr_name(&escape_attr_name(n)), n);
        }
    }
}
