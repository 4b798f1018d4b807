//! Which package files a root holds, from one listing each of its packages
//! directories, its store, its lazy records and its remembered manifests.
//!
//! A root holds thousands of packages, and asking the file system about
//! each one (a `stat` for "is it placed?", another for "is it in the
//! store?", a third for "is it lazy?") was most of the time a change took
//! in a root of 10,000 packages. A listing is a few `getdents` calls.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use exos_root::{Layer, Layout, Sha256, StateEntry};

/// A snapshot of where a root's package files are: what is not in it
/// (changed after it was taken) is answered from the file system only if
/// the holder updates it ([`Holdings::stashed`], [`Holdings::unstored`],
/// [`Holdings::placed_from_store`]).
pub struct Holdings {
    layout: Layout,
    /// Names of the regular files in each packages directory.
    placed: HashMap<Layer, HashSet<String>>,
    /// The SHA-256 of every file in the store (`<sha>.hpkg`).
    stored: HashSet<Sha256>,
    /// The SHA-256 of every lazy record (`<sha>.lazy`).
    lazy: HashSet<Sha256>,
    /// The SHA-256 of every remembered manifest (`<sha>.json`).
    remembered: HashSet<Sha256>,
}

/// The names of the regular files directly in `dir` (a symbolic link
/// counts as what it points to, as `Path::is_file` says); none if `dir`
/// cannot be read, as a missing file is none.
fn regular_files(dir: &Path) -> HashSet<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return HashSet::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| match e.file_type() {
            Ok(t) if t.is_file() => true,
            Ok(t) if t.is_symlink() => e.path().is_file(),
            _ => false,
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// The SHA-256s named by the files `<sha>SUFFIX` among `names`, spelt
/// as [`Layout`] spells them (lower-case hex): another spelling is another
/// file.
fn by_sha(names: HashSet<String>, suffix: &str) -> HashSet<Sha256> {
    names
        .iter()
        .filter_map(|n| {
            let hex = n.strip_suffix(suffix)?;
            let sha: Sha256 = hex.parse().ok()?;
            (sha.to_string() == hex).then_some(sha)
        })
        .collect()
}

impl Holdings {
    /// Lists `layout`'s packages directories, store, lazy records and
    /// remembered manifests.
    pub fn read(layout: &Layout) -> Holdings {
        let placed = layout
            .layers()
            .iter()
            .map(|&layer| (layer, regular_files(&layout.packages_dir(layer))))
            .collect();
        Holdings {
            layout: layout.clone(),
            placed,
            stored: by_sha(regular_files(&layout.store_dir()), ".hpkg"),
            lazy: by_sha(regular_files(&layout.lazy_dir()), ".lazy"),
            remembered: by_sha(regular_files(&layout.manifests_dir()), ".json"),
        }
    }

    /// Whether `e`'s file is in its packages directory under its name.
    pub fn is_placed(&self, e: &StateEntry) -> bool {
        self.placed
            .get(&e.layer)
            .is_some_and(|names| names.contains(e.file.as_str()))
    }

    /// The names of the regular files in `layer`'s packages directory.
    pub fn placed_in(&self, layer: Layer) -> impl Iterator<Item = &String> {
        self.placed.get(&layer).into_iter().flatten()
    }

    /// Whether the store holds the file whose SHA-256 is `sha`.
    pub fn is_stored(&self, sha: &Sha256) -> bool {
        self.stored.contains(sha)
    }

    /// Whether `e` is installed lazily (its record kept in place of a file).
    pub fn is_lazy(&self, e: &StateEntry) -> bool {
        self.lazy.contains(&e.sha256)
    }

    /// Whether the manifest of the package whose SHA-256 is `sha` is
    /// remembered ([`Layout::remembered_manifest`]; not listed when the
    /// directory cannot be read, as by a user in the root's shared layers).
    pub fn remembers_manifest(&self, sha: &Sha256) -> bool {
        self.remembered.contains(sha)
    }

    /// Where the file of `e` is, if anywhere: placed, else in the store
    /// (as [`crate::Root::locate`] finds it).
    pub fn locate(&self, e: &StateEntry) -> Option<PathBuf> {
        if self.is_placed(e) {
            Some(self.layout.placed(e))
        } else if self.is_stored(&e.sha256) {
            Some(self.layout.stored(&e.sha256))
        } else {
            // In neither listing: a writer's change may have moved the file
            // between them (a reader's listings are taken one after the
            // other, without the lock), so the file system answers.
            [self.layout.placed(e), self.layout.stored(&e.sha256)]
                .into_iter()
                .find(|p| p.is_file())
        }
    }

    /// Whether `e` can be served: its file is somewhere, or it is lazy.
    pub fn findable(&self, e: &StateEntry) -> bool {
        self.locate(e).is_some() || self.is_lazy(e)
    }

    /// The file `name` of `layer` moved to the store as `sha`'s file (or
    /// was dropped, the store having it already).
    pub(crate) fn stashed(&mut self, layer: Layer, name: &str, sha: &Sha256) {
        if let Some(names) = self.placed.get_mut(&layer) {
            names.remove(name);
        }
        self.stored.insert(*sha);
    }

    /// The store's file of `sha` was removed.
    pub(crate) fn unstored(&mut self, sha: &Sha256) {
        self.stored.remove(sha);
    }

    /// `e`'s file was placed from the store: renamed (`moved`) or linked.
    pub(crate) fn placed_from_store(&mut self, e: &StateEntry, moved: bool) {
        self.placed
            .entry(e.layer)
            .or_default()
            .insert(e.file.as_str().to_string());
        if moved {
            self.unstored(&e.sha256);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exos_root::PackageFile;

    fn entry(layer: Layer, file: &str, sha: Sha256) -> StateEntry {
        StateEntry {
            layer,
            file: PackageFile::new(file).unwrap(),
            sha256: sha,
        }
    }

    #[test]
    fn answers_as_the_file_system_does() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        for d in [
            layout.packages_dir(Layer::System),
            layout.store_dir(),
            layout.lazy_dir(),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        let (a, b, c) = (Sha256([1; 32]), Sha256([2; 32]), Sha256([0xab; 32]));
        let placed = entry(Layer::System, "a.hpkg", a);
        fs::write(layout.placed(&placed), b"a").unwrap();
        // A link to a file counts as the file, a dangling one as nothing,
        // a directory is no package file.
        let linked = entry(Layer::System, "linked.hpkg", c);
        std::os::unix::fs::symlink(layout.placed(&placed), layout.placed(&linked)).unwrap();
        let dangling = entry(Layer::System, "dangling.hpkg", c);
        std::os::unix::fs::symlink("/nonexistent", layout.placed(&dangling)).unwrap();
        let dir_entry = entry(Layer::System, "dir.hpkg", c);
        fs::create_dir(layout.placed(&dir_entry)).unwrap();
        fs::write(layout.stored(&b), b"b").unwrap();
        // The store's names are lower-case hex: another spelling is
        // another file, which `stored(c)` would not find.
        let upper = c.to_string().to_uppercase();
        fs::write(layout.store_dir().join(format!("{upper}.hpkg")), b"c").unwrap();
        fs::write(layout.lazy_record(&c), b"{}").unwrap();

        let h = Holdings::read(&layout);
        for e in [&placed, &linked, &dangling, &dir_entry] {
            let fs_says = [layout.placed(e), layout.stored(&e.sha256)]
                .into_iter()
                .find(|p| p.is_file());
            assert_eq!(h.locate(e), fs_says, "{}", e.file);
        }
        let in_store = entry(Layer::Common, "b.hpkg", b);
        assert_eq!(h.locate(&in_store), Some(layout.stored(&b)));
        assert!(!h.is_stored(&c));
        let lazy = entry(Layer::User, "lazy.hpkg", c);
        assert!(h.is_lazy(&lazy) && h.findable(&lazy) && h.locate(&lazy).is_none());
        assert!(!h.findable(&entry(Layer::User, "none.hpkg", Sha256([9; 32]))));
        // Placed after the packages directory was listed, gone from the
        // store before it was (as a writer moves files while a reader
        // lists): in neither listing, still found.
        let moved = entry(Layer::System, "moved.hpkg", Sha256([7; 32]));
        fs::write(layout.placed(&moved), b"m").unwrap();
        assert_eq!(h.locate(&moved), Some(layout.placed(&moved)));
    }

    #[test]
    fn follows_the_moves_it_is_told_of() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let mut h = Holdings::read(&layout);
        let e = entry(Layer::System, "a.hpkg", Sha256([1; 32]));
        h.placed_from_store(&e, true);
        assert!(h.is_placed(&e) && !h.is_stored(&e.sha256));
        h.stashed(e.layer, "a.hpkg", &e.sha256);
        assert!(!h.is_placed(&e) && h.is_stored(&e.sha256));
        h.placed_from_store(&e, false);
        assert!(h.is_placed(&e) && h.is_stored(&e.sha256));
        h.unstored(&e.sha256);
        assert_eq!(h.locate(&e), Some(layout.placed(&e)));
    }
}
