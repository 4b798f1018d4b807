//! `exos extract`: write a package's tree to a directory.
//!
//! Entries are created exclusively (`O_CREAT|O_EXCL`, which never follows
//! a symlink), so extracting into a directory that holds a planted symlink
//! cannot write outside it. Directory times are set after their contents.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use exos_hpkg::tree::{escape_attr_name, HAIKU_XATTR_PREFIX};
use exos_hpkg::{Entry, EntryKind, Package, Timestamp};

#[derive(Debug, Default, Clone, Copy)]
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
    progress: &mut dyn FnMut(u64),
) -> Result<ExtractStats> {
    fs::create_dir_all(dest).with_context(|| format!("{}: cannot create", dest.display()))?;
    let start = match only {
        None => pkg.toc().root(),
        Some(p) => pkg
            .toc()
            .lookup_path(p)
            .with_context(|| format!("{}: no entry {p:?} in the package", pkg.path().display()))?,
    };
    let mut stats = ExtractStats::default();
    let mut buf = vec![0u8; 1 << 20];
    if start.id() == exos_hpkg::toc::ROOT {
        for c in start.children() {
            extract_entry(pkg, c, dest, &mut buf, &mut stats, progress)?;
        }
    } else {
        extract_entry(pkg, start, dest, &mut buf, &mut stats, progress)?;
    }
    Ok(stats)
}

fn extract_entry(
    pkg: &Package,
    e: Entry<'_>,
    parent: &Path,
    buf: &mut [u8],
    stats: &mut ExtractStats,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let path: PathBuf = parent.join(e.name());
    let ctx = || format!("{}", path.display());
    match e.kind() {
        EntryKind::Directory => {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!("{}: exists and is not a directory", path.display()),
                Err(_) => fs::create_dir(&path).with_context(ctx)?,
            }
            for c in e.children() {
                extract_entry(pkg, c, &path, buf, stats, progress)?;
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(e.permissions() as u32))
                .with_context(ctx)?;
        }
        EntryKind::File => {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&path)
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
                stats.bytes += n as u64;
                progress(stats.bytes);
            }
            f.set_permissions(fs::Permissions::from_mode(e.permissions() as u32))
                .with_context(ctx)?;
        }
        EntryKind::Symlink => {
            std::os::unix::fs::symlink(e.symlink_target().unwrap_or(""), &path)
                .with_context(ctx)?;
        }
    }
    write_attributes(pkg, e, &path, stats)?;
    set_times(&path, e.mtime()).with_context(ctx)?;
    stats.entries += 1;
    Ok(())
}

fn write_attributes(
    pkg: &Package,
    e: Entry<'_>,
    path: &Path,
    stats: &mut ExtractStats,
) -> Result<()> {
    for a in e.attributes() {
        let data = pkg.read_attribute(&a)?;
        let mut value = a.type_code.to_le_bytes().to_vec();
        value.extend_from_slice(&data);
        let name = format!("{HAIKU_XATTR_PREFIX}{}", escape_attr_name(a.name));
        match rustix::fs::lsetxattr(path, name.as_str(), &value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            // Symlinks cannot carry user.* xattrs on Linux; some file systems have none.
            Err(rustix::io::Errno::NOTSUP) | Err(rustix::io::Errno::PERM) => {
                stats.attributes_skipped += 1
            }
            Err(err) => {
                return Err(std::io::Error::from(err))
                    .with_context(|| format!("{}: cannot set attribute {name}", path.display()))
            }
        }
    }
    Ok(())
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
