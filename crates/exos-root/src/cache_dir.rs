//! Cache directories a process keeps files in and deletes files from: the
//! exec cache (`--exec-cache DIR`, `$EXOS_EXEC_CACHE`) and the block cache
//! (`--block-cache DIR`, `$EXOS_BLOCK_CACHE`).
//!
//! Such a path may come from the environment or a command line that
//! another user influenced, and root's mount deletes files in it. So
//! [`open_cache_dir`] walks the path from `/` one component at a time with
//! `O_NOFOLLOW | O_DIRECTORY` (a link anywhere along it is refused, never
//! followed), requires every directory on the way to be root's or the
//! caller's and writable by no one else (a sticky directory of root's, like
//! `/tmp`, excepted on the way), creates what is missing with mode 0700,
//! and never changes the mode of a directory it did not create. The cache
//! directory itself must be the caller's and writable by no one else, and
//! carry the cache's tag (`CACHEDIR.TAG`, written when this code made it):
//! an existing directory without one is taken only when everything in it
//! is named like the cache's own files. Deleting goes through
//! [`remove_entry`], which removes only a regular file the caller owns.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};

/// The cache directory tag's file name (<https://bford.info/cachedir/>:
/// backup tools skip a directory holding it).
pub const TAG_FILE: &str = "CACHEDIR.TAG";
const TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

fn tag_text(kind: &str) -> String {
    format!(
        "{TAG_SIGNATURE}\n# This file is a cache directory tag created by exos: {kind}.\n# For information about cache directory tags see https://bford.info/cachedir/\n"
    )
}

fn refuse(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {why}", path.display()),
    )
}

fn c_name(path: &Path, name: &std::ffi::OsStr) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(name.as_bytes()).map_err(|_| refuse(path, "a NUL in the path"))
}

/// Checks one directory of the walk: root's or the caller's; writable by
/// no one else (on the way, a sticky directory of root's may be).
fn check_dir(path: &Path, st: &Stat, me: u32, last: bool) -> io::Result<()> {
    let (uid, mode) = (st.st_uid, st.st_mode);
    if last {
        if uid != me || mode & 0o022 != 0 {
            return Err(refuse(
                path,
                format!(
                    "owned by uid {uid} with mode {:o}: a cache directory must belong to uid {me} and be writable by no one else",
                    mode & 0o7777
                ),
            ));
        }
        return Ok(());
    }
    let sticky_roots = uid == 0 && mode & 0o1000 != 0;
    if (uid != 0 && uid != me) || (mode & 0o022 != 0 && !sticky_roots) {
        return Err(refuse(
            path,
            format!(
                "owned by uid {uid} with mode {:o}: every directory on a cache's path must be root's or uid {me}'s and writable by no one else (another user could swap what follows)",
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Opens (making it, and its missing parents, with mode 0700) the cache
/// directory `path` for the calling user, as described in the module
/// documentation. `kind` names the cache in its tag; `is_entry` says
/// whether a name in it is one of the cache's own (its temporary files
/// too), for taking an untagged directory. Returns the absolute path.
pub fn open_cache_dir(
    path: &Path,
    kind: &str,
    is_entry: &dyn Fn(&str) -> bool,
) -> io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    let me = rustix::process::geteuid().as_raw();
    let names: Vec<&std::ffi::OsStr> = abs
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n)),
            Component::RootDir | Component::CurDir => None,
            _ => Some(Err(())),
        })
        .collect::<Result<_, ()>>()
        .map_err(|()| refuse(&abs, "a cache path may not go up a directory (..)"))?;
    if names.is_empty() {
        return Err(refuse(&abs, "not a cache directory"));
    }
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd: OwnedFd = rustix::fs::open("/", dir_flags, Mode::empty())?;
    let mut here = PathBuf::from("/");
    let mut created = false;
    for (i, name) in names.iter().enumerate() {
        here.push(name);
        let last = i + 1 == names.len();
        let c = c_name(&here, name)?;
        let next = match rustix::fs::openat(&fd, c.as_c_str(), dir_flags, Mode::empty()) {
            Ok(next) => next,
            Err(rustix::io::Errno::NOENT) => {
                match rustix::fs::mkdirat(&fd, c.as_c_str(), Mode::from_raw_mode(0o700)) {
                    Ok(()) => created = last,
                    Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(refuse(&here, io::Error::from(e))),
                }
                rustix::fs::openat(&fd, c.as_c_str(), dir_flags, Mode::empty())
                    .map_err(|e| refuse(&here, io::Error::from(e)))?
            }
            Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOTDIR) => {
                return Err(refuse(
                    &here,
                    "a symbolic link or not a directory (a cache's path is never followed through links)",
                ))
            }
            Err(e) => return Err(refuse(&here, io::Error::from(e))),
        };
        let st = rustix::fs::fstat(&next)?;
        check_dir(&here, &st, me, last)?;
        fd = next;
    }
    if created {
        write_tag(&fd, &abs, kind)?;
    } else {
        check_tag(&fd, &abs, kind, is_entry)?;
    }
    Ok(abs)
}

fn write_tag(dir: &OwnedFd, path: &Path, kind: &str) -> io::Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, TAG_FILE, flags, Mode::from_raw_mode(0o644))
        .map_err(|e| refuse(&path.join(TAG_FILE), io::Error::from(e)))?;
    std::fs::File::from(fd).write_all(tag_text(kind).as_bytes())
}

/// An existing directory is the cache's if it carries its tag; without
/// one, if everything in it is named like the cache's files (made by an
/// earlier version, or empty): then it gets the tag.
fn check_tag(
    dir: &OwnedFd,
    path: &Path,
    kind: &str,
    is_entry: &dyn Fn(&str) -> bool,
) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, TAG_FILE, flags, Mode::empty()) {
        Ok(fd) => {
            let mut text = String::new();
            std::fs::File::from(fd)
                .take(4096)
                .read_to_string(&mut text)
                .map_err(|e| refuse(&path.join(TAG_FILE), e))?;
            if text.starts_with(TAG_SIGNATURE)
                && text.contains(&format!("created by exos: {kind}."))
            {
                return Ok(());
            }
            Err(refuse(
                path,
                format!("its {TAG_FILE} is not an exos {kind}'s: choose another directory"),
            ))
        }
        Err(rustix::io::Errno::NOENT) => {
            let mut listing = rustix::fs::Dir::read_from(dir)?;
            while let Some(entry) = listing.read() {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy();
                if name == "." || name == ".." || is_entry(&name) {
                    continue;
                }
                return Err(refuse(
                    path,
                    format!(
                        "not an exos {kind} (no {TAG_FILE}, and it holds {name:?}): choose a new or empty directory"
                    ),
                ));
            }
            write_tag(dir, path, kind)
        }
        Err(e) => Err(refuse(&path.join(TAG_FILE), io::Error::from(e))),
    }
}

/// Removes `dir/name` if it is a regular file the caller owns (never
/// through a link: a link itself is left alone too). True when removed.
pub fn remove_entry(dir: &Path, name: &str) -> bool {
    let path = dir.join(name);
    let Ok(st) = rustix::fs::lstat(&path) else {
        return false;
    };
    let mine = st.st_uid == rustix::process::geteuid().as_raw();
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || !mine {
        return false;
    }
    std::fs::remove_file(&path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(name: &str) -> bool {
        name.starts_with("e-") || name.starts_with(".tmp-")
    }

    #[test]
    fn a_cache_directory_is_made_tagged_and_never_reached_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = base.join("a/b/cache");
        let got = open_cache_dir(&dir, "test cache", &entry).unwrap();
        assert_eq!(got, dir);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(std::fs::read_to_string(dir.join(TAG_FILE))
            .unwrap()
            .starts_with(TAG_SIGNATURE));
        // Opened again: fine. Another kind's tag: refused.
        open_cache_dir(&dir, "test cache", &entry).unwrap();
        assert!(open_cache_dir(&dir, "other cache", &entry).is_err());
        // A link at the end or on the way: refused, nothing made or changed.
        let victim = base.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::write(victim.join("authorized_keys"), "key").unwrap();
        std::os::unix::fs::symlink(&victim, base.join("link")).unwrap();
        for p in [base.join("link"), base.join("link/sub")] {
            let e = open_cache_dir(&p, "test cache", &entry)
                .unwrap_err()
                .to_string();
            assert!(e.contains("symbolic link"), "{e}");
        }
        assert!(victim.join("authorized_keys").exists());
        assert!(!victim.join("sub").exists() && !victim.join(TAG_FILE).exists());
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o750,
            "a directory it did not make was chmodded"
        );
        // An untagged directory holding other files: refused, untouched.
        let e = open_cache_dir(&victim, "test cache", &entry)
            .unwrap_err()
            .to_string();
        assert!(e.contains("authorized_keys"), "{e}");
        assert!(!victim.join(TAG_FILE).exists());
        // An untagged directory of the cache's own files: taken.
        let old = base.join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(old.join("e-1"), "x").unwrap();
        open_cache_dir(&old, "test cache", &entry).unwrap();
        assert!(old.join(TAG_FILE).exists());
        // Writable by others: refused.
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(open_cache_dir(&old, "test cache", &entry).is_err());
        assert!(open_cache_dir(&base.join("a/../old"), "test cache", &entry).is_err());
        // remove_entry: own regular files only, never what a link names.
        std::os::unix::fs::symlink(victim.join("authorized_keys"), dir.join("e-link")).unwrap();
        assert!(!remove_entry(&dir, "e-link"));
        assert!(victim.join("authorized_keys").exists());
        std::fs::write(dir.join("e-2"), "x").unwrap();
        assert!(remove_entry(&dir, "e-2"));
    }
}
