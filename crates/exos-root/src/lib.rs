//! # exos-root — the on-disk layout of an EXOS root
//!
//! ```text
//! ROOT/system/packages/   ROOT/common/packages/   ROOT/user/packages/
//! ROOT/system/state/active.list        the current state (the commit point)
//! ROOT/system/state/states/NNNNNN.list every state ever made, numbered
//! ROOT/system/state/store/<sha>.hpkg   package files no longer placed
//! ROOT/system/state/lock               one writer at a time (flock)
//! ROOT/system/state/trust.json         trusted keys, signature policy per layer
//! ROOT/system/state/signatures/<sha>.minisig  signatures accepted at install
//! ROOT/system/state/repos.json, repos/NAME/   repositories and their trusted metadata
//! ROOT/system/state/packages.json      where installed package files came from
//! ROOT/system/state/cache/             downloads (exos-repo)
//! ROOT/data/                           writable data, never in packages
//! ```
//!
//! This crate owns that layout and the one file format of it, the state
//! list: [`Layer`], [`Sha256`], [`PackageFile`], [`StateEntry`] and
//! [`StateList`] (one parser, one writer, for `active.list` and numbered
//! states alike), the paths ([`Layout`]), and [`write_atomically`]. It knows
//! nothing of package contents, FUSE or resolution: packagefs reads a
//! root through it, the package manager changes one through it.
//!
//! Invariant: every value of these types is valid — a `StateList` parsed or
//! built here renders to text that parses back to the same list.

#![forbid(unsafe_code)]

pub mod boot;
pub mod cache_dir;
pub mod digest;
pub mod digests;
pub mod elf;
pub mod hex;
pub mod mountinfo;
pub mod overlays;
pub mod pkgdb;
pub mod walk;

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The layers of a root, lowest priority first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The system layer: the base system, root's.
    System,
    /// The common layer: shared additions, root's.
    Common,
    /// The user layer: seen by user processes only.
    User,
}

impl Layer {
    /// Every layer, lowest priority first.
    pub const ALL: [Layer; 3] = [Layer::System, Layer::Common, Layer::User];

    /// `system`, `common` or `user`.
    pub fn name(self) -> &'static str {
        match self {
            Layer::System => "system",
            Layer::Common => "common",
            Layer::User => "user",
        }
    }

    /// Position in [`Layer::ALL`], for per-layer arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layer {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Layer, NameError> {
        Layer::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| NameError::Layer(s.to_string()))
    }
}

/// A name, file name or digest that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not `system`, `common` or `user`.
    #[error("unknown layer {0:?} (system, common or user)")]
    Layer(String),
    /// Not 64 hex digits.
    #[error("{0:?} is not a SHA-256 (64 hex digits)")]
    Sha256(String),
    /// Not a plain `NAME.hpkg`.
    #[error("{0:?} is not a package file name (NAME.hpkg, not hidden, no '/', spaces or control characters)")]
    PackageFile(String),
    /// Not a user name.
    #[error("{0:?} is not a user name (letters, digits, '.', '_', '-', at most 32, not starting with '-' or '.')")]
    UserName(String),
}

/// One value per layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PerLayer<T> {
    /// The system layer's value.
    pub system: T,
    /// The common layer's value.
    pub common: T,
    /// The user layer's value.
    pub user: T,
}

impl<T> PerLayer<T> {
    /// Each layer's value from `f`.
    pub fn from_fn(mut f: impl FnMut(Layer) -> T) -> PerLayer<T> {
        PerLayer {
            system: f(Layer::System),
            common: f(Layer::Common),
            user: f(Layer::User),
        }
    }

    /// The value of `layer`.
    pub fn get(&self, layer: Layer) -> &T {
        match layer {
            Layer::System => &self.system,
            Layer::Common => &self.common,
            Layer::User => &self.user,
        }
    }

    /// The value of `layer`, to change.
    pub fn get_mut(&mut self, layer: Layer) -> &mut T {
        match layer {
            Layer::System => &mut self.system,
            Layer::Common => &mut self.common,
            Layer::User => &mut self.user,
        }
    }

    /// (layer, value), lowest layer first.
    pub fn iter(&self) -> impl Iterator<Item = (Layer, &T)> {
        Layer::ALL.into_iter().map(move |l| (l, self.get(l)))
    }
}

/// A SHA-256 digest, shown and stored as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of a file's content.
    pub fn of_file(path: impl AsRef<Path>) -> std::io::Result<Sha256> {
        Sha256::of_reader(std::fs::File::open(path)?)
    }

    /// The digest of everything `f` reads (an open file: `&File` reads
    /// from its current offset).
    pub fn of_reader(f: impl Read) -> std::io::Result<Sha256> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        digest::read_through(f, |b| h.update(b))?;
        Ok(Sha256(h.finalize().into()))
    }

    /// The digest of bytes in memory.
    pub fn of_bytes(bytes: &[u8]) -> Sha256 {
        use sha2::Digest;
        Sha256(sha2::Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl FromStr for Sha256 {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Sha256, NameError> {
        hex::decode(s)
            .map(Sha256)
            .ok_or_else(|| NameError::Sha256(s.to_string()))
    }
}

impl serde::Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Sha256, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The file name of a package in a packages directory: `NAME.hpkg`, one
/// path component, not hidden, no whitespace or control characters (state
/// lists separate fields by whitespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct PackageFile(String);

impl PackageFile {
    /// Checks a package file name: one plain name ending in `.hpkg`.
    pub fn new(name: impl Into<String>) -> Result<PackageFile, NameError> {
        let name = name.into();
        let ok = name.len() > ".hpkg".len()
            && name.len() <= 255
            && name.ends_with(".hpkg")
            && !name.starts_with('.')
            && !name.contains('/')
            && !name.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(PackageFile(name))
        } else {
            Err(NameError::PackageFile(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackageFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for PackageFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PackageFile, D::Error> {
        PackageFile::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One line of a state: this package file, with this content, in this layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StateEntry {
    /// The layer the package is in.
    pub layer: Layer,
    /// Its file name in the layer's packages directory.
    pub file: PackageFile,
    /// Its contents' SHA-256.
    pub sha256: Sha256,
}

/// A state list with its header lines:
///
/// ```text
/// # exos state
/// # created 1764000000
/// # change install hello 1.0-1
/// system hello-1.0-1.hpkg 8725f0…
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StateList {
    /// The packages, in file order.
    pub entries: Vec<StateEntry>,
    /// What made this state (one line).
    pub change: String,
    /// Seconds since the epoch.
    pub created: u64,
}

/// A state list that is not well formed; says which file and line.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct StateError {
    /// The state file.
    pub path: PathBuf,
    /// The line at fault, when one is (1-based).
    pub line: Option<usize>,
    /// The rule broken, in words.
    pub message: String,
}

impl StateList {
    /// Parses a state list; `path` names it in errors. Comment lines other
    /// than `# created`/`# change` are ignored; an entry listed twice is an
    /// error.
    pub fn parse(text: &str, path: &Path) -> Result<StateList, StateError> {
        let err = |line: Option<usize>, message: String| StateError {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut st = StateList::default();
        // Duplicates found in one pass, not by scanning the list per line
        // (quadratic: a root of 10,000 packages spent seconds here).
        let mut seen = std::collections::HashSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if let Some(c) = line.strip_prefix("# change ") {
                st.change = c.to_string();
                continue;
            }
            if let Some(t) = line.strip_prefix("# created ") {
                st.created = t
                    .trim()
                    .parse()
                    .map_err(|_| err(Some(i + 1), format!("bad creation time {t:?}")))?;
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let expected = || {
                err(
                    Some(i + 1),
                    format!(
                        "expected \"<system|common|user> <name>.hpkg <sha256>\", found {line:?}"
                    ),
                )
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [layer, file, sha] = parts.as_slice() else {
                return Err(expected());
            };
            let entry = StateEntry {
                layer: layer.parse().map_err(|_| expected())?,
                file: PackageFile::new(*file).map_err(|_| expected())?,
                sha256: sha.parse().map_err(|_| expected())?,
            };
            if !seen.insert((entry.layer, entry.file.clone())) {
                return Err(err(
                    Some(i + 1),
                    format!("{}/{} is listed twice", entry.layer, entry.file),
                ));
            }
            st.entries.push(entry);
        }
        if st.change.contains('\n') {
            return Err(err(None, "change text spans lines".into()));
        }
        Ok(st)
    }

    /// Reads and parses a state file.
    pub fn read(path: &Path) -> Result<StateList, StateError> {
        StateList::read_with_text(path).map(|(state, _)| state)
    }

    /// [`StateList::read`], with the file's text (to compare it with
    /// other state files without parsing them).
    pub fn read_with_text(path: &Path) -> Result<(StateList, String), StateError> {
        let text = std::fs::read_to_string(path).map_err(|e| StateError {
            path: path.to_path_buf(),
            line: None,
            message: e.to_string(),
        })?;
        Ok((StateList::parse(&text, path)?, text))
    }

    /// The text form, entries sorted by layer and file name.
    pub fn render(&self) -> String {
        let mut s = format!(
            "# exos state\n# created {}\n# change {}\n",
            self.created,
            self.change.replace('\n', " ")
        );
        let mut entries: Vec<&StateEntry> = self.entries.iter().collect();
        entries.sort_by(|a, b| (a.layer, &a.file).cmp(&(b.layer, &b.file)));
        for e in entries {
            s += &format!("{} {} {}\n", e.layer, e.file, e.sha256);
        }
        s
    }

    /// The same packages (ignoring order, change text and time)?
    pub fn same_packages(&self, other: &StateList) -> bool {
        fn key(s: &StateList) -> Vec<&StateEntry> {
            let mut v: Vec<&StateEntry> = s.entries.iter().collect();
            v.sort_by(|a, b| (a.layer, &a.file, a.sha256).cmp(&(b.layer, &b.file, b.sha256)));
            v
        }
        key(self) == key(other)
    }
}

/// Top-level names packagefs generates in every layer directory; no
/// package may ship one (it could replace or hide the metadata of others).
pub const RESERVED_NAMES: [&str; 2] = [".packages", ".exos"];

/// The first reserved name among a package's top-level entry names (names
/// are bytes, as packages store them).
pub fn reserved_name<'a>(mut names: impl Iterator<Item = &'a [u8]>) -> Option<&'static str> {
    names.find_map(|n| RESERVED_NAMES.into_iter().find(|r| r.as_bytes() == n))
}

/// The bytes of a state file (`packages.json`, `overlays.json`,
/// `boot.json`), at most `max` + 1 of them (so its parser can refuse a
/// larger one); `None` when it does not exist.
pub(crate) fn read_state_file(path: &Path, max: u64) -> Result<Option<Vec<u8>>, StateError> {
    let io = |e: std::io::Error| StateError {
        path: path.to_path_buf(),
        line: None,
        message: e.to_string(),
    };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    Ok(Some(bytes))
}

/// The current state, relative to the root.
pub const ACTIVE_LIST: &str = "system/state/active.list";
/// Numbered states, relative to the root.
pub const STATES_DIR: &str = "system/state/states";
/// Package files of states other than the placed one, named `<sha256>.hpkg`.
pub const STORE_DIR: &str = "system/state/store";
/// The writer lock (flock), relative to the root.
pub const LOCK_FILE: &str = "system/state/lock";
/// Writable data, relative to the root.
pub const DATA_DIR: &str = "data";
/// Prefix of package files being copied into place.
pub const TEMP_PREFIX: &str = ".exos-new-";

/// A user's name as it names a per-user layer (`ROOT/users/NAME/packages`):
/// POSIX's portable user names (letters, digits, `.`, `_`, `-`; not
/// starting with `-` or `.`; at most 32 bytes).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct UserName(String);

impl TryFrom<String> for UserName {
    type Error = NameError;
    fn try_from(s: String) -> Result<UserName, NameError> {
        UserName::new(s)
    }
}

impl From<UserName> for String {
    fn from(u: UserName) -> String {
        u.0
    }
}

impl UserName {
    /// Checks a user name: letters, digits, `.`, `_`, `-`, at most 32, not starting with `-` or `.`.
    pub fn new(name: impl Into<String>) -> Result<UserName, NameError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 32
            && !name.starts_with(['-', '.'])
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(UserName(name))
        } else {
            Err(NameError::UserName(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The paths of a root — or of one user's own installs in it
/// ([`Layout::for_user`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The root directory.
    pub root: PathBuf,
    /// Whose installs these are: `None` for the root's own (the shared
    /// layers, `system/state`), a user for that user's layer
    /// (`users/NAME/packages`) and states (`users/NAME/state`).
    pub user: Option<UserName>,
}

impl Layout {
    /// The layout of the root at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout {
            root: root.into(),
            user: None,
        }
    }

    /// The layout of `user`'s own installs in the root at `root`: their
    /// layer `users/NAME/packages` and, in `users/NAME/state`, their own
    /// states, store, lock, marks and download cache. The shared layers'
    /// directories are the root's (read, never changed, through this
    /// layout), and so is the trust store.
    pub fn for_user(root: impl Into<PathBuf>, user: UserName) -> Layout {
        Layout {
            root: root.into(),
            user: Some(user),
        }
    }

    /// The root's own layout (the same one unless this is a user's).
    pub fn shared(&self) -> Layout {
        Layout::new(self.root.clone())
    }

    /// The layers this layout's states hold: all of them for the root's
    /// own, only [`Layer::User`] (the user's own directory) for a user's.
    pub fn layers(&self) -> &'static [Layer] {
        match self.user {
            None => &Layer::ALL,
            Some(_) => &[Layer::User],
        }
    }

    /// `ROOT/<layer>/packages`; for a user's layout, the user layer is
    /// `ROOT/users/NAME/packages`.
    pub fn packages_dir(&self, layer: Layer) -> PathBuf {
        match (&self.user, layer) {
            (Some(user), Layer::User) => self.user_packages_dir(user),
            _ => self.root.join(layer.name()).join("packages"),
        }
    }

    /// `ROOT/users/NAME/state` of a user's layout.
    pub fn user_state_dir(&self, user: &UserName) -> PathBuf {
        self.users_dir().join(user.as_str()).join("state")
    }

    /// `ROOT/users`: one directory per user with a layer of their own.
    pub fn users_dir(&self) -> PathBuf {
        self.root.join("users")
    }

    /// `ROOT/users/NAME/packages`: NAME's own user layer.
    pub fn user_packages_dir(&self, user: &UserName) -> PathBuf {
        self.users_dir().join(user.as_str()).join("packages")
    }

    /// The users with a layer of their own (a valid name and a `packages`
    /// directory), sorted.
    pub fn users(&self) -> Vec<UserName> {
        let mut out: Vec<UserName> = std::fs::read_dir(self.users_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| UserName::new(e.ok()?.file_name().into_string().ok()?).ok())
            .filter(|u| self.user_packages_dir(u).is_dir())
            .collect();
        out.sort();
        out
    }

    /// Where an entry's file is placed when its state is current.
    pub fn placed(&self, e: &StateEntry) -> PathBuf {
        self.packages_dir(e.layer).join(e.file.as_str())
    }

    /// `system/state/active.list`: the current state.
    pub fn active_list(&self) -> PathBuf {
        match &self.user {
            None => self.root.join(ACTIVE_LIST),
            Some(_) => self.state_dir().join("active.list"),
        }
    }

    /// `system/state/states/`: every numbered state.
    pub fn states_dir(&self) -> PathBuf {
        match &self.user {
            None => self.root.join(STATES_DIR),
            Some(_) => self.state_dir().join("states"),
        }
    }

    /// `ROOT/system/state/states/NNNNNN.list`.
    pub fn state_file(&self, n: u64) -> PathBuf {
        self.states_dir().join(format!("{n:06}.list"))
    }

    /// `system/state/store/`: packages of other states, by SHA-256.
    pub fn store_dir(&self) -> PathBuf {
        match &self.user {
            None => self.root.join(STORE_DIR),
            Some(_) => self.state_dir().join("store"),
        }
    }

    /// `ROOT/system/state/store/<sha>.hpkg`.
    pub fn stored(&self, sha: &Sha256) -> PathBuf {
        self.store_dir().join(format!("{sha}.hpkg"))
    }

    /// `system/state/lock`: held by whoever changes the root.
    pub fn lock_file(&self) -> PathBuf {
        match &self.user {
            None => self.root.join(LOCK_FILE),
            Some(_) => self.state_dir().join("lock"),
        }
    }

    /// `ROOT/system/state` (a user's: `ROOT/users/NAME/state`).
    pub fn state_dir(&self) -> PathBuf {
        match &self.user {
            None => self.root.join("system").join("state"),
            Some(user) => self.user_state_dir(user),
        }
    }

    /// `ROOT/system/state/boot.json`: how each state booted (see [`boot`]).
    pub fn boot_record(&self) -> PathBuf {
        self.root.join("system").join("state").join("boot.json")
    }

    /// `ROOT/system/state/trust.json`: the keys the root trusts and each
    /// layer's signature policy (format: `exos-trust`) — the root's, for a
    /// user's layout too.
    pub fn trust_store(&self) -> PathBuf {
        self.root.join("system/state/trust.json")
    }

    /// `ROOT/system/state/signatures/<sha>.minisig`: the signature accepted
    /// for a package when it was installed.
    pub fn signature(&self, sha: &Sha256) -> PathBuf {
        self.signatures_dir().join(format!("{sha}.minisig"))
    }

    /// `ROOT/system/state/digests/<sha>.digests`: the content digests
    /// computed for a package's files ([`digests::ContentDigests`]).
    pub fn digests(&self, sha: &Sha256) -> PathBuf {
        self.digests_dir().join(format!("{sha}.digests"))
    }

    /// `system/state/digests/`: packages' remembered file digests.
    pub fn digests_dir(&self) -> PathBuf {
        self.state_dir().join("digests")
    }

    /// `ROOT/system/state/overlays.json`: runtime overlays (`exos
    /// overlay`), outside the numbered states.
    pub fn overlays_file(&self) -> PathBuf {
        self.state_dir().join("overlays.json")
    }

    /// `ROOT/system/state/packages.json` (see [`pkgdb`]).
    pub fn package_db(&self) -> PathBuf {
        self.state_dir().join("packages.json")
    }

    /// `ROOT/system/state/manifests/<sha>.json`: the manifest of an
    /// encrypted package, remembered when it was installed with its key,
    /// so that later changes to the root need no key.
    pub fn remembered_manifest(&self, sha: &Sha256) -> PathBuf {
        self.manifests_dir().join(format!("{sha}.json"))
    }

    /// `ROOT/system/state/installed.index`: the current state's packages'
    /// manifests, sizes and top-level names, read instead of every
    /// package (derived data, rewritten by every switch of state).
    pub fn installed_index(&self) -> PathBuf {
        self.state_dir().join("installed.index")
    }

    /// `system/state/manifests/`: installed packages' remembered manifests.
    pub fn manifests_dir(&self) -> PathBuf {
        self.state_dir().join("manifests")
    }

    /// `ROOT/system/state/lazy/`: packages installed lazily — each a
    /// `<sha>.lazy` record (where to fetch it) and a `<sha>.blocks` block
    /// map (what every block must hash to), in place of the file.
    pub fn lazy_dir(&self) -> PathBuf {
        self.state_dir().join("lazy")
    }

    /// `ROOT/system/state/lazy/<sha>.lazy`.
    pub fn lazy_record(&self, sha: &Sha256) -> PathBuf {
        self.lazy_dir().join(format!("{sha}.lazy"))
    }

    /// `ROOT/system/state/lazy/<sha>.blocks`.
    pub fn lazy_blocks(&self, sha: &Sha256) -> PathBuf {
        self.lazy_dir().join(format!("{sha}.blocks"))
    }

    /// `system/state/signatures/`: signatures kept at install.
    pub fn signatures_dir(&self) -> PathBuf {
        self.state_dir().join("signatures")
    }

    /// `ROOT/system/state/cache/`: packages downloaded from repositories
    /// (by SHA-256; `.part` files resume), emptied by gc.
    pub fn cache_dir(&self) -> PathBuf {
        self.state_dir().join("cache")
    }

    /// `ROOT/system/state/cache/<sha>.hpkg`: a downloaded package.
    pub fn download(&self, sha: &Sha256) -> PathBuf {
        self.cache_dir().join(format!("{sha}.hpkg"))
    }

    /// `data/`: the only writable part of a booted system.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join(DATA_DIR)
    }

    /// Whether this looks like an initialised root.
    pub fn exists(&self) -> bool {
        self.states_dir().is_dir()
    }
}

/// The number of a state file name (`000042.list` → 42).
pub fn state_number(file_name: &str) -> Option<u64> {
    let n = file_name.strip_suffix(".list")?;
    (n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// Writes `bytes` to `path` atomically: a fresh temporary file beside it
/// (created exclusively, never through a symlink), fsync, rename, fsync of
/// the directory. A failure leaves no temporary file behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, bytes, None, Durability::Synced)
}

/// [`write_atomically`] for a file others are meant to read (a published
/// repository's documents, a signature beside a package): created with the
/// mode any new file gets, `0666` less the process's umask (typically
/// 0644), instead of a temporary file's 0600.
pub fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, bytes, Some(public_mode()), Durability::Synced)
}

/// The mode a new file gets: `0666` less the umask (read from
/// `/proc/self/status`, so the umask is never changed, even for a moment).
pub fn public_mode() -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    0o666 & !umask
}

/// Replaces `path` with `bytes` by rename, readable by all as
/// [`write_public`] makes files, but without syncing: for derived data
/// that its reader checks and can rebuild (the installed-package index),
/// where a file lost or torn by a power cut costs a rebuild, never a
/// wrong answer, and a sync of megabytes would cost every change.
pub fn write_derived(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, bytes, Some(public_mode()), Durability::Rebuildable)
}

/// Whether a replaced file must survive a power cut once written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Synced, file and directory: state.
    Synced,
    /// Not synced: derived data its reader checks and rebuilds.
    Rebuildable,
}

fn write_atomically_with(
    path: &Path,
    bytes: &[u8],
    mode: Option<u32>,
    durability: Durability,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // A bare file name's parent is "": the current directory.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".exos-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if let Some(mode) = mode {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    let synced = durability == Durability::Synced;
    if synced {
        tmp.as_file().sync_all()?;
    }
    crash_point();
    tmp.persist(path).map_err(|e| e.error)?;
    if synced {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Makes `dir` (mode 0700; its parent must exist) if missing, else checks
/// it is a directory (not a link) of the effective user that no one else
/// can read or write. Never changes an existing directory's mode. For the
/// root's own private state (remembered manifests of sealed packages);
/// caches use [`cache_dir::open_cache_dir`].
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // Made 0700 when missing; an existing one is checked, never chmodded
    // (it may not be ours to change).
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{}: must be a directory of uid {me} that no one else can read or write (mode 0700)",
            dir.display()
        )));
    }
    Ok(())
}

/// Test hook (feature `crash-points`): with `EXOS_CRASH_AT=N`, the process
/// kills itself (SIGKILL) at the N-th crash point it reaches, so tests can
/// stop a change at every step. Without the feature it does nothing.
#[inline]
pub fn crash_point() {
    #[cfg(feature = "crash-points")]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEEN: AtomicU64 = AtomicU64::new(0);
        let Some(at) = std::env::var("EXOS_CRASH_AT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return;
        };
        if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == at {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn state_lists_round_trip_and_reject_garbage() {
        let p = Path::new("active.list");
        let text = format!(
            "# exos state\n# created 17\n# change install a\nsystem a-1.hpkg {SHA}\n\nuser b.hpkg {}\n",
            SHA.to_uppercase()
        );
        let st = StateList::parse(&text, p).unwrap();
        assert_eq!((st.created, st.change.as_str()), (17, "install a"));
        assert_eq!(st.entries.len(), 2);
        assert_eq!(st.entries[1].layer, Layer::User);
        assert_eq!(st.entries[1].sha256.to_string(), SHA);
        assert_eq!(StateList::parse(&st.render(), p).unwrap(), st);
        for bad in [
            format!("vendor a.hpkg {SHA}"),
            format!("system a.hpkg {}", &SHA[1..]),
            format!("system a.hpkg {SHA} extra"),
            "system a.hpkg".to_string(),
            format!("system ../a.hpkg {SHA}"),
            format!("system .hidden.hpkg {SHA}"),
            format!("system a.txt {SHA}"),
            format!("system a.hpkg {}", "z".repeat(64)),
            format!("system a.hpkg {SHA}\nsystem a.hpkg {SHA}"),
            "# created soon".to_string(),
        ] {
            let err = StateList::parse(&bad, p).unwrap_err().to_string();
            assert!(err.starts_with("active.list line "), "{bad}: {err}");
        }
        // Truncation and byte corruption never panic.
        let bytes = text.as_bytes();
        for n in 0..bytes.len() {
            let _ = StateList::parse(&String::from_utf8_lossy(&bytes[..n]), p);
        }
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] ^= 0x5a;
            if let Ok(st) = StateList::parse(&String::from_utf8_lossy(&b), p) {
                assert_eq!(StateList::parse(&st.render(), p).unwrap(), st);
            }
        }
    }

    #[test]
    fn names_hashes_and_paths() {
        assert!(PackageFile::new("a b.hpkg").is_err());
        assert!(PackageFile::new(".hpkg").is_err());
        assert!(PackageFile::new("a\n.hpkg").is_err());
        assert_eq!(PackageFile::new("a-1.hpkg").unwrap().as_str(), "a-1.hpkg");
        assert_eq!(
            Sha256::of_bytes(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!("USER".parse::<Layer>().ok(), None);
        assert_eq!("user".parse::<Layer>(), Ok(Layer::User));
        let l = Layout::new("/r");
        assert_eq!(
            l.state_file(7),
            Path::new("/r/system/state/states/000007.list")
        );
        assert_eq!(state_number("000007.list"), Some(7));
        assert_eq!(state_number("7.list"), None);
        assert_eq!(state_number(".000007.list.tmp"), None);
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Into a missing directory: an error, nothing created.
        assert!(write_atomically(&dir.path().join("no/f"), b"x").is_err());
    }
}
