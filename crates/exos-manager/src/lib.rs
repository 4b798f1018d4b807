//! # exos-manager — install, remove, states and rollback
//!
//! The package manager over an EXOS root:
//!
//! ```text
//! ROOT/system/packages/   ROOT/common/packages/   ROOT/user/packages/
//! ROOT/system/state/active.list        the current state (commit point)
//! ROOT/system/state/states/NNNNNN.list every state ever made, numbered
//! ROOT/system/state/store/<sha>.hpkg   package files no longer active
//! ROOT/system/state/lock               one writer at a time (flock)
//! ROOT/data/                           writable data, never in packages
//! ```
//!
//! A state is a list of `layer file-name sha256` lines. It is *consistent*
//! when every line's file is found with that hash either in its layer's
//! packages directory or in the store; packagefs mounts exactly that.
//!
//! Every change runs [`Root::switch`]: new package files are copied to a
//! temporary name, synced and renamed into the store; the new numbered state
//! is written; then `active.list` is replaced by rename — the commit point —
//! and finally files are moved (renamed, never copied) between the store and
//! the packages directories to match. A crash anywhere leaves the old or the
//! new state current and consistent; leftovers are tidied by
//! [`Root::recover`], which every command runs first under the lock.
//! Rollback is the same switch to an older list: renames only.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use exos_packagefs::activate::{
    parse_state_list, sha256_file, StateEntry, ACTIVE_LIST, LAYERS, STORE_DIR,
};

pub use exos_packagefs::activate::StateEntry as Entry;

/// Numbered states, relative to the root.
pub const STATES_DIR: &str = "system/state/states";
const LOCK_FILE: &str = "system/state/lock";
const TEMP_PREFIX: &str = ".exos-new-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

trait Ctx<T> {
    fn at(self, what: impl AsRef<Path>) -> Result<T>;
}

impl<T> Ctx<T> for std::io::Result<T> {
    fn at(self, what: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::Io(what.as_ref().display().to_string(), e))
    }
}

/// Test hook: with `EXOS_CRASH_AT=N`, the process kills itself (SIGKILL) at
/// the N-th crash point it reaches, so tests can stop a change at every step.
pub fn crash_point() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let Some(at) = std::env::var("EXOS_CRASH_AT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == at {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    // A bare file name's parent is "": the current directory.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // A full disk must not stay full because of our leftover.
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io(path.display().to_string(), e));
    }
    crash_point();
    fs::rename(&tmp, path).at(path)?;
    fsync_dir(dir)
}

/// A state: its entries and a one-line description of the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub entries: Vec<Entry>,
    pub change: String,
    pub created: u64,
}

impl State {
    pub fn render(&self) -> String {
        let mut s = format!(
            "# exos state\n# created {}\n# change {}\n",
            self.created,
            self.change.replace('\n', " ")
        );
        let mut entries = self.entries.clone();
        entries.sort_by(|a, b| (a.layer, &a.file).cmp(&(b.layer, &b.file)));
        for e in entries {
            s += &format!("{} {} {}\n", LAYERS[e.layer], e.file, e.sha256);
        }
        s
    }

    pub fn parse(text: &str, path: &Path) -> Result<State> {
        let entries = parse_state_list(text, path).map_err(Error::Invalid)?;
        let mut st = State {
            entries,
            ..Default::default()
        };
        for line in text.lines() {
            if let Some(c) = line.strip_prefix("# change ") {
                st.change = c.to_string();
            } else if let Some(t) = line.strip_prefix("# created ") {
                st.created = t.trim().parse().unwrap_or(0);
            }
        }
        let mut seen = HashSet::new();
        for e in &st.entries {
            if !seen.insert((e.layer, e.file.clone())) {
                return Err(Error::Invalid(format!(
                    "{}: {}/{} is listed twice",
                    path.display(),
                    LAYERS[e.layer],
                    e.file
                )));
            }
        }
        Ok(st)
    }

    pub fn read(path: &Path) -> Result<State> {
        let text = fs::read_to_string(path).at(path)?;
        State::parse(&text, path)
    }
}

/// A new package file to install: where it is now, and where it goes.
#[derive(Debug, Clone)]
pub struct NewPackage {
    pub source: PathBuf,
    pub layer: usize,
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

/// An EXOS root, locked for writing while this value lives.
pub struct Root {
    pub path: PathBuf,
    _lock: Option<File>,
}

impl Root {
    /// Creates the layout (idempotent) and an empty state 0 when there is
    /// no state yet.
    pub fn init(path: &Path) -> Result<Root> {
        for layer in LAYERS {
            let d = path.join(layer).join("packages");
            fs::create_dir_all(&d).at(&d)?;
        }
        for d in [STATES_DIR, STORE_DIR, "data"] {
            fs::create_dir_all(path.join(d)).at(path.join(d))?;
        }
        let root = Root::lock(path)?;
        if !path.join(ACTIVE_LIST).exists() {
            let st = State {
                entries: Vec::new(),
                change: "init".into(),
                created: now(),
            };
            write_atomically(&root.state_path(0), st.render().as_bytes())?;
            write_atomically(&path.join(ACTIVE_LIST), st.render().as_bytes())?;
        }
        Ok(root)
    }

    /// Opens an initialised root and takes the writer lock (waits for it).
    pub fn lock(path: &Path) -> Result<Root> {
        if !path.join(STATES_DIR).is_dir() {
            return Err(Error::Invalid(format!(
                "{}: not an EXOS root (run `exos init {}`)",
                path.display(),
                path.display()
            )));
        }
        let lock_path = path.join(LOCK_FILE);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::Io(lock_path.display().to_string(), e.into()))?;
        Ok(Root {
            path: path.to_path_buf(),
            _lock: Some(f),
        })
    }

    /// Opens a root for reading only (no lock: readers only ever see whole
    /// files, because every file is replaced by rename).
    pub fn read_only(path: &Path) -> Result<Root> {
        if !path.join(STATES_DIR).is_dir() {
            return Err(Error::Invalid(format!(
                "{}: not an EXOS root",
                path.display()
            )));
        }
        Ok(Root {
            path: path.to_path_buf(),
            _lock: None,
        })
    }

    pub fn state_path(&self, n: u64) -> PathBuf {
        self.path.join(STATES_DIR).join(format!("{n:06}.list"))
    }

    fn store_path(&self, sha: &str) -> PathBuf {
        self.path.join(STORE_DIR).join(format!("{sha}.hpkg"))
    }

    fn placed_path(&self, e: &Entry) -> PathBuf {
        self.path
            .join(LAYERS[e.layer])
            .join("packages")
            .join(&e.file)
    }

    pub fn current(&self) -> Result<State> {
        State::read(&self.path.join(ACTIVE_LIST))
    }

    /// Numbers of all kept states, ascending.
    pub fn states(&self) -> Result<Vec<u64>> {
        let dir = self.path.join(STATES_DIR);
        let mut out: Vec<u64> = fs::read_dir(&dir)
            .at(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".list")?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    pub fn state(&self, n: u64) -> Result<State> {
        State::read(&self.state_path(n))
    }

    /// Which numbered state equals the current one (the newest such).
    pub fn current_number(&self) -> Result<Option<u64>> {
        let cur = self.current()?;
        let key = |s: &State| {
            let mut v: Vec<_> = s
                .entries
                .iter()
                .map(|e| (e.layer, e.file.clone(), e.sha256.clone()))
                .collect();
            v.sort();
            v
        };
        for n in self.states()?.into_iter().rev() {
            if let Ok(s) = self.state(n) {
                if key(&s) == key(&cur) && s.created == cur.created {
                    return Ok(Some(n));
                }
            }
        }
        Ok(None)
    }

    /// Where the file of `e` is, if anywhere (packages dir or store).
    pub fn locate(&self, e: &Entry) -> Option<PathBuf> {
        [self.placed_path(e), self.store_path(&e.sha256)]
            .into_iter()
            .find(|p| p.is_file())
    }

    /// Tidies what an interrupted change left: temporary files go; files in
    /// the packages directories that the current state does not list move
    /// to the store; listed files still in the store move into place.
    pub fn recover(&self) -> Result<Vec<String>> {
        let current = self.current()?;
        let mut notes = Vec::new();
        for name in LAYERS {
            let dir = self.path.join(name).join("packages");
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    fs::remove_file(e.path()).at(e.path())?;
                    notes.push(format!("removed unfinished {}", e.path().display()));
                }
            }
        }
        // Temporary files of interrupted atomic writes (states, the list).
        for dir in [STATES_DIR, "system/state"] {
            let dir = self.path.join(dir);
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    fs::remove_file(e.path()).at(e.path())?;
                    notes.push(format!("removed unfinished {}", e.path().display()));
                }
            }
        }
        // A state written but never made current (a change interrupted
        // between writing it and the commit) must not be listed or rolled
        // back to: states are committed in number order, so every state
        // above the current one's number is such a leftover.
        if let Some(n) = self.current_number()? {
            for later in self.states()?.into_iter().filter(|&m| m > n) {
                let p = self.state_path(later);
                fs::remove_file(&p).at(&p)?;
                notes.push(format!(
                    "removed state {later}, which was never made current"
                ));
            }
        }
        let moved = self.place(&current.entries, &current)?;
        notes.extend(moved);
        let store = self.path.join(STORE_DIR);
        if let Ok(rd) = fs::read_dir(&store) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with('.') {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(notes)
    }

    /// Moves a package file into the store (or drops it if the store has it).
    fn stash(&self, path: &Path, sha: &str) -> Result<()> {
        let to = self.store_path(sha);
        if to.exists() {
            fs::remove_file(path).at(path)
        } else {
            fs::rename(path, &to).at(&to)
        }
    }

    /// Makes `target` the current state: stores `new` package files, writes
    /// state N+1 and commits it, then renames files into place. Returns the
    /// new state's number.
    pub fn switch(&self, target: Vec<Entry>, new: &[NewPackage], change: &str) -> Result<u64> {
        self.recover()?;
        // 1. New files: copy beside their destination, sync, into the store.
        for p in new {
            let stored = self.store_path(&p.sha256);
            if stored.exists() {
                continue;
            }
            let tmp = self
                .path
                .join(LAYERS[p.layer])
                .join("packages")
                .join(format!("{TEMP_PREFIX}{}", p.sha256));
            let copied = fs::copy(&p.source, &tmp).and_then(|_| File::open(&tmp)?.sync_all());
            if let Err(e) = copied {
                // Remove the partial copy now: a full disk stays full otherwise.
                let _ = fs::remove_file(&tmp);
                return Err(Error::Io(
                    format!("{} (copying {})", tmp.display(), p.source.display()),
                    e,
                ));
            }
            crash_point();
            let got = sha256_file(&tmp).at(&tmp)?;
            if got != p.sha256 {
                let _ = fs::remove_file(&tmp);
                return Err(Error::Invalid(format!(
                    "{}: changed while being installed (SHA-256 {got}, expected {})",
                    p.source.display(),
                    p.sha256
                )));
            }
            fs::rename(&tmp, &stored).at(&stored)?;
            crash_point();
        }
        fsync_dir(&self.path.join(STORE_DIR))?;
        // Every target file must now be findable: in the store, or placed
        // under its name by the current state.
        let current = self.current()?;
        for e in &target {
            let placed_ok = current.entries.contains(e) && self.placed_path(e).is_file();
            if !placed_ok && !self.store_path(&e.sha256).is_file() {
                return Err(Error::Invalid(format!(
                    "{}/{} ({}) is neither installed nor in the store",
                    LAYERS[e.layer], e.file, e.sha256
                )));
            }
        }
        // 2. The new numbered state, then the commit.
        let previous = self.current()?;
        let n = self.states()?.last().map_or(0, |n| n + 1);
        let st = State {
            entries: target.clone(),
            change: change.to_string(),
            created: now(),
        };
        let text = st.render();
        write_atomically(&self.state_path(n), text.as_bytes())?;
        crash_point();
        write_atomically(&self.path.join(ACTIVE_LIST), text.as_bytes())?;
        crash_point();
        // 3. Placement: renames only.
        self.place(&target, &previous)?;
        Ok(n)
    }

    /// Moves files between the packages directories and the store so that
    /// exactly `target` is in place. A placed file is taken to be what
    /// `known` (the state it was placed for) says, without hashing it —
    /// except where the store holds the target's version of that name, which
    /// only happens mid-change: then the placed file is hashed to tell.
    fn place(&self, target: &[Entry], known: &State) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let store_has = |sha: &str| self.store_path(sha).is_file();
        for (layer, name) in LAYERS.iter().enumerate() {
            let dir = self.path.join(name).join("packages");
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.filter_map(|e| e.ok()) {
                let fname = e.file_name().to_string_lossy().into_owned();
                if !fname.ends_with(".hpkg") || fname.starts_with('.') {
                    continue;
                }
                let path = e.path();
                if !path.is_file() {
                    continue;
                }
                let want = target.iter().find(|t| t.layer == layer && t.file == fname);
                let was = known
                    .entries
                    .iter()
                    .find(|t| t.layer == layer && t.file == fname);
                let sha = match (want, was) {
                    (Some(w), Some(k)) if w.sha256 == k.sha256 && !store_has(&w.sha256) => continue,
                    (Some(w), _) => {
                        let sha = sha256_file(&path).at(&path)?;
                        if sha == w.sha256 {
                            // In place already; a store copy is a duplicate.
                            if store_has(&sha) {
                                fs::remove_file(self.store_path(&sha)).at(self.store_path(&sha))?;
                            }
                            continue;
                        }
                        sha
                    }
                    (None, Some(k)) if !store_has(&k.sha256) => k.sha256.clone(),
                    (None, _) => sha256_file(&path).at(&path)?,
                };
                self.stash(&path, &sha)?;
                notes.push(format!("moved {} to the store", path.display()));
                crash_point();
            }
        }
        for e in target {
            let placed = self.placed_path(e);
            if placed.exists() {
                continue;
            }
            let stored = self.store_path(&e.sha256);
            if !stored.exists() {
                notes.push(format!("{}/{} is missing", LAYERS[e.layer], e.file));
                continue;
            }
            // Another entry may want the same file under another name.
            if target.iter().filter(|t| t.sha256 == e.sha256).count() > 1 {
                fs::hard_link(&stored, &placed).at(&placed)?;
            } else {
                fs::rename(&stored, &placed).at(&placed)?;
            }
            notes.push(format!("moved {} into place", e.file));
            crash_point();
        }
        for l in LAYERS {
            fsync_dir(&self.path.join(l).join("packages"))?;
        }
        fsync_dir(&self.path.join(STORE_DIR))?;
        Ok(notes)
    }

    /// Checks that the current state and every kept state are consistent;
    /// returns the problems found (empty when all is well).
    pub fn check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let current = match self.current() {
            Ok(c) => c,
            Err(e) => return Ok(vec![format!("current state: {e}")]),
        };
        for e in &current.entries {
            match self.locate(e) {
                None => problems.push(format!("{}/{}: missing", LAYERS[e.layer], e.file)),
                Some(p) => {
                    let sha = sha256_file(&p).at(&p)?;
                    if sha != e.sha256 {
                        problems.push(format!(
                            "{}: SHA-256 {sha}, state says {}",
                            p.display(),
                            e.sha256
                        ));
                    }
                }
            }
        }
        for n in self.states()? {
            match self.state(n) {
                Err(e) => problems.push(format!("state {n}: {e}")),
                Ok(s) => {
                    for e in &s.entries {
                        if self.locate(e).is_none() {
                            problems
                                .push(format!("state {n}: {}/{} missing", LAYERS[e.layer], e.file));
                        }
                    }
                }
            }
        }
        Ok(problems)
    }

    /// Keeps the newest `keep` states (and the current one); deletes older
    /// state files, then store files no remaining state references.
    /// Returns (states removed, package files removed, bytes freed).
    pub fn gc(&self, keep: usize) -> Result<(usize, usize, u64)> {
        self.recover()?;
        let states = self.states()?;
        let current = self.current_number()?;
        let cut = states.len().saturating_sub(keep.max(1));
        let mut removed_states = 0;
        for &n in &states[..cut] {
            if Some(n) == current {
                continue;
            }
            let p = self.state_path(n);
            fs::remove_file(&p).at(&p)?;
            removed_states += 1;
        }
        let mut referenced: HashSet<String> = self
            .current()?
            .entries
            .into_iter()
            .map(|e| e.sha256)
            .collect();
        for n in self.states()? {
            referenced.extend(self.state(n)?.entries.into_iter().map(|e| e.sha256));
        }
        let (mut files, mut bytes) = (0, 0);
        let store = self.path.join(STORE_DIR);
        for e in fs::read_dir(&store).at(&store)?.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(sha) = name.strip_suffix(".hpkg") else {
                continue;
            };
            if !referenced.contains(sha) {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).at(e.path())?;
                files += 1;
            }
        }
        fsync_dir(&store)?;
        fsync_dir(&self.path.join(STATES_DIR))?;
        Ok((removed_states, files, bytes))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Differences between two states, by layer and package file.
pub fn diff(a: &State, b: &State) -> Vec<(char, Entry)> {
    let key = |e: &Entry| (e.layer, e.file.clone(), e.sha256.clone());
    let sa: BTreeMap<_, &Entry> = a.entries.iter().map(|e| (key(e), e)).collect();
    let sb: BTreeMap<_, &Entry> = b.entries.iter().map(|e| (key(e), e)).collect();
    let mut out = Vec::new();
    for (k, e) in &sa {
        if !sb.contains_key(k) {
            out.push(('-', (*e).clone()));
        }
    }
    for (k, e) in &sb {
        if !sa.contains_key(k) {
            out.push(('+', (*e).clone()));
        }
    }
    out.sort_by(|x, y| (x.1.layer, &x.1.file, x.0).cmp(&(y.1.layer, &y.1.file, y.0)));
    out
}

pub fn entry_for(layer: usize, file: &str, sha256: &str) -> StateEntry {
    StateEntry {
        layer,
        file: file.to_string(),
        sha256: sha256.to_string(),
    }
}
