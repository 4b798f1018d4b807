//! The mechanics of changing a root: the writer lock, numbered states, the
//! store, the atomic switch, recovery, gc and check.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use exos_hpkg::Package;

use exos_root::{
    crash_point, state_number, write_atomically, Layer, Layout, PackageFile, Sha256, StateEntry,
    StateList, TEMP_PREFIX,
};

use crate::holdings::Holdings;
use crate::index::{Indexed, InstalledIndex};
use crate::{Ctx, Error, Result};

/// A new package file to install: where it is now, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewPackage {
    /// Where the file is now.
    pub source: PathBuf,
    /// The layer it goes to.
    pub layer: Layer,
    /// Its file name there.
    pub file: PackageFile,
    /// Its SHA-256, checked again when copied.
    pub sha256: Sha256,
    /// Its size.
    pub size: u64,
    /// A signature checked against the root's trust store when the package
    /// was offered (`SOURCE.minisig`), kept with the package.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<AcceptedSignature>,
    /// Its manifest (set for the packages a plan chose), remembered at the
    /// commit when the file is encrypted ([`Layout::remembered_manifest`]).
    #[serde(skip)]
    pub manifest: Option<exos_manifest::Manifest>,
}

/// A signature accepted at install: its text, and the trusted key that made it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AcceptedSignature {
    /// The id of the trusted key that made it.
    pub key: String,
    /// The signature file's text.
    #[serde(skip)]
    pub text: String,
}

impl NewPackage {
    /// The state entry it becomes.
    pub fn entry(&self) -> StateEntry {
        StateEntry {
            layer: self.layer,
            file: self.file.clone(),
            sha256: self.sha256,
        }
    }
}

/// One file-level difference between two states.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileChange {
    /// Added or removed.
    pub action: FileAction,
    /// The package file.
    #[serde(flatten)]
    pub entry: StateEntry,
}

/// Whether a file comes or goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileAction {
    /// The file is in the first state, not the second.
    Remove,
    /// The file is in the second state, not the first.
    Add,
}

impl FileAction {
    /// `-` or `+`, as a diff shows it.
    pub fn sign(self) -> char {
        match self {
            FileAction::Add => '+',
            FileAction::Remove => '-',
        }
    }
}

/// What `gc` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Numbered states deleted.
    pub states_removed: usize,
    /// Package files deleted from the store.
    pub files_removed: usize,
    /// Bytes freed (store files and cached downloads).
    pub bytes_freed: u64,
}

/// An EXOS root, locked for writing while this value lives (unless opened
/// read-only).
pub struct Root {
    /// Where everything is.
    pub layout: Layout,
    _lock: Option<File>,
    /// The installed-package index, once read ([`Root::index`]).
    index: Mutex<Option<Arc<InstalledIndex>>>,
    /// Whether [`Root::recover`] found the root tidy, or made it so, since
    /// this (locked) root last changed: a switch then need not recover
    /// again.
    tidy: AtomicBool,
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// States and the current state list are readable by all (0644 under the
/// usual umask): they name only package files anyone can list, and users
/// resolve their own installs against the root's current state.
fn write_state(path: &Path, bytes: &[u8]) -> Result<()> {
    exos_root::write_public(path, bytes).at(path)
}

impl Root {
    /// Creates the layout (idempotent) and an empty state 0 when there is
    /// no state yet.
    pub fn init(path: &Path) -> Result<Root> {
        let layout = Layout::new(path);
        for layer in Layer::ALL {
            let d = layout.packages_dir(layer);
            fs::create_dir_all(&d).at(&d)?;
        }
        for d in [
            layout.states_dir(),
            layout.store_dir(),
            layout.data_dir(),
            layout.users_dir(),
        ] {
            fs::create_dir_all(&d).at(&d)?;
        }
        Root::lock(path)?.with_first_state()
    }

    /// Makes `user`'s own states in the root at `path` (idempotent): their
    /// layer `users/NAME/packages` must exist (root makes it and gives it
    /// to them: `exos user add`); `users/NAME/state` is made with an empty
    /// state 0 when missing. Run by the user (or root for them).
    pub fn init_user(path: &Path, user: &exos_root::UserName) -> Result<Root> {
        let layout = Layout::for_user(path, user.clone());
        if !layout.shared().exists() {
            return Err(Error::NotARoot(path.to_path_buf()));
        }
        let packages = layout.packages_dir(Layer::User);
        if !packages.is_dir() {
            return Err(Error::NoUserLayer {
                user: user.to_string(),
                path: packages,
            });
        }
        for d in [layout.states_dir(), layout.store_dir()] {
            fs::create_dir_all(&d).at(&d)?;
        }
        Root::lock_layout(layout)?.with_first_state()
    }

    /// Writes the empty state 0, current, when this (locked) root has no
    /// state yet.
    fn with_first_state(self) -> Result<Root> {
        let layout = &self.layout;
        if !layout.active_list().exists() {
            let st = StateList {
                entries: Vec::new(),
                change: "init".into(),
                created: now(),
            };
            write_state(&layout.state_file(0), st.render().as_bytes())?;
            write_state(&layout.active_list(), st.render().as_bytes())?;
        }
        Ok(self)
    }

    /// Opens an initialised root and takes the writer lock (waits for it).
    pub fn lock(path: &Path) -> Result<Root> {
        Root::lock_layout(Layout::new(path))
    }

    /// [`Root::lock`] for any layout (a user's own states: their lock, not
    /// the root's).
    pub fn lock_layout(layout: Layout) -> Result<Root> {
        let path = &layout.root;
        if !layout.exists() {
            return Err(Error::NotARoot(path.to_path_buf()));
        }
        let lock_path = layout.lock_file();
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            Error::Io {
                path: lock_path.to_path_buf(),
                source: e.into(),
            }
        })?;
        Ok(Root {
            layout,
            _lock: Some(f),
            index: Mutex::default(),
            tidy: AtomicBool::new(false),
        })
    }

    /// Opens a root for reading only (no lock: readers only ever see whole
    /// files, because every file is replaced by rename).
    pub fn read_only(path: &Path) -> Result<Root> {
        Root::read_only_layout(Layout::new(path))
    }

    /// [`Root::read_only`] for any layout.
    pub fn read_only_layout(layout: Layout) -> Result<Root> {
        let path = &layout.root;
        if !layout.exists() {
            return Err(Error::NotARoot(path.to_path_buf()));
        }
        Ok(Root {
            layout,
            _lock: None,
            index: Mutex::default(),
            tidy: AtomicBool::new(false),
        })
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.layout.root
    }

    /// The current state (`active.list`).
    pub fn current(&self) -> Result<StateList> {
        Ok(StateList::read(&self.layout.active_list())?)
    }

    /// For a user's own states: the shared layers' packages of the root's
    /// current state (system and common), which the user's packages are
    /// resolved against and which a user's change never alters. Empty for
    /// the root's own layout.
    pub fn shared_base(&self) -> Result<Vec<StateEntry>> {
        if self.layout.user.is_none() {
            return Ok(Vec::new());
        }
        let shared = StateList::read(&self.layout.shared().active_list())?;
        Ok(shared
            .entries
            .into_iter()
            .filter(|e| e.layer != Layer::User)
            .collect())
    }

    /// Numbers of all kept states, ascending.
    pub fn states(&self) -> Result<Vec<u64>> {
        let dir = self.layout.states_dir();
        let mut out: Vec<u64> = fs::read_dir(&dir)
            .at(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| state_number(&e.file_name().to_string_lossy()))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Numbered state `n`.
    pub fn state(&self, n: u64) -> Result<StateList> {
        Ok(StateList::read(&self.layout.state_file(n))?)
    }

    /// Which numbered state equals the current one (the newest such).
    pub fn current_number(&self) -> Result<Option<u64>> {
        let (cur, text) = StateList::read_with_text(&self.layout.active_list())?;
        for n in self.states()?.into_iter().rev() {
            // A switch writes the state and the list from the same text:
            // equal bytes need no parse (10,000 lines) and no comparison.
            let file = self.layout.state_file(n);
            if fs::read(&file).is_ok_and(|bytes| bytes == text.as_bytes()) {
                return Ok(Some(n));
            }
            if let Ok(s) = self.state(n) {
                if s.same_packages(&cur) && s.created == cur.created {
                    return Ok(Some(n));
                }
            }
        }
        Ok(None)
    }

    /// The installed-package index ([`crate::index`]), read once: what a
    /// change knows of the installed packages without opening them.
    pub fn index(&self) -> Arc<InstalledIndex> {
        let mut cached = self.index.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .get_or_insert_with(|| InstalledIndex::read_shared(&self.layout))
            .clone()
    }

    /// Rewrites the installed-package index for `target`, the state just
    /// made current: what the old index knew is kept, packages it did not
    /// know are read from their files. The state is committed already, so
    /// a failure is only a warning (the next reader reads those packages
    /// from their files).
    fn write_index(&self, target: &[StateEntry], holdings: &Holdings) {
        // Taken out of the cache: nothing else holds it by now, so its
        // entries move to the new index instead of being copied.
        let cached = self.index.lock().unwrap_or_else(|e| e.into_inner()).take();
        InstalledIndex::forget_shared();
        let mut old = match cached {
            Some(index) => Arc::try_unwrap(index).unwrap_or_else(|shared| (*shared).clone()),
            None => InstalledIndex::read(&self.layout),
        };
        let mut index = InstalledIndex::with_capacity(target.len());
        for e in target {
            // Sealed packages' manifests are remembered apart; lazy ones'
            // are in their records.
            let Some(path) = holdings.locate(e) else {
                continue;
            };
            if holdings.remembers_manifest(&e.sha256) || index.get(&e.sha256).is_some() {
                continue;
            }
            if let Some(known) = old.remove(&e.sha256) {
                index.insert(e.sha256, known);
                continue;
            }
            let read = Package::open(&path).map_err(Error::from).and_then(|pkg| {
                let size = fs::metadata(&path).at(&path)?.len();
                Indexed::of_package(&pkg, size)
            });
            match read {
                Ok(Some(indexed)) => index.insert(e.sha256, indexed),
                Ok(None) => {}
                Err(err) => tracing::warn!("not in the installed-package index: {err}"),
            }
        }
        match index.write(&self.layout) {
            Ok(()) => {
                crash_point();
                *self.index.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(index));
            }
            Err(err) => tracing::warn!("the installed-package index was not written: {err}"),
        }
    }

    /// Where the root's package files are: one listing of each directory
    /// that holds them, for questions about many packages (one `stat` per
    /// package each was most of a change's time in a large root).
    pub fn holdings(&self) -> Holdings {
        Holdings::read(&self.layout)
    }

    /// Where the file of `e` is, if anywhere (packages dir or store).
    pub fn locate(&self, e: &StateEntry) -> Option<PathBuf> {
        [self.layout.placed(e), self.layout.stored(&e.sha256)]
            .into_iter()
            .find(|p| p.is_file())
    }

    /// Whether `e` is installed lazily (its record and block map kept in
    /// `system/state/lazy/`, its bytes fetched when read).
    pub fn is_lazy(&self, e: &StateEntry) -> bool {
        self.layout.lazy_record(&e.sha256).is_file()
    }

    /// Tidies what an interrupted change left: temporary files go; states
    /// that were written but never made current go; files in the packages
    /// directories that the current state does not list move to the store;
    /// listed files still in the store move into place.
    pub fn recover(&self) -> Result<Vec<String>> {
        let current = self.current()?;
        let mut notes = Vec::new();
        for &layer in self.layout.layers() {
            let dir = self.layout.packages_dir(layer);
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    fs::remove_file(e.path()).at(e.path())?;
                    notes.push(format!("removed unfinished {}", e.path().display()));
                }
            }
        }
        // Temporary files of interrupted atomic writes (states, the list).
        for dir in [
            self.layout.states_dir(),
            self.layout.state_dir(),
            self.layout.lazy_dir(),
        ] {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with(".exos-tmp-") {
                    fs::remove_file(e.path()).at(e.path())?;
                    notes.push(format!("removed unfinished {}", e.path().display()));
                }
            }
        }
        // States are committed in number order, so every state above the
        // current one's number was written but never made current: it must
        // not be listed or rolled back to.
        if let Some(n) = self.current_number()? {
            for later in self.states()?.into_iter().filter(|&m| m > n) {
                let p = self.layout.state_file(later);
                fs::remove_file(&p).at(&p)?;
                notes.push(format!(
                    "removed state {later}, which was never made current"
                ));
            }
        }
        let moved = self.place(&current.entries, &current, &mut self.holdings())?;
        notes.extend(moved);
        // Only a locked root stays as it was found: another writer may
        // change an unlocked one at any time.
        self.tidy.store(self._lock.is_some(), Ordering::SeqCst);
        Ok(notes)
    }

    /// Moves a package file into the store (or drops it if the store has
    /// it: `in_store`).
    fn stash(&self, path: &Path, sha: &Sha256, in_store: bool) -> Result<()> {
        if in_store {
            fs::remove_file(path).at(path)
        } else {
            let to = self.layout.stored(sha);
            fs::rename(path, &to).at(&to)
        }
    }

    /// Carries out an admitted plan (consent checked, downloads admitted):
    /// writes its lazy records and the origins of what it takes from
    /// repositories, then [`Root::switch`]es to its target. Returns the new
    /// state's number.
    pub fn commit(&self, plan: &crate::AdmittedPlan) -> Result<u64> {
        // Lazy records first: a state may name them only once they exist
        // (an interrupted install leaves records no state names; gc
        // removes them).
        for lazy in &plan.lazy {
            lazy.write(&self.layout)?;
            crash_point();
        }
        let origins: Vec<_> = plan
            .origins
            .iter()
            .map(|f| (f.sha256, f.origin.clone()))
            .collect();
        self.record(&origins, &plan.automatic, &plan.manual)?;
        self.switch(plan.target.clone(), &plan.new, &plan.change)
    }

    /// Makes `target` the current state: stores `new` package files, writes
    /// state N+1 and commits it, then renames files into place. Returns the
    /// new state's number.
    pub fn switch(&self, target: Vec<StateEntry>, new: &[NewPackage], change: &str) -> Result<u64> {
        // Tidied under this lock already (as a change's workflow does
        // first) and not changed since: nothing to recover from. A switch
        // that fails part way leaves the flag down.
        if !self.tidy.swap(false, Ordering::SeqCst) {
            self.recover()?;
            self.tidy.store(false, Ordering::SeqCst);
        }
        // 1. New files: copy beside their destination, sync, into the store.
        // Downloads (already in the root's cache, on the same file system,
        // checked by hash) are renamed instead, and synced together.
        let cache = self.layout.cache_dir();
        let from_cache = |p: &NewPackage| {
            p.source.parent() == Some(cache.as_path())
                && p.source.is_file()
                && !self.layout.stored(&p.sha256).exists()
        };
        if new.iter().any(from_cache) {
            // One flush for every download's data (written without a sync
            // each), before any of them enters the store: a file in the
            // store is always durable.
            let d = File::open(&cache).at(&cache)?;
            rustix::fs::syncfs(&d).map_err(|e| Error::Io {
                path: cache.to_path_buf(),
                source: e.into(),
            })?;
        }
        for p in new {
            let stored = self.layout.stored(&p.sha256);
            if stored.exists() {
                continue;
            }
            if from_cache(p) {
                fs::rename(&p.source, &stored).at(&stored)?;
                crash_point();
                continue;
            }
            let tmp = self
                .layout
                .packages_dir(p.layer)
                .join(format!("{TEMP_PREFIX}{}", p.sha256));
            // fs::copy copies the source's mode: an installed package is
            // 0644 whatever the file it came from allowed (a world-writable
            // source would let anyone rewrite what every mount serves).
            let copied = fs::copy(&p.source, &tmp)
                .and_then(|_| {
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
                })
                .and_then(|_| File::open(&tmp)?.sync_all());
            if let Err(e) = copied {
                // Remove the partial copy now: a full disk stays full otherwise.
                let _ = fs::remove_file(&tmp);
                return Err(Error::invalid(
                    tmp.display(),
                    format!("copying {}: {e}", p.source.display()),
                ));
            }
            crash_point();
            let got = Sha256::of_file(&tmp).at(&tmp)?;
            if got != p.sha256 {
                let _ = fs::remove_file(&tmp);
                return Err(Error::invalid(
                    p.source.display(),
                    format!(
                        "changed while being installed (SHA-256 {got}, expected {})",
                        p.sha256
                    ),
                ));
            }
            fs::rename(&tmp, &stored).at(&stored)?;
            crash_point();
        }
        fsync_dir(&self.layout.store_dir())?;
        // Their signatures, under their SHA-256 (before the commit, so a
        // committed package always finds its signature).
        for p in new {
            if let Some(sig) = &p.signature {
                let dir = self.layout.signatures_dir();
                fs::create_dir_all(&dir).at(&dir)?;
                let path = self.layout.signature(&p.sha256);
                write_atomically(&path, sig.text.as_bytes()).at(&path)?;
                crash_point();
            }
        }
        // The manifests of encrypted ones (before the commit too): later
        // transactions read every installed manifest, and should not need
        // the package's key for that.
        for p in new {
            let stored = self.layout.stored(&p.sha256);
            let (Some(manifest), true) = (&p.manifest, is_sealed(&stored)) else {
                continue;
            };
            let path = self.layout.remembered_manifest(&p.sha256);
            if path.exists() {
                continue;
            }
            // Readable by the root's owner only: the package's name and
            // dependencies are not shown to those without its key.
            let dir = self.layout.manifests_dir();
            exos_root::private_dir(&dir).at(&dir)?;
            write_atomically(&path, manifest.to_json().to_string().as_bytes()).at(&path)?;
            crash_point();
        }
        // Every target file must now be findable: in the store, or placed
        // under its name by the current state.
        let current = self.current()?;
        let in_current: HashSet<&StateEntry> = current.entries.iter().collect();
        // Listed once for the check, the placement and the index: nothing
        // but state files is written between them, and the placement
        // tells the holdings what it moves.
        let mut holdings = self.holdings();
        for e in &target {
            let placed_ok = in_current.contains(e) && holdings.is_placed(e);
            if !placed_ok && !holdings.is_stored(&e.sha256) && !holdings.is_lazy(e) {
                return Err(Error::invalid(
                    format!("{}/{} ({})", e.layer, e.file, e.sha256),
                    "neither installed nor in the store",
                ));
            }
        }
        // 2. The new numbered state, then the commit.
        let n = self.states()?.last().map_or(0, |n| n + 1);
        let st = StateList {
            entries: target.clone(),
            change: change.to_string(),
            created: now(),
        };
        let text = st.render();
        write_state(&self.layout.state_file(n), text.as_bytes())?;
        crash_point();
        write_state(&self.layout.active_list(), text.as_bytes())?;
        crash_point();
        // 3. Placement: renames only.
        self.place(&target, &current, &mut holdings)?;
        // 4. What the next change reads instead of every package.
        self.write_index(&target, &holdings);
        self.tidy.store(self._lock.is_some(), Ordering::SeqCst);
        Ok(n)
    }

    /// Moves files between the packages directories and the store so that
    /// exactly `target` is in place. A placed file is taken to be what
    /// `known` (the state it was placed for) says, without hashing it —
    /// except where the store holds the target's version of that name, which
    /// only happens mid-change: then the placed file is hashed to tell.
    /// `holdings`: where the files are now, kept up to date as they move
    /// (looked up once per file: a root holds thousands of packages).
    fn place(
        &self,
        target: &[StateEntry],
        known: &StateList,
        holdings: &mut Holdings,
    ) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        fn by_place(list: &[StateEntry]) -> HashMap<(Layer, &str), &StateEntry> {
            list.iter()
                .map(|e| ((e.layer, e.file.as_str()), e))
                .collect()
        }
        let (wanted, known_here) = (by_place(target), by_place(&known.entries));
        let mut wanted_times: HashMap<Sha256, usize> = HashMap::new();
        for e in target {
            *wanted_times.entry(e.sha256).or_default() += 1;
        }
        for &layer in self.layout.layers() {
            let dir = self.layout.packages_dir(layer);
            let mut names: Vec<String> = holdings.placed_in(layer).cloned().collect();
            names.sort_unstable();
            for fname in names {
                if !fname.ends_with(".hpkg") || fname.starts_with('.') {
                    continue;
                }
                let path = dir.join(&fname);
                let key = (layer, fname.as_str());
                let (want, was) = (wanted.get(&key).copied(), known_here.get(&key).copied());
                let sha = match (want, was) {
                    (Some(w), Some(k))
                        if w.sha256 == k.sha256 && !holdings.is_stored(&w.sha256) =>
                    {
                        continue
                    }
                    (Some(w), _) => {
                        let sha = Sha256::of_file(&path).at(&path)?;
                        if sha == w.sha256 {
                            // In place already; a store copy is a duplicate.
                            if holdings.is_stored(&sha) {
                                let s = self.layout.stored(&sha);
                                fs::remove_file(&s).at(&s)?;
                                holdings.unstored(&sha);
                            }
                            continue;
                        }
                        sha
                    }
                    (None, Some(k)) if !holdings.is_stored(&k.sha256) => k.sha256,
                    (None, _) => Sha256::of_file(&path).at(&path)?,
                };
                self.stash(&path, &sha, holdings.is_stored(&sha))?;
                holdings.stashed(layer, &fname, &sha);
                notes.push(format!("moved {} to the store", path.display()));
                crash_point();
            }
        }
        for e in target {
            if holdings.is_placed(e) {
                continue;
            }
            if !holdings.is_stored(&e.sha256) {
                // A lazy package has no file to place: packagefs fetches it.
                if !holdings.is_lazy(e) {
                    notes.push(format!("{}/{} is missing", e.layer, e.file));
                }
                continue;
            }
            let (stored, placed) = (self.layout.stored(&e.sha256), self.layout.placed(e));
            // Another entry may want the same file under another name.
            let shared = wanted_times.get(&e.sha256).copied().unwrap_or(0) > 1;
            if shared {
                fs::hard_link(&stored, &placed).at(&placed)?;
            } else {
                fs::rename(&stored, &placed).at(&placed)?;
            }
            holdings.placed_from_store(e, !shared);
            notes.push(format!("moved {} into place", e.file));
            crash_point();
        }
        for &layer in self.layout.layers() {
            fsync_dir(&self.layout.packages_dir(layer))?;
        }
        fsync_dir(&self.layout.store_dir())?;
        Ok(notes)
    }

    /// Checks that the current state and every kept state are consistent:
    /// files present, the current ones with the right SHA-256. Returns the
    /// problems found (empty when all is well).
    pub fn check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let current = match self.current() {
            Ok(c) => c,
            Err(e) => return Ok(vec![format!("current state: {e}")]),
        };
        for e in &current.entries {
            match self.locate(e) {
                None if self.is_lazy(e) => {
                    if let Err(err) = exos_lazy::LazyPackage::read(&self.layout, &e.sha256) {
                        problems.push(format!("{}/{} (lazy): {err}", e.layer, e.file));
                    }
                }
                None => problems.push(format!("{}/{}: missing", e.layer, e.file)),
                Some(p) => {
                    if let Err(err) = remembered_manifest(&self.layout, &e.sha256) {
                        problems.push(err.to_string());
                    }
                    let sha = Sha256::of_file(&p).at(&p)?;
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
        let holdings = self.holdings();
        for n in self.states()? {
            match self.state(n) {
                Err(e) => problems.push(format!("state {n}: {e}")),
                Ok(s) => {
                    for e in &s.entries {
                        if !holdings.findable(e) {
                            problems.push(format!("state {n}: {}/{} missing", e.layer, e.file));
                        }
                    }
                }
            }
        }
        Ok(problems)
    }

    /// Keeps the newest `keep` states (and the current one); deletes older
    /// state files, then store files no remaining state references.
    pub fn gc(&self, keep: usize) -> Result<GcReport> {
        self.recover()?;
        let states = self.states()?;
        let current = self.current_number()?;
        let cut = states.len().saturating_sub(keep.max(1));
        let mut report = GcReport::default();
        for &n in &states[..cut] {
            if Some(n) == current {
                continue;
            }
            let p = self.layout.state_file(n);
            fs::remove_file(&p).at(&p)?;
            report.states_removed += 1;
        }
        let mut referenced: HashSet<Sha256> = self
            .current()?
            .entries
            .into_iter()
            .map(|e| e.sha256)
            .collect();
        for n in self.states()? {
            referenced.extend(self.state(n)?.entries.into_iter().map(|e| e.sha256));
        }
        let store = self.layout.store_dir();
        for e in fs::read_dir(&store).at(&store)?.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(sha) = name.strip_suffix(".hpkg").and_then(|s| s.parse().ok()) else {
                continue;
            };
            if !referenced.contains(&sha) {
                report.bytes_freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).at(e.path())?;
                report.files_removed += 1;
            }
        }
        fsync_dir(&store)?;
        // Downloads: installed ones were copied into the store.
        let cache = self.layout.cache_dir();
        if let Ok(rd) = fs::read_dir(&cache) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.path().is_file() {
                    report.bytes_freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(e.path()).at(e.path())?;
                }
            }
        }
        // Signatures and content digests of packages no state references
        // any more.
        for (dir, suffix) in [
            (self.layout.signatures_dir(), ".minisig"),
            (self.layout.digests_dir(), ".digests"),
            (self.layout.manifests_dir(), ".json"),
            (self.layout.lazy_dir(), ".blocks"),
            (self.layout.lazy_dir(), ".lazy"),
        ] {
            let Ok(rd) = fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(sha) = name.strip_suffix(suffix).and_then(|s| s.parse().ok()) else {
                    continue;
                };
                if !referenced.contains(&sha) {
                    fs::remove_file(e.path()).at(e.path())?;
                }
            }
            fsync_dir(&dir)?;
        }
        // Origins of files no state references any more.
        let db_path = self.layout.package_db();
        let mut db = exos_root::pkgdb::PackageDb::read(&db_path)?;
        let before = db.origins.len();
        db.origins.retain(|sha, _| referenced.contains(sha));
        if db.origins.len() != before {
            write_atomically(&db_path, &db.render()).at(&db_path)?;
        }
        fsync_dir(&self.layout.states_dir())?;
        Ok(report)
    }

    /// Records where package files came from and which packages were
    /// installed automatically or by name (in `packages.json`, before any
    /// state names them: a crash may leave an origin no state uses, which
    /// gc removes, or a mark of a package not installed, which nothing
    /// reads — never a state whose origins are unknown).
    pub fn record(
        &self,
        origins: &[(Sha256, exos_root::pkgdb::RepoOrigin)],
        automatic: &[String],
        manual: &[String],
    ) -> Result<()> {
        if origins.is_empty() && automatic.is_empty() && manual.is_empty() {
            return Ok(());
        }
        self.change_db(|db| {
            for (sha, origin) in origins {
                db.origins.insert(*sha, origin.clone());
            }
            db.automatic.extend(automatic.iter().cloned());
            for name in manual {
                db.automatic.remove(name);
            }
        })
    }

    /// Reads `packages.json`, changes it with `f` and writes it back
    /// atomically (the root must be locked).
    pub fn change_db(&self, f: impl FnOnce(&mut exos_root::pkgdb::PackageDb)) -> Result<()> {
        let path = self.layout.package_db();
        let mut db = exos_root::pkgdb::PackageDb::read(&path)?;
        f(&mut db);
        exos_root::write_public(&path, &db.render()).at(&path)?;
        crash_point();
        Ok(())
    }

    /// `packages.json`: origins, automatic marks, holds.
    pub fn package_db(&self) -> Result<exos_root::pkgdb::PackageDb> {
        Ok(exos_root::pkgdb::PackageDb::read(
            &self.layout.package_db(),
        )?)
    }
}

/// Whether the file at `path` is an encrypted package.
fn is_sealed(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| exos_hpkg::crypt::is_encrypted(&head))
}

/// The manifest remembered for the package `sha`, if one was (see
/// [`Layout::remembered_manifest`]); an error names the file and the rule.
pub(crate) fn remembered_manifest(
    layout: &Layout,
    sha: &Sha256,
) -> Result<Option<exos_manifest::Manifest>> {
    use std::io::Read;
    let path = layout.remembered_manifest(sha);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    let mut bytes = Vec::new();
    let limit = exos_manifest::MAX_MANIFEST_SIZE;
    file.take(limit + 1).read_to_end(&mut bytes).at(&path)?;
    if bytes.len() as u64 > limit {
        return Err(Error::invalid(
            path.display(),
            format!("larger than a manifest may be ({limit} bytes)"),
        ));
    }
    Ok(Some(exos_manifest::Manifest::parse(
        &bytes,
        &path.display().to_string(),
    )?))
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// File-level differences from state `a` to state `b`, by layer and file.
pub fn diff(a: &StateList, b: &StateList) -> Vec<FileChange> {
    let mut out = Vec::new();
    let (in_a, in_b): (HashSet<&StateEntry>, HashSet<&StateEntry>) =
        (a.entries.iter().collect(), b.entries.iter().collect());
    for e in &a.entries {
        if !in_b.contains(e) {
            out.push(FileChange {
                action: FileAction::Remove,
                entry: e.clone(),
            });
        }
    }
    for e in &b.entries {
        if !in_a.contains(e) {
            out.push(FileChange {
                action: FileAction::Add,
                entry: e.clone(),
            });
        }
    }
    out.sort_by(|x, y| {
        (x.entry.layer, &x.entry.file, x.action).cmp(&(y.entry.layer, &y.entry.file, y.action))
    });
    out
}
