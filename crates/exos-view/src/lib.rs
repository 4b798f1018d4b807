//! Per-process views of a mounted EXOS root.
//!
//! One packagefs mount serves a root to everybody; a *view* is what one
//! process tree sees of it, made with a private mount namespace, so the
//! host's namespace is never touched and children inherit the view:
//!
//! ```text
//! /system, /common   the layers' unions (read-only, from the mount)
//! /user              the user layer's union (user views only)
//! /data              ROOT/data, writable (a sandbox: only /data/NAME)
//! /usr, /bin, /lib…  from the packages when they ship `usr` (a userland),
//!                    else the host's
//! everything else    the host's (a sandbox: a minimal /dev, /proc, /tmp
//!                    and a few /etc files only)
//! ```
//!
//! [`ViewSpec::plan`] decides the entries of the new root from what the
//! host and the mount hold (pure, tested without privileges);
//! [`enter`] makes them in a new namespace of the calling process, which
//! then executes the command. The process must be single-threaded: a user
//! namespace can only be entered by one.
//!
//! Who may do what: root makes a plain mount namespace and becomes the
//! target user at the end (`--user`); anybody else, and every sandbox, gets
//! an unprivileged user namespace mapping only the caller's own uid and gid
//! (root first becomes the sandboxed user, `nobody` unless told). A sandbox
//! adds a network namespace (unless asked for the network), a Landlock
//! domain (reads and execution in the view, writes in `/data/NAME`, `/tmp`
//! and `/dev` only; no signals to or abstract sockets of processes outside;
//! no ptrace of them, so no reaching the host through `/proc/PID/root`), no
//! new privileges, and a seccomp filter ([`seccomp`]: no nested user
//! namespaces, keyrings, BPF, perf, userfaultfd, io_uring, mount calls or
//! terminal injection).

#![forbid(unsafe_code)]

mod namespace;
pub mod sandbox;
pub mod seccomp;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use namespace::{enter, private_mounts, Entered};

/// What a view shows of the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Audience {
    /// `system` + `common`: what system services see.
    System,
    /// Every layer, `user` included.
    User,
}

impl Audience {
    /// `system` or `user` (what `EXOS_VIEW` is set to).
    pub fn name(self) -> &'static str {
        match self {
            Audience::System => "system",
            Audience::User => "user",
        }
    }
}

/// A user account: who a view's command runs as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The login name.
    pub name: String,
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// The home directory.
    pub home: PathBuf,
    /// The login shell.
    pub shell: PathBuf,
}

impl Person {
    /// Looks a user up in the host's user database.
    pub fn by_name(name: &str) -> Result<Person, ViewError> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| ViewError::User(name.into(), e.to_string()))?
            .ok_or_else(|| ViewError::User(name.into(), "no such user".into()))?;
        Ok(Self::from_user(user))
    }

    /// The user the calling process runs as.
    pub fn current() -> Result<Person, ViewError> {
        let uid = nix::unistd::geteuid();
        let user = nix::unistd::User::from_uid(uid)
            .map_err(|e| ViewError::User(uid.to_string(), e.to_string()))?;
        Ok(match user {
            Some(u) => Self::from_user(u),
            None => Person {
                name: uid.to_string(),
                uid: uid.as_raw(),
                gid: nix::unistd::getegid().as_raw(),
                groups: Vec::new(),
                home: PathBuf::from("/"),
                shell: PathBuf::from("/bin/sh"),
            },
        })
    }

    fn from_user(user: nix::unistd::User) -> Person {
        let groups = std::ffi::CString::new(user.name.clone())
            .ok()
            .and_then(|c| nix::unistd::getgrouplist(&c, user.gid).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        Person {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
            home: user.dir,
            shell: user.shell,
        }
    }

    /// Whether this is uid 0.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// A sandbox's settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// Share the host's network (else: a network namespace with only `lo`).
    pub net: bool,
    /// The name under `/data` the sandbox may write: `/data/NAME`.
    pub data_name: String,
}

/// Everything a view is made from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewSpec {
    /// The EXOS root (canonical path).
    pub root: PathBuf,
    /// Where that root's packagefs is mounted.
    pub mountpoint: PathBuf,
    /// Which layers the view shows.
    pub audience: Audience,
    /// Who the command runs as.
    pub person: Person,
    /// Sandbox settings; `None` for a plain view.
    pub sandbox: Option<Sandbox>,
    /// Directories (view paths) searched for libraries first: an app's
    /// private library directories.
    pub library_dirs: Vec<PathBuf>,
}

/// One directory entry seen at the top of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopKind {
    /// A directory.
    Dir,
    /// Anything else that is not a link.
    File,
    /// A symbolic link, with its target.
    Symlink(PathBuf),
}

/// How one entry of the new root is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Bind (recursively) this path of the host (as the caller sees it).
    Bind {
        /// The host path.
        from: PathBuf,
        /// Whether the view may write through it.
        writable: bool,
    },
    /// A symbolic link.
    Symlink(PathBuf),
    /// A fresh, empty, writable tmpfs.
    Tmpfs,
    /// A directory of the new root holding binds of a few of the host's
    /// files (`/etc` and `/dev` of a sandbox).
    Selection(Vec<(String, Source)>),
    /// A fresh procfs of the calling process's PID namespace (a sandbox's
    /// `/proc`: only its own processes).
    Proc,
}

/// One top-level entry of the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootEntry {
    /// The name at the top of the new root.
    pub name: String,
    /// How it is made.
    pub source: Source,
}

/// Top-level names a userland brings with `usr` (merged /usr links).
const USR_LINKS: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// A sandbox's `/etc`: what programs need to name users, resolve names and
/// find libraries and certificates; nothing else of the host's.
const SANDBOX_ETC: [&str; 13] = [
    "passwd",
    "group",
    "hosts",
    "host.conf",
    "resolv.conf",
    "nsswitch.conf",
    "localtime",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "alternatives",
];

/// A sandbox's `/dev`.
const SANDBOX_DEV: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

impl ViewSpec {
    /// The host directory mounted at `/data` (a sandbox: `/data/NAME`).
    pub fn data_dir(&self) -> PathBuf {
        let data = self.root.join("data");
        match &self.sandbox {
            None => data,
            Some(s) => data
                .join("users")
                .join(&self.person.name)
                .join(&s.data_name),
        }
    }

    /// The mount's directories this view shows as `/user` (user views) and
    /// as the union `/usr` comes from: the person's own layer
    /// (`MOUNTPOINT/users/NAME`, `merged-users/NAME`) when the root has one
    /// for them, else the shared `user` layer (`user`, `merged`); for a
    /// system view no user layer and `merged-system`.
    pub fn layer_dirs(&self) -> (Option<PathBuf>, PathBuf) {
        let mnt = &self.mountpoint;
        match self.audience {
            Audience::System => (None, mnt.join("merged-system")),
            Audience::User => {
                let own = mnt.join("users").join(&self.person.name);
                if !self.person.name.is_empty() && !self.person.name.contains('/') && own.is_dir() {
                    (Some(own), mnt.join("merged-users").join(&self.person.name))
                } else {
                    (Some(mnt.join("user")), mnt.join("merged"))
                }
            }
        }
    }

    /// The entries of the new root, from the top-level entries of the host's
    /// root and of the packages' union (`packages`, from
    /// `MOUNTPOINT/<merged dir>`).
    pub fn plan(
        &self,
        host: &[(String, TopKind)],
        packages: &[(String, TopKind)],
    ) -> Vec<RootEntry> {
        let mnt = &self.mountpoint;
        let (user_dir, merged) = self.layer_dirs();
        let mut entries = vec![
            bind_ro("system", mnt.join("system")),
            bind_ro("common", mnt.join("common")),
        ];
        if let Some(dir) = user_dir {
            entries.push(bind_ro("user", dir));
        }
        match &self.sandbox {
            None => entries.push(RootEntry {
                name: "data".into(),
                source: Source::Bind {
                    from: self.data_dir(),
                    writable: true,
                },
            }),
            Some(s) => entries.push(RootEntry {
                name: "data".into(),
                source: Source::Selection(vec![(
                    s.data_name.clone(),
                    Source::Bind {
                        from: self.data_dir(),
                        writable: true,
                    },
                )]),
            }),
        }
        // A userland in the packages replaces the host's /usr and its links.
        let userland = packages
            .iter()
            .any(|(name, kind)| name == "usr" && *kind == TopKind::Dir);
        let from_packages = |name: &str| userland && (name == "usr" || USR_LINKS.contains(&name));
        for (name, kind) in packages {
            if !from_packages(name) {
                continue;
            }
            let source = match kind {
                TopKind::Symlink(target) => Source::Symlink(target.clone()),
                _ => Source::Bind {
                    from: merged.join(name),
                    writable: false,
                },
            };
            entries.push(RootEntry {
                name: name.clone(),
                source,
            });
        }
        let taken = |entries: &[RootEntry], name: &str| entries.iter().any(|e| e.name == name);
        for (name, kind) in host {
            if taken(&entries, name) || (userland && USR_LINKS.contains(&name.as_str())) {
                continue;
            }
            let from = Path::new("/").join(name);
            let source = match (&self.sandbox, kind) {
                (_, TopKind::Symlink(target)) => Source::Symlink(target.clone()),
                (None, _) => Source::Bind {
                    from,
                    writable: true,
                },
                (Some(_), _) => match name.as_str() {
                    "usr" => Source::Bind {
                        from,
                        writable: false,
                    },
                    n if USR_LINKS.contains(&n) => Source::Bind {
                        from,
                        writable: false,
                    },
                    "proc" => Source::Proc,
                    "tmp" => Source::Tmpfs,
                    "etc" => Source::Selection(selection(&from, &SANDBOX_ETC)),
                    "dev" => {
                        let mut dev = selection(&from, &SANDBOX_DEV);
                        dev.push(("shm".into(), Source::Tmpfs));
                        dev.push(("fd".into(), Source::Symlink("/proc/self/fd".into())));
                        for (i, n) in ["stdin", "stdout", "stderr"].iter().enumerate() {
                            dev.push((
                                n.to_string(),
                                Source::Symlink(format!("/proc/self/fd/{i}").into()),
                            ));
                        }
                        Source::Selection(dev)
                    }
                    _ => continue,
                },
            };
            entries.push(RootEntry {
                name: name.clone(),
                source,
            });
        }
        if self.sandbox.is_some() && !taken(&entries, "tmp") {
            entries.push(RootEntry {
                name: "tmp".into(),
                source: Source::Tmpfs,
            });
        }
        entries
    }

    /// The environment changes for the command: who it runs as, where
    /// programs are found, which view it is in.
    pub fn environment(
        &self,
        host_path: Option<OsString>,
        exists: impl Fn(&Path) -> bool,
    ) -> Vec<(String, OsString)> {
        let mut env = vec![
            (
                "EXOS_VIEW".to_string(),
                OsString::from(self.audience.name()),
            ),
            ("USER".to_string(), self.person.name.clone().into()),
            ("LOGNAME".to_string(), self.person.name.clone().into()),
        ];
        let home = match &self.sandbox {
            Some(s) => Path::new("/data").join(&s.data_name),
            None => self.person.home.clone(),
        };
        env.push(("HOME".into(), home.into()));
        let layers: &[&str] = match self.audience {
            Audience::User => &["/user/bin", "/common/bin", "/system/bin"],
            Audience::System => &["/common/bin", "/system/bin"],
        };
        let mut path: Vec<PathBuf> = layers
            .iter()
            .map(PathBuf::from)
            .filter(|p| exists(p))
            .collect();
        let rest =
            host_path.unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
        path.extend(std::env::split_paths(&rest));
        if let Ok(joined) = std::env::join_paths(path) {
            env.push(("PATH".into(), joined));
        }
        if !self.library_dirs.is_empty() {
            if let Ok(joined) = std::env::join_paths(&self.library_dirs) {
                env.push(("LD_LIBRARY_PATH".into(), joined));
            }
        }
        env
    }
}

fn bind_ro(name: &str, from: PathBuf) -> RootEntry {
    RootEntry {
        name: name.into(),
        source: Source::Bind {
            from,
            writable: false,
        },
    }
}

/// Read-only binds of those of `names` that exist in `dir`.
fn selection(dir: &Path, names: &[&str]) -> Vec<(String, Source)> {
    names
        .iter()
        .filter_map(|n| {
            let path = dir.join(n);
            let meta = path.symlink_metadata().ok()?;
            let source = if meta.file_type().is_symlink() {
                Source::Symlink(std::fs::read_link(&path).ok()?)
            } else {
                Source::Bind {
                    from: path,
                    writable: false,
                }
            };
            Some((n.to_string(), source))
        })
        .collect()
}

/// The top-level entries of a directory, sorted by name.
pub fn top_entries(dir: &Path) -> std::io::Result<Vec<(String, TopKind)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let t = e.file_type()?;
        let kind = if t.is_symlink() {
            TopKind::Symlink(std::fs::read_link(e.path())?)
        } else if t.is_dir() {
            TopKind::Dir
        } else {
            TopKind::File
        };
        out.push((name, kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Why a view could not be made or entered.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The user (first) could not be looked up (second says why).
    #[error("user {0}: {1}")]
    User(String, String),
    /// No packagefs serves the root.
    #[error("{root}: not mounted")]
    NotMounted {
        /// The root.
        root: String,
    },
    /// A non-root caller asked to run as another user.
    #[error("only root can run a view as another user ({0}); run it as that user instead")]
    OtherUser(String),
    /// A system call failed while making the view.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A sandbox was asked to run as root.
    #[error("a sandbox never runs as root")]
    RootSandbox,
    /// Landlock could not be applied (or is not enforced here).
    #[error("landlock: {0}")]
    Landlock(String),
    /// The seccomp filter could not be built or applied.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// The sandbox's init failed.
    #[error("sandbox init: {0}")]
    Init(String),
}

impl ViewError {
    pub(crate) fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> ViewError {
        ViewError::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Why `program` could not be started in the view when exec said "not
/// found": the program is missing, or — a found program whose interpreter
/// is missing — the loader it names (an imported Debian program's
/// `/lib64/ld-linux-x86-64.so.2` when the merged-/usr links are not
/// installed). Looks in the view (call it after entering).
pub fn not_found_reason(program: &std::ffi::OsStr, path: Option<&std::ffi::OsStr>) -> String {
    let shown = Path::new(program).display();
    let found = if program.as_encoded_bytes().contains(&b'/') {
        Some(PathBuf::from(program))
    } else {
        path.into_iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    };
    let Some(found) = found.filter(|p| p.is_file()) else {
        return format!("{shown}: not found in the view");
    };
    match exos_root::elf::interpreter_of(&found) {
        Some(loader) if !Path::new(&loader).exists() => {
            let via = if exos_root::elf::under_merged_usr(&loader) {
                " (imported Debian programs reach it through the usr_links package)"
            } else {
                ""
            };
            format!("{shown}: the program loader {loader} is missing in the view{via}")
        }
        _ => format!("{shown}: not found in the view"),
    }
}

/// Finds the packagefs mount serving `root` (canonical) in this process's
/// mount table.
pub fn find_mount(root: &Path) -> Result<PathBuf, ViewError> {
    let entries = exos_root::mountinfo::read();
    exos_root::mountinfo::exos_mount_of(&entries, root).ok_or_else(|| ViewError::NotMounted {
        root: root.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(audience: Audience, sandbox: Option<Sandbox>) -> ViewSpec {
        ViewSpec {
            root: "/r".into(),
            mountpoint: "/m".into(),
            audience,
            person: Person {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                groups: vec![],
                home: "/home/alice".into(),
                shell: "/bin/bash".into(),
            },
            sandbox,
            library_dirs: vec![],
        }
    }

    fn host() -> Vec<(String, TopKind)> {
        vec![
            ("bin".into(), TopKind::Symlink("usr/bin".into())),
            ("etc".into(), TopKind::Dir),
            ("home".into(), TopKind::Dir),
            ("proc".into(), TopKind::Dir),
            ("system".into(), TopKind::Dir),
            ("tmp".into(), TopKind::Dir),
            ("usr".into(), TopKind::Dir),
        ]
    }

    fn names(entries: &[RootEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn system_views_never_show_the_user_layer() {
        let plan = spec(Audience::System, None).plan(&host(), &[]);
        assert!(!names(&plan).contains(&"user"));
        let plan = spec(Audience::User, None).plan(&host(), &[]);
        assert!(names(&plan).contains(&"user"));
        // EXOS's own names win over a host directory of the same name.
        let system: Vec<_> = plan.iter().filter(|e| e.name == "system").collect();
        assert_eq!(system.len(), 1);
        assert_eq!(
            system[0].source,
            Source::Bind {
                from: "/m/system".into(),
                writable: false
            }
        );
    }

    #[test]
    fn a_userland_in_the_packages_replaces_usr_and_its_links() {
        let packages = vec![
            ("bin".into(), TopKind::Symlink("usr/bin".into())),
            ("etc".into(), TopKind::Dir),
            ("usr".into(), TopKind::Dir),
        ];
        let plan = spec(Audience::System, None).plan(&host(), &packages);
        let usr = plan.iter().find(|e| e.name == "usr").unwrap();
        assert_eq!(
            usr.source,
            Source::Bind {
                from: "/m/merged-system/usr".into(),
                writable: false
            }
        );
        // The packages' etc stays in /system/etc; the host's is kept.
        let etc = plan.iter().find(|e| e.name == "etc").unwrap();
        assert_eq!(
            etc.source,
            Source::Bind {
                from: "/etc".into(),
                writable: true
            }
        );
        // Without usr in the packages, the host's usr is used.
        let plan = spec(Audience::User, None).plan(&host(), &[("bin".into(), TopKind::Dir)]);
        let usr = plan.iter().find(|e| e.name == "usr").unwrap();
        assert_eq!(
            usr.source,
            Source::Bind {
                from: "/usr".into(),
                writable: true
            }
        );
        let bin = plan.iter().find(|e| e.name == "bin").unwrap();
        assert_eq!(bin.source, Source::Symlink("usr/bin".into()));
    }

    #[test]
    fn a_sandbox_sees_no_home_and_writes_only_its_data() {
        let s = spec(
            Audience::User,
            Some(Sandbox {
                net: false,
                data_name: "app".into(),
            }),
        );
        let plan = s.plan(&host(), &[]);
        let n = names(&plan);
        assert!(!n.contains(&"home"), "{n:?}");
        let writable: Vec<_> = plan
            .iter()
            .filter(|e| matches!(e.source, Source::Bind { writable: true, .. }))
            .map(|e| e.name.as_str())
            .collect();
        assert!(writable.is_empty(), "{writable:?}");
        // Its own /proc: a fresh procfs of its PID namespace, not the host's.
        assert!(plan
            .iter()
            .any(|e| e.name == "proc" && e.source == Source::Proc));
        assert_eq!(s.data_dir(), Path::new("/r/data/users/alice/app"));
        assert!(plan
            .iter()
            .any(|e| e.name == "tmp" && e.source == Source::Tmpfs));
    }

    #[test]
    fn path_puts_the_layers_first() {
        let s = spec(Audience::User, None);
        let env = s.environment(Some("/usr/bin".into()), |p| p != Path::new("/common/bin"));
        let path = env.iter().find(|(k, _)| k == "PATH").unwrap();
        assert_eq!(path.1, OsString::from("/user/bin:/system/bin:/usr/bin"));
    }
}
