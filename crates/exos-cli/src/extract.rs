//! `exos extract`: write a package's tree to a directory.
//!
//! Entries are created exclusively (`O_CREAT|O_EXCL`, which never follows
//! a symlink), so extracting into a directory that holds a planted symlink
//! cannot write outside it. Directory times are set after their contents.
//!
//! Everything is written into a temporary directory inside the destination
//! first and moved into place (rename without replacing) only once the whole
//! tree is out: a failed extraction (corrupt data, full disk) leaves the
//! destination as it was.
//!
//! Directories are made first, then files are written on every core (each
//! thread takes a run of files in package order, so the chunks it
//! decompresses are its own), then symlinks, then the directories'
//! permissions and times, deepest first.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use exos_hpkg::tree::{escape_attr_name, HAIKU_XATTR_PREFIX};
use exos_hpkg::{Entry, EntryKind, Package, Timestamp};
use rayon::prelude::*;

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ExtractStats {
    pub entries: u64,
    pub bytes: u64,
    /// Attributes that could not be stored because the target file system
    /// lacks extended attributes.
    pub attributes_skipped: u64,
}

pub fn extract(
    pkg: &Package,
    dest: &Path,
    only: Option<&str>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ExtractStats> {
    let start = match only {
        None => pkg.toc().root(),
        Some(p) => pkg
            .toc()
            .lookup_path(p)
            .with_context(|| format!("{}: no entry {p:?} in the package", pkg.path().display()))?,
    };
    let tops: Vec<Entry<'_>> = if start.id() == exos_hpkg::toc::ROOT {
        start.children().collect()
    } else {
        vec![start]
    };
    let created = !dest.exists();
    fs::create_dir_all(dest).with_context(|| format!("{}: cannot create", dest.display()))?;
    // Refuse before writing anything when a path is taken (directories
    // merge; anything else, a planted symlink included, is a conflict).
    let mut taken = Vec::new();
    for e in &tops {
        conflicts(*e, &dest.join(e.file_name()), &mut taken);
    }
    if !taken.is_empty() {
        let more = taken.len().saturating_sub(10);
        taken.truncate(10);
        bail!(
            "{}{} already exist{}; extract never overwrites",
            taken.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            if taken.len() == 1 && more == 0 {
                "s"
            } else {
                ""
            }
        );
    }
    let staging = dest.join(format!(".exos-extract-{}", std::process::id()));
    fs::create_dir(&staging).with_context(|| format!("{}: cannot create", staging.display()))?;
    let mut placed: Vec<String> = Vec::new();
    let done = write_tree(pkg, &tops, &staging, progress).and_then(|stats| {
        for e in &tops {
            move_into(
                &staging.join(e.file_name()),
                &dest.join(e.file_name()),
                &mut placed,
            )?;
        }
        Ok(stats)
    });
    let _ = fs::remove_dir_all(&staging);
    match done {
        Ok(stats) => Ok(stats),
        Err(e) if !placed.is_empty() => {
            // Only a rename inside one directory failed: say what is there.
            Err(e.context(format!(
                "extraction to {} stopped part way; in place: {}",
                dest.display(),
                placed.join(", ")
            )))
        }
        Err(e) => {
            if created {
                let _ = fs::remove_dir(dest);
            }
            Err(e.context(format!(
                "nothing was extracted to {} (partial output removed)",
                dest.display()
            )))
        }
    }
}

/// Paths below `at` that an entry would need but that exist and are not
/// both directories.
fn conflicts(e: Entry<'_>, at: &Path, out: &mut Vec<String>) {
    let Ok(meta) = fs::symlink_metadata(at) else {
        return;
    };
    if e.is_dir() && meta.is_dir() {
        for c in e.children() {
            conflicts(c, &at.join(c.file_name()), out);
        }
    } else {
        out.push(at.display().to_string());
    }
}

/// Moves a staged entry to `to` without replacing anything; a directory
/// that exists there already receives the staged one's contents.
fn move_into(from: &Path, to: &Path, placed: &mut Vec<String>) -> Result<()> {
    let from_dir = fs::symlink_metadata(from)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    let to_dir = fs::symlink_metadata(to)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if from_dir && to_dir {
        for c in fs::read_dir(from).with_context(|| from.display().to_string())? {
            let name = c.with_context(|| from.display().to_string())?.file_name();
            move_into(&from.join(&name), &to.join(&name), placed)?;
        }
        return Ok(());
    }
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("{}: cannot move into place", to.display()))?;
    placed.push(to.display().to_string());
    Ok(())
}

/// The entries of a tree by kind, each with its path, in package order.
#[derive(Default)]
struct Plan<'p> {
    dirs: Vec<(PathBuf, Entry<'p>)>,
    files: Vec<(PathBuf, Entry<'p>)>,
    symlinks: Vec<(PathBuf, Entry<'p>)>,
}

impl<'p> Plan<'p> {
    fn add(&mut self, e: Entry<'p>, parent: &Path) {
        let path = parent.join(e.file_name());
        match e.kind() {
            EntryKind::Directory => {
                self.dirs.push((path.clone(), e));
                for c in e.children() {
                    self.add(c, &path);
                }
            }
            EntryKind::File => self.files.push((path, e)),
            EntryKind::Symlink => self.symlinks.push((path, e)),
        }
    }
}

/// Counters shared by the writing threads.
#[derive(Default)]
struct Counts {
    entries: AtomicU64,
    bytes: AtomicU64,
    attributes_skipped: AtomicU64,
}

fn write_tree(
    pkg: &Package,
    tops: &[Entry<'_>],
    staging: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ExtractStats> {
    let mut plan = Plan::default();
    for &e in tops {
        plan.add(e, staging);
    }
    for (path, _) in &plan.dirs {
        fs::create_dir(path).with_context(|| path.display().to_string())?;
    }
    let counts = Counts::default();
    plan.files.par_iter().with_min_len(8).try_for_each_init(
        || vec![0u8; 1 << 20],
        |buf, (path, e)| write_file(pkg, *e, path, buf, &counts, progress),
    )?;
    for (path, e) in &plan.symlinks {
        std::os::unix::fs::symlink(e.symlink_target_path().unwrap_or(Path::new("")), path)
            .with_context(|| path.display().to_string())?;
        finish_entry(pkg, *e, path, &counts)?;
    }
    // Deepest first: a directory's time is set after its contents.
    for (path, e) in plan.dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(e.permissions() as u32))
            .with_context(|| path.display().to_string())?;
        finish_entry(pkg, *e, path, &counts)?;
    }
    Ok(ExtractStats {
        entries: counts.entries.into_inner(),
        bytes: counts.bytes.into_inner(),
        attributes_skipped: counts.attributes_skipped.into_inner(),
    })
}

fn write_file(
    pkg: &Package,
    e: Entry<'_>,
    path: &Path,
    buf: &mut [u8],
    counts: &Counts,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let ctx = || path.display().to_string();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .with_context(|| format!("{}: cannot create (already exists?)", path.display()))?;
    let size = e.size();
    let mut off = 0u64;
    while off < size {
        let n = pkg.read_at(e, off, buf)?;
        if n == 0 {
            bail!("{}: unexpected end of data", pkg.path().display());
        }
        f.write_all(&buf[..n]).with_context(ctx)?;
        off += n as u64;
        progress(counts.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64);
    }
    f.set_permissions(fs::Permissions::from_mode(e.permissions() as u32))
        .with_context(ctx)?;
    drop(f);
    finish_entry(pkg, e, path, counts)
}

/// Attributes and times, the last things written to an entry.
fn finish_entry(pkg: &Package, e: Entry<'_>, path: &Path, counts: &Counts) -> Result<()> {
    let skipped = write_attributes(pkg, e, path)?;
    counts
        .attributes_skipped
        .fetch_add(skipped, Ordering::Relaxed);
    set_times(path, e.mtime()).with_context(|| path.display().to_string())?;
    counts.entries.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Writes `e`'s file attributes; returns how many the file system refused.
fn write_attributes(pkg: &Package, e: Entry<'_>, path: &Path) -> Result<u64> {
    let mut skipped = 0;
    for a in e.attributes() {
        let data = pkg.read_attribute(&a)?;
        let mut value = a.type_code.to_le_bytes().to_vec();
        value.extend_from_slice(&data);
        let name = format!("{HAIKU_XATTR_PREFIX}{}", escape_attr_name(a.name));
        match rustix::fs::lsetxattr(path, name.as_str(), &value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            // Symlinks cannot carry user.* xattrs on Linux; some file systems have none.
            Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::PERM) => skipped += 1,
            Err(err) => {
                return Err(std::io::Error::from(err))
                    .with_context(|| format!("{}: cannot set attribute {name}", path.display()))
            }
        }
    }
    Ok(skipped)
}

fn set_times(path: &Path, mtime: Timestamp) -> std::io::Result<()> {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    let t = Timespec {
        tv_sec: mtime.secs.min(i64::MAX as u64) as i64,
        tv_nsec: mtime.nanos as _,
    };
    utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(Into::into)
}
