//! A user's own installs (`--user`): their layer `ROOT/users/NAME/packages`
//! with their own numbered states in `ROOT/users/NAME/state`, changed by
//! them without root; and `exos user add`, by which root gives a user that
//! layer.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use exos_manager::Root;
use exos_root::{Layout, UserName};
use serde::Serialize;

use crate::output::Out;

/// `--user`: the caller's own installs instead of the root's.
#[derive(Args, Debug, Clone, Default)]
pub struct Mine {
    /// Your own installs: your layer (ROOT/users/YOU/packages) and your
    /// own numbered states, resolved against the root's shared layers; no
    /// root needed (root gives you the layer once: `exos user add YOU`).
    #[arg(long = "user")]
    pub user: bool,
}

impl Mine {
    /// The user whose installs these are, if `--user` was given.
    pub fn name(&self) -> Result<Option<UserName>> {
        if !self.user {
            return Ok(None);
        }
        me().map(Some)
    }
}

/// The user running this process, by their login name.
pub fn me() -> Result<UserName> {
    let person = exos_view::Person::current()?;
    UserName::new(person.name.clone())
        .with_context(|| format!("{}: not a name a user layer can have", person.name))
}

/// The root at `root`, or `user`'s own installs in it, for reading (a
/// user's states are made on first use).
pub fn read(root: &Path, user: Option<&UserName>) -> Result<Root> {
    match user {
        None => Ok(Root::read_only(root)?),
        Some(user) => {
            let layout = Layout::for_user(root, user.clone());
            if !layout.exists() {
                drop(Root::init_user(root, user)?);
            }
            Ok(Root::read_only_layout(layout)?)
        }
    }
}

/// [`read`], locked for a change (the user's own lock, not the root's).
pub fn lock(root: &Path, user: Option<&UserName>) -> Result<Root> {
    Ok(match user {
        None => Root::lock(root)?,
        Some(user) => Root::init_user(root, user)?,
    })
}

/// What `exos user add` made.
#[derive(Serialize)]
pub struct UserAdded {
    /// The user.
    pub user: String,
    /// Their layer.
    pub packages: PathBuf,
    /// Their states.
    pub state: PathBuf,
    /// Directories made now (none when everything was there).
    pub made: Vec<PathBuf>,
}

/// `exos user add NAME -r ROOT` (root): `users/NAME` (root's, so the user
/// cannot swap what is in it for links), and in it `packages` and `state`,
/// the user's. A directory already there is checked, never chowned: it
/// must be the user's (or root's) and writable by no one else.
pub fn add(name: &str, root: &Path, out: Out) -> Result<()> {
    let user = UserName::new(name)?;
    let person = exos_view::Person::by_name(name)?;
    let layout = Layout::new(root);
    if !layout.exists() {
        bail!("{}: not an EXOS root", root.display());
    }
    if !rustix::process::geteuid().is_root() {
        bail!("exos user add: only root gives users a layer of their own");
    }
    let home = layout.users_dir().join(user.as_str());
    let mut made = Vec::new();
    make_dir(&home, 0o755, None, person.uid, &mut made)?;
    let packages = layout.user_packages_dir(&user);
    make_dir(
        &packages,
        0o755,
        Some((person.uid, person.gid)),
        person.uid,
        &mut made,
    )?;
    let state = layout.user_state_dir(&user);
    make_dir(
        &state,
        0o700,
        Some((person.uid, person.gid)),
        person.uid,
        &mut made,
    )?;
    let report = UserAdded {
        user: user.to_string(),
        packages,
        state,
        made,
    };
    out.result(&report, |r| {
        format!(
            "{}: own layer {} and states {} ({}).\n",
            r.user,
            r.packages.display(),
            r.state.display(),
            if r.made.is_empty() {
                "there already".to_string()
            } else {
                format!("{} made", r.made.len())
            }
        )
    })
}

/// Makes `dir` with `mode`, given to `owner` — or checks the one there:
/// a real directory (not a link), owned by root or `uid`, writable by no
/// one else.
fn make_dir(
    dir: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
    uid: u32,
    made: &mut Vec<PathBuf>,
) -> Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            if let Some((u, g)) = owner {
                std::os::unix::fs::chown(dir, Some(u), Some(g))
                    .with_context(|| format!("{}: giving it to its user", dir.display()))?;
            }
            made.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let m = std::fs::symlink_metadata(dir).with_context(|| format!("{}", dir.display()))?;
            if !m.is_dir() {
                bail!("{}: there already, and not a directory", dir.display());
            }
            if (m.uid() != 0 && m.uid() != uid) || m.mode() & 0o022 != 0 {
                bail!(
                    "{}: there already, but owned by uid {} or writable by others (mode {:o}); a user's layer must be theirs or root's and writable by no one else",
                    dir.display(),
                    m.uid(),
                    m.mode() & 0o7777
                );
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("{}", dir.display())),
    }
}
