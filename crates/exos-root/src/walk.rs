//! Directories someone else may control, walked without following links.
//!
//! Root's daemon reads directories that users can write: their own layer
//! (`ROOT/users/NAME/packages`), a shared layer whose permissions let
//! others in, a cache directory named by an environment variable. A name
//! in such a directory may be a symbolic link to a file its planter could
//! not read, or a directory may be swapped for a link between a check and
//! its use. So every component is opened with `O_NOFOLLOW | O_DIRECTORY`
//! relative to the descriptor of the one before, checked as opened (fstat
//! of the descriptor, never a second lookup by path), and files are opened
//! relative to the directory's descriptor with `O_NOFOLLOW` too.
//!
//! [`Writers`] says who besides root can change what a walked directory
//! holds (through it or any directory walked to reach it), and
//! [`Writers::admits`] which files found there may be shown to others: only
//! what whoever could have put it there could read themselves.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};

/// Who besides root can change what a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// Root alone.
    Root,
    /// Root and this user (the owner of a directory along the way).
    RootAnd(u32),
    /// A group or everyone (a group- or world-writable directory, sticky or
    /// not: a sticky directory still lets anyone add names).
    Anyone,
}

impl Writers {
    /// Adds what directory `st` lets others do.
    pub fn through(self, st: &Stat) -> Writers {
        let mode = st.st_mode;
        if mode & 0o022 != 0 {
            return Writers::Anyone;
        }
        match (self, st.st_uid) {
            (w, 0) => w,
            (Writers::Root, uid) => Writers::RootAnd(uid),
            (Writers::RootAnd(u), uid) if u == uid => Writers::RootAnd(u),
            _ => Writers::Anyone,
        }
    }

    /// Whether a file `st` found in such a directory may be shown to
    /// anyone who sees that directory's contents: a regular file; in a
    /// directory root alone controls, any; where a user can add names, one
    /// of theirs or one everybody may read; where anyone can, only one
    /// everybody may read. So a link (hard or symbolic) to a file its
    /// planter could not read is never served.
    pub fn admits(self, st: &Stat) -> Result<(), NotAdmitted> {
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(NotAdmitted::NotARegularFile);
        }
        // A package anybody else may rewrite would change under the mount
        // what it serves (to everyone, or to the layer's user).
        let group_writable = st.st_mode & 0o020 != 0 && st.st_gid != 0;
        if st.st_mode & 0o002 != 0 || group_writable {
            return Err(NotAdmitted::WritableByOthers {
                owner: st.st_uid,
                mode: st.st_mode & 0o7777,
            });
        }
        let readable_by_all = st.st_mode & 0o004 != 0;
        let ok = match self {
            Writers::Root => true,
            Writers::RootAnd(uid) => st.st_uid == uid || readable_by_all,
            Writers::Anyone => readable_by_all,
        };
        if ok {
            return Ok(());
        }
        Err(NotAdmitted::Unreadable {
            owner: st.st_uid,
            mode: st.st_mode & 0o7777,
            writers: self,
        })
    }

    /// Whether root alone, or root and `uid`, control the directory.
    pub fn only(self, uid: u32) -> bool {
        match self {
            Writers::Root => true,
            Writers::RootAnd(u) => u == uid,
            Writers::Anyone => false,
        }
    }
}

/// Why [`Writers::admits`] refuses a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotAdmitted {
    /// A device, FIFO, socket or directory where a file was expected.
    #[error("not a regular file")]
    NotARegularFile,
    /// A file whoever could have put it there could not read themselves.
    #[error("owned by uid {owner} with mode {mode:o}, and {}: only a file they own or one everybody may read is used (a link to a file they could not read is refused)", who_adds(*.writers))]
    Unreadable {
        /// The file's owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// Who can add files where it was found.
        writers: Writers,
    },
    /// A file others may write (mode o+w, or g+w for a group other than
    /// root's): anyone could change what it serves while it is served.
    #[error("owned by uid {owner} with mode {mode:o}: writable by others, who could change what it serves (chmod go-w it)")]
    WritableByOthers {
        /// The file's owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
}

fn who_adds(writers: Writers) -> String {
    match writers {
        Writers::RootAnd(uid) => format!("uid {uid} can add files to its directory"),
        _ => "other users can add files to its directory".to_string(),
    }
}

/// A directory opened by [`open_beneath`].
#[derive(Debug)]
pub struct WalkedDir {
    fd: OwnedFd,
    /// Its path, for messages (never opened again by it).
    pub path: PathBuf,
    /// Its status, from the descriptor.
    pub stat: Stat,
    /// Who besides root can change what it holds.
    pub writers: Writers,
}

fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain name"),
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
            "a symbolic link (links are not followed here)".to_string()
        }
        Some(code) if code == rustix::io::Errno::NOTDIR.raw_os_error() => {
            "not a directory (or a link to one: links are not followed here)".to_string()
        }
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("{}: {why}", path.display()))
}

/// Opens `base` (a path the caller chose; followed as given), then each of
/// `components` beneath it without following links, each one's owner and
/// mode folded into [`WalkedDir::writers`] (`base`'s too).
pub fn open_beneath(base: &Path, components: &[&str]) -> io::Result<WalkedDir> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd =
        rustix::fs::open(base, flags, Mode::empty()).map_err(|e| with_path(base, e.into()))?;
    let mut stat = rustix::fs::fstat(&fd).map_err(|e| with_path(base, e.into()))?;
    let mut writers = Writers::Root.through(&stat);
    let mut path = base.to_path_buf();
    for c in components {
        path.push(c);
        let name = c_name(c)?;
        fd = rustix::fs::openat(
            &fd,
            name.as_c_str(),
            flags | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| with_path(&path, e.into()))?;
        stat = rustix::fs::fstat(&fd).map_err(|e| with_path(&path, e.into()))?;
        writers = writers.through(&stat);
    }
    Ok(WalkedDir {
        fd,
        path,
        stat,
        writers,
    })
}

/// A file opened by [`WalkedDir::open_file`].
#[derive(Debug)]
pub struct WalkedFile {
    /// The open file.
    pub file: File,
    /// Its path (for messages).
    pub path: PathBuf,
    /// Its status, from the descriptor.
    pub stat: Stat,
}

impl WalkedDir {
    /// The names in the directory (not `.` and `..`; names that are not
    /// UTF-8 are left out), sorted.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let mut dir =
            rustix::fs::Dir::read_from(&self.fd).map_err(|e| with_path(&self.path, e.into()))?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| with_path(&self.path, e.into()))?;
            let name: &CStr = entry.file_name();
            match name.to_str() {
                Ok(".") | Ok("..") | Err(_) => {}
                Ok(n) => out.push(n.to_string()),
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens `name` in the directory for reading, without following a link
    /// (and without blocking on a FIFO).
    pub fn open_file(&self, name: &str) -> io::Result<WalkedFile> {
        let path = self.path.join(name);
        let c = c_name(name)?;
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = rustix::fs::openat(&self.fd, c.as_c_str(), flags, Mode::empty())
            .map_err(|e| with_path(&path, e.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| with_path(&path, e.into()))?;
        Ok(WalkedFile {
            file: File::from(fd),
            path,
            stat,
        })
    }

    /// Opens the subdirectory `name` without following a link.
    pub fn open_dir(&self, name: &str) -> io::Result<WalkedDir> {
        let path = self.path.join(name);
        let c = c_name(name)?;
        let fd = rustix::fs::openat(
            &self.fd,
            c.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| with_path(&path, e.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| with_path(&path, e.into()))?;
        Ok(WalkedDir {
            writers: self.writers.through(&stat),
            fd,
            path,
            stat,
        })
    }

    /// The directory's descriptor (for `*at` calls relative to it).
    pub fn fd(&self) -> impl AsFd + '_ {
        &self.fd
    }

    /// Opens the subdirectory `name`, made with `mode` first if missing;
    /// never follows a link (a link there is an error).
    pub fn make_dir(&self, name: &str, mode: u32) -> io::Result<WalkedDir> {
        let c = c_name(name)?;
        match rustix::fs::mkdirat(&self.fd, c.as_c_str(), Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => self.open_dir(name),
            Err(e) => Err(with_path(&self.path.join(name), e.into())),
        }
    }

    /// Writes `bytes` as the regular file `name` (created with `mode`, or
    /// truncated): a link, a FIFO or a directory there is an error, never
    /// followed or opened.
    pub fn write_file(&self, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        let path = self.path.join(name);
        let c = c_name(name)?;
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, c.as_c_str(), flags, Mode::from_raw_mode(mode))
            .map_err(|e| with_path(&path, e.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| with_path(&path, e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file", path.display()),
            ));
        }
        rustix::fs::ftruncate(&fd, 0).map_err(|e| with_path(&path, e.into()))?;
        let mut file = File::from(fd);
        file.write_all(bytes).map_err(|e| with_path(&path, e))
    }

    /// Makes the symbolic link `name` → `target` unless something is
    /// there already; says whether it made it.
    pub fn symlink_if_missing(&self, target: &str, name: &str) -> io::Result<bool> {
        let c = c_name(name)?;
        match rustix::fs::symlinkat(target, &self.fd, c.as_c_str()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(with_path(&self.path.join(name), e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_beneath_a_directory_never_follow_links() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let victim = base.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::create_dir(base.join("m")).unwrap();
        std::os::unix::fs::symlink(&victim, base.join("m/planted")).unwrap();
        std::os::unix::fs::symlink(base, base.join("m/dirlink")).unwrap();
        let m = open_beneath(base, &["m"]).unwrap();
        let e = m.write_file("planted", b"owned", 0o644).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(m.make_dir("dirlink", 0o755).is_err());
        let etc = m.make_dir("etc", 0o755).unwrap();
        etc.write_file("f", b"one", 0o600).unwrap();
        etc.write_file("f", b"2", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(base.join("m/etc/f")).unwrap(), "2");
        assert!(m.symlink_if_missing("usr/bin", "bin").unwrap());
        assert!(!m.symlink_if_missing("elsewhere", "bin").unwrap());
        assert!(!m.symlink_if_missing("elsewhere", "planted").unwrap());
        assert_eq!(
            std::fs::read_link(base.join("m/bin")).unwrap(),
            Path::new("usr/bin")
        );
    }

    #[test]
    fn links_are_never_followed_and_writers_add_up() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["a", "a/b"] {
            std::fs::set_permissions(base.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink(base.join("a"), base.join("link")).unwrap();
        std::fs::write(base.join("a/b/file"), "x").unwrap();
        std::os::unix::fs::symlink(base.join("a/b/file"), base.join("a/b/flink")).unwrap();
        let d = open_beneath(base, &["a", "b"]).unwrap();
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(
            d.writers,
            if me == 0 {
                Writers::Root
            } else {
                Writers::RootAnd(me)
            }
        );
        assert_eq!(d.names().unwrap(), ["file", "flink"]);
        assert!(d.open_file("file").is_ok());
        let e = d.open_file("flink").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = open_beneath(base, &["link", "b"]).unwrap_err().to_string();
        assert!(e.contains("link"), "{e}");
        assert!(open_beneath(base, &[".."]).is_err());
        assert!(d.open_file("../b/file").is_err());
        // A world-writable directory on the way: anyone.
        std::fs::set_permissions(base.join("a"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(
            open_beneath(base, &["a", "b"]).unwrap().writers,
            Writers::Anyone
        );
    }

    #[test]
    fn what_a_directory_admits_depends_on_who_can_write_it() {
        let stat = |uid: u32, mode: u32| {
            let mut st: Stat = unsafe_free_stat();
            st.st_uid = uid;
            st.st_mode = mode;
            st
        };
        let file = |uid, perm: u32| stat(uid, 0o100000 | perm);
        assert!(Writers::Root.admits(&file(0, 0o600)).is_ok());
        assert!(Writers::RootAnd(65534).admits(&file(65534, 0o600)).is_ok());
        assert!(Writers::RootAnd(65534).admits(&file(0, 0o644)).is_ok());
        assert!(Writers::RootAnd(65534).admits(&file(0, 0o600)).is_err());
        assert!(Writers::RootAnd(65534).admits(&file(1000, 0o640)).is_err());
        assert!(Writers::Anyone.admits(&file(65534, 0o600)).is_err());
        assert!(Writers::Anyone.admits(&file(0, 0o444)).is_ok());
        // Files others may rewrite: never (a group-writable file of
        // root's group is root's).
        for writers in [Writers::Root, Writers::RootAnd(65534), Writers::Anyone] {
            assert!(matches!(
                writers.admits(&file(0, 0o666)),
                Err(NotAdmitted::WritableByOthers { .. })
            ));
        }
        let mut group = file(65534, 0o664);
        group.st_gid = 100;
        assert!(Writers::RootAnd(65534).admits(&group).is_err());
        group.st_gid = 0;
        assert!(Writers::RootAnd(65534).admits(&group).is_ok());
        // Not regular files.
        assert!(Writers::Root.admits(&stat(0, 0o040755)).is_err());
        assert!(Writers::Root.admits(&stat(0, 0o010644)).is_err());
        // Folding directories.
        let dir = |uid, perm: u32| stat(uid, 0o040000 | perm);
        assert_eq!(Writers::Root.through(&dir(0, 0o755)), Writers::Root);
        assert_eq!(Writers::Root.through(&dir(7, 0o755)), Writers::RootAnd(7));
        assert_eq!(
            Writers::RootAnd(7).through(&dir(7, 0o700)),
            Writers::RootAnd(7)
        );
        assert_eq!(Writers::RootAnd(7).through(&dir(8, 0o700)), Writers::Anyone);
        assert_eq!(Writers::Root.through(&dir(0, 0o775)), Writers::Anyone);
        assert_eq!(Writers::Root.through(&dir(0, 0o1777)), Writers::Anyone);
    }

    /// A zeroed `Stat` without `unsafe` (the crate forbids it): fstat of a
    /// file we own, fields then overwritten by the test.
    fn unsafe_free_stat() -> Stat {
        let f = tempfile::tempfile().unwrap();
        rustix::fs::fstat(&f).unwrap()
    }
}
