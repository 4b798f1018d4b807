//! The mounted namespace: every active package overlaid into one tree.
//!
//! ```text
//! /                      the mount point
//! ├── system/            union of the system layer's packages
//! │   └── .packages/<name>/manifest.json   one per active package
//! ├── common/            union of the common layer's packages
//! ├── user/              union of the user layer's packages
//! ├── merged/            user over common over system (user processes' view)
//! ├── merged-system/     common over system (system processes' view)
//! └── .exos/status.json  active and refused packages, conflicts
//! ```
//!
//! A view is immutable; a change of the active set builds a new one and
//! swaps it in. Nodes are a flat arena. Directories present in several
//! packages are merged; for files and symlinks one entry wins: the higher
//! layer, then (inside a layer, as in Haiku's packagefs) the newer
//! modification time, then the package file name that sorts last. Losers
//! inside a layer are reported as conflicts.
//!
//! Inode numbers are derived, not allocated: a directory's from its path, a
//! file's from its package and entry — not its path, so one package file
//! has one inode wherever it appears (its layer's tree, `merged`,
//! `merged-system`, a user's union: hard links, its pages cached once). So
//! unchanged nodes keep their number across views (the kernel's caches stay
//! valid), while a file that now comes from another package gets a new one
//! (its old page cache can never be served for the new content). The hash
//! is keyed with a secret drawn when the mount starts (SipHash), so a
//! package author cannot aim two files at one number; the rare honest
//! collision is probed away, and only nodes of the same package entry ever
//! share a number.
//!
//! Ownership and privileges are decided here too: a layer's files belong
//! to the owner of its packages directory, and setuid/setgid bits are
//! served only from the system layer, only when the mount allows it and
//! only while root alone can write that layer (see [`Privileges`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::SystemTime;

use exos_hpkg::{EntryId, EntryKind};
use rustc_hash::{FxHashMap, FxHashSet};

use exos_root::{Layer, PerLayer, UserName};

use crate::activate::{Activation, ActivePackage, Owner, RESERVED_NAMES};

/// What a mount lets packages' files do beyond their content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Privileges {
    /// Serve setuid/setgid bits of system-layer packages (the mount is then
    /// made `suid`). Never for `common` or `user`.
    pub setuid_from_system: bool,
}

/// What stays the same for every view of one mount.
#[derive(Clone)]
pub struct ViewSettings {
    /// Time stamp of made-up nodes: when the mount started.
    pub epoch: SystemTime,
    /// The secret key of inode numbers.
    pub inode_key: RandomState,
    /// Whether setuid/setgid bits may be served.
    pub privileges: Privileges,
    /// Owner of made-up nodes (the serving process's).
    pub owner: Owner,
    /// Serve identical files of different packages as one inode, once
    /// their digests are known.
    pub share_identical: bool,
}

impl ViewSettings {
    /// Settings for a new mount: a fresh inode key, now as epoch, the serving process as owner, sharing on.
    pub fn new(privileges: Privileges) -> ViewSettings {
        ViewSettings {
            epoch: SystemTime::now(),
            inode_key: RandomState::new(),
            privileges,
            share_identical: true,
            owner: Owner {
                uid: rustix::process::geteuid().as_raw(),
                gid: rustix::process::getegid().as_raw(),
            },
        }
    }
}

/// Where a node's content comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An entry of `view.packages[pkg]`.
    Entry {
        /// The package's index in `view.packages`.
        pkg: u32,
        /// The entry in its TOC.
        entry: EntryId,
    },
    /// A directory made up by the view (layer roots, `.packages/...`).
    Dir {
        /// Its name, in the view's names.
        name: u32,
    },
    /// A file made up by the view: `view.data[data]`.
    File {
        /// Its name, in the view's names.
        name: u32,
        /// Its bytes, in `view.data`.
        data: u32,
    },
    /// A file, directory or symlink of a runtime overlay: `view.host[host]`,
    /// read from the host as it is now (live).
    Host {
        /// Its index in `view.host`.
        host: u32,
    },
}

/// A node of a runtime overlay: where it is on the host.
#[derive(Debug, Clone)]
pub struct HostNode {
    /// The host path.
    pub path: std::path::PathBuf,
    /// Its name in the view.
    pub name: Box<str>,
    /// Directory, file or symlink.
    pub kind: Kind,
    /// Modification time and size when the view was built (in its inode
    /// number: a changed file is a new inode).
    pub stamp: (i128, u64),
    /// The layer of the package it covers (its files' owner).
    pub layer: Layer,
}

/// One node of the view.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// Its inode number.
    pub ino: u64,
    /// Its parent's index.
    pub parent: u32,
    /// Where its content comes from.
    pub source: Source,
    children_start: u32,
    children_len: u32,
}

/// A file entry hidden by another one in the same layer.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The layer.
    pub layer: Layer,
    /// The path inside the layer.
    pub path: String,
    /// The package whose file is shown.
    pub winner: String,
    /// The package whose file is hidden.
    pub loser: String,
}

/// An immutable tree of everything a mount shows (see the module documentation).
pub struct View {
    /// The active packages, by index.
    pub packages: Vec<Arc<ActivePackage>>,
    nodes: Vec<Node>,
    children: Vec<u32>,
    names: Vec<Box<str>>,
    data: Vec<Arc<[u8]>>,
    /// Nodes of runtime overlays.
    pub host: Vec<HostNode>,
    by_ino: FxHashMap<u64, u32>,
    /// Files hidden by another in the same layer.
    pub conflicts: Vec<Conflict>,
    /// What every view of the mount shares.
    pub settings: ViewSettings,
    /// Per layer: who owns its files, and whether its setuid/setgid bits
    /// are served.
    pub owners: PerLayer<Owner>,
    /// Per layer, whether setuid/setgid bits are served.
    pub setuid: PerLayer<bool>,
}

/// The root directory's inode number.
pub const ROOT_INO: u64 = 1;

/// The directory holding every layer, `user` over `common` over `system`:
/// what user processes see.
pub const MERGED: &str = "merged";
/// The directory holding `common` over `system`: what system processes see.
pub const MERGED_SYSTEM: &str = "merged-system";
/// `users/NAME`: the union of NAME's own layer (`ROOT/users/NAME/packages`).
pub const USERS: &str = "users";
/// `merged-users/NAME`: NAME's layer over `common` over `system` — what
/// NAME's processes see (instead of `merged`).
pub const MERGED_USERS: &str = "merged-users";
const ROOT: u32 = 0;

use exos_manifest::METADATA_FILES;

/// Node kind as the filesystem reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

impl View {
    /// Node `index`.
    pub fn node(&self, index: u32) -> &Node {
        &self.nodes[index as usize]
    }

    /// The index of the node with inode number `ino`.
    pub fn lookup_ino(&self, ino: u64) -> Option<u32> {
        self.by_ino.get(&ino).copied()
    }

    /// The children of directory `index`.
    pub fn children(&self, index: u32) -> &[u32] {
        let n = &self.nodes[index as usize];
        &self.children[n.children_start as usize..(n.children_start + n.children_len) as usize]
    }

    /// The name of node `index`: bytes, as packages store names (UTF-8 or
    /// not).
    pub fn name(&self, index: u32) -> &[u8] {
        match self.nodes[index as usize].source {
            Source::Entry { pkg, entry } => self.packages[pkg as usize]
                .package
                .entry(entry)
                .name_bytes(),
            Source::Dir { name } | Source::File { name, .. } => {
                self.names[name as usize].as_bytes()
            }
            Source::Host { host } => self.host[host as usize].name.as_bytes(),
        }
    }

    /// Its kind.
    pub fn kind(&self, index: u32) -> Kind {
        match self.nodes[index as usize].source {
            Source::Entry { pkg, entry } => {
                match self.packages[pkg as usize].package.entry(entry).kind() {
                    EntryKind::Directory => Kind::Dir,
                    EntryKind::File => Kind::File,
                    EntryKind::Symlink => Kind::Symlink,
                }
            }
            Source::Dir { .. } => Kind::Dir,
            Source::File { .. } => Kind::File,
            Source::Host { host } => self.host[host as usize].kind,
        }
    }

    /// The overlay node of `index`, if it comes from a runtime overlay.
    pub fn host(&self, index: u32) -> Option<&HostNode> {
        match self.nodes[index as usize].source {
            Source::Host { host } => Some(&self.host[host as usize]),
            _ => None,
        }
    }

    /// The bytes of a made-up file.
    pub fn data(&self, index: u32) -> Option<&Arc<[u8]>> {
        match self.nodes[index as usize].source {
            Source::File { data, .. } => Some(&self.data[data as usize]),
            _ => None,
        }
    }

    /// The child of directory `dir` called `name`.
    pub fn lookup(&self, dir: u32, name: impl AsRef<[u8]>) -> Option<u32> {
        let (kids, name) = (self.children(dir), name.as_ref());
        kids.binary_search_by(|&c| self.name(c).cmp(name))
            .ok()
            .map(|i| kids[i])
    }

    /// The node after `index` in a depth-first walk with names in byte
    /// order: the order packages store their files in, and the order
    /// `find | sort` lists a tree in (nearly: sort places `a.txt` before
    /// `a/b`).
    pub fn next_in_walk(&self, index: u32) -> Option<u32> {
        if let Some(&first) = self.children(index).first() {
            return Some(first);
        }
        let mut at = index;
        while at != ROOT {
            let parent = self.nodes[at as usize].parent;
            let siblings = self.children(parent);
            let name = self.name(at);
            let here = siblings
                .binary_search_by(|&c| self.name(c).cmp(name))
                .ok()?;
            if let Some(&next) = siblings.get(here + 1) {
                return Some(next);
            }
            at = parent;
        }
        None
    }

    /// Resolves a path relative to the mount root (`merged/bin/ls`).
    pub fn lookup_path(&self, path: impl AsRef<[u8]>) -> Option<u32> {
        let mut at = ROOT;
        for part in path
            .as_ref()
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
        {
            at = self.lookup(at, part)?;
        }
        Some(at)
    }

    /// Nodes in the view.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Approximate heap bytes of the view's own index (not the packages').
    pub fn memory_usage(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.children.capacity() * 4
            + self.by_ino.capacity() * 16
            + self.names.iter().map(|n| n.len() + 16).sum::<usize>()
            + self.data.iter().map(|d| d.len() + 16).sum::<usize>()
            + self
                .host
                .iter()
                .map(|h| h.path.as_os_str().len() + h.name.len() + 64)
                .sum::<usize>()
    }

    /// The owner of a package's file and the permission bits served for
    /// it. Per-user layers never serve setuid/setgid bits.
    pub fn owner_and_permissions(&self, pkg: &ActivePackage, permissions: u16) -> (Owner, u16) {
        served(&self.owners, &self.setuid, pkg, permissions)
    }

    /// Builds the view of `activation`. `.exos/status.json` starts empty:
    /// what it reports (conflicts, sizes) is known only once built; see
    /// [`View::set_status`].
    pub fn build(activation: &Activation, settings: &ViewSettings) -> View {
        let mut b = Builder::new(settings.clone());
        b.owners = activation.owners;
        // Setuid bits only from a system layer that root alone can change.
        b.setuid.system = settings.privileges.setuid_from_system && activation.root_only.system;
        for p in activation.all() {
            b.packages.push(Arc::clone(p));
            let toc = p.package.toc();
            let mut private: Vec<EntryId> = p
                .manifest
                .private
                .iter()
                .filter_map(|path| toc.lookup_path(path).map(|e| e.id()))
                .collect();
            private.sort_unstable();
            b.private.push(private);
        }
        if settings.share_identical {
            let mut seen = FxHashSet::default();
            for d in activation.all().filter_map(|p| p.digests.get()) {
                for (_, digest) in &d.0 {
                    if !seen.insert(*digest) {
                        b.shared.insert(*digest);
                    }
                }
            }
        }
        let root_name = b.name("");
        let root = b.add_node(ROOT, Source::Dir { name: root_name });
        debug_assert_eq!(root, ROOT);
        let mut layer_roots = Vec::new();
        for layer in Layer::ALL {
            let dir = b.synthetic_dir(ROOT, layer.name());
            layer_roots.push(dir);
            b.fill(dir, Tree::Layer(layer));
        }
        let merged = b.synthetic_dir(ROOT, MERGED);
        b.fill(merged, Tree::Merged { top: Layer::User });
        let merged_system = b.synthetic_dir(ROOT, MERGED_SYSTEM);
        b.fill(merged_system, Tree::Merged { top: Layer::Common });
        if !activation.users.is_empty() {
            let users = b.synthetic_dir(ROOT, USERS);
            let merged_users = b.synthetic_dir(ROOT, MERGED_USERS);
            for (user, _) in &activation.users {
                let own = b.synthetic_dir(users, user.as_str());
                b.fill(own, Tree::OwnLayer(user));
                let merged = b.synthetic_dir(merged_users, user.as_str());
                b.fill(merged, Tree::MergedUser(user));
            }
        }
        for o in &activation.overlays {
            let Some(pkg) = b.packages.iter().position(|p| p.id == o.package_id) else {
                continue;
            };
            // Every tree the package appears in.
            let mut trees = vec![layer_roots[o.layer.index()], merged];
            if o.layer <= Layer::Common {
                trees.push(merged_system);
                for (user, _) in &activation.users {
                    if let Some(d) = b
                        .index
                        .get(&(ROOT, MERGED_USERS.as_bytes().into()))
                        .copied()
                    {
                        if let Some(u) = b.index.get(&(d, user.as_str().as_bytes().into())).copied()
                        {
                            trees.push(u);
                        }
                    }
                }
            }
            for t in trees {
                b.apply_overlay(t, pkg as u32, o);
            }
        }
        let exos = b.synthetic_dir(ROOT, ".exos");
        b.synthetic_file(exos, "status.json", Arc::from(&[][..]));
        b.finish()
    }

    /// Sets the content of `.exos/status.json`. Its inode number follows
    /// its content, like every made-up file's, so the kernel never serves an
    /// old status from its page cache.
    pub fn set_status(&mut self, status: Vec<u8>) {
        let Some(index) = self.lookup_path(".exos/status.json") else {
            return;
        };
        let Source::File { data, .. } = self.nodes[index as usize].source else {
            return;
        };
        self.data[data as usize] = status.into();
        let old = self.nodes[index as usize].ino;
        let mut ino = hash2(&self.settings.inode_key, old, &self.data[data as usize][..]).max(2);
        while self.by_ino.contains_key(&ino) {
            ino = ino.wrapping_add(0x9E37_79B9_7F4A_7C15).max(2);
        }
        self.by_ino.remove(&old);
        self.by_ino.insert(ino, index);
        self.nodes[index as usize].ino = ino;
    }
}

/// The owner and permission bits served for a file of `pkg`.
fn served(
    owners: &PerLayer<Owner>,
    setuid: &PerLayer<bool>,
    pkg: &ActivePackage,
    permissions: u16,
) -> (Owner, u16) {
    if let Some((_, owner)) = &pkg.user {
        return (*owner, permissions & !0o6000);
    }
    let perm = if *setuid.get(pkg.layer) {
        permissions
    } else {
        permissions & !0o6000
    };
    (*owners.get(pkg.layer), perm)
}

/// What a file's inode number stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Content {
    /// One package entry (by the package's mount-unique id).
    Entry(u64, EntryId),
    /// Bytes with this digest, served with these owner and permissions:
    /// the same for every package holding them.
    Bytes([u8; 16], Owner, u16),
}

/// One package's entry for a name in a directory being filled.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    pkg: u32,
    entry: EntryId,
    prio: Priority,
    is_dir: bool,
}

/// The outcome for one name.
struct Resolved {
    /// The entry whose attributes (and, for a file, content) are served.
    winner: Candidate,
    /// For a directory: every package directory merged into it.
    dirs: Vec<Candidate>,
    /// (winner, loser) inside one layer.
    conflicts: Vec<(Candidate, Candidate)>,
}

/// Applies the overlay rule to all candidates of one name (see
/// [`Builder::overlay`]).
fn resolve(group: &[Candidate]) -> Resolved {
    let mut layers: Vec<Layer> = group.iter().map(|c| c.prio.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    let mut winner = None;
    let mut dirs = Vec::new();
    let mut conflicts = Vec::new();
    for &layer in layers.iter().rev() {
        let in_layer = || group.iter().filter(move |c| c.prio.layer == layer);
        // Inside the layer a directory wins over a file or symlink of the
        // same name whatever their times (a native package's `lib/` and the
        // merged-/usr link `lib -> usr/lib` of imported Debian packages:
        // the directory is kept, the conflict reported); among entries of
        // one kind the newest wins.
        let Some(&best) = in_layer().max_by_key(|c| (c.is_dir, c.prio)) else {
            continue;
        };
        // A winning directory merges with the layer's other directories;
        // everything else loses to the best.
        for c in in_layer() {
            let merges = best.is_dir && c.is_dir;
            if !merges && (c.pkg, c.entry) != (best.pkg, best.entry) {
                conflicts.push((best, *c));
            }
        }
        if winner.is_none() {
            winner = Some(best);
        } else if !best.is_dir {
            // A file below a directory is hidden, and so is all beneath it.
            break;
        }
        if !best.is_dir {
            break;
        }
        dirs.extend(in_layer().filter(|c| c.is_dir));
    }
    Resolved {
        winner: winner.unwrap_or(group[0]),
        dirs,
        conflicts,
    }
}

/// Which tree of the view is being filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree<'a> {
    /// One user's own layer.
    OwnLayer(&'a UserName),
    /// One user's layer over `common` over `system`.
    MergedUser(&'a UserName),
    /// One layer's packages (conflicts inside it are reported).
    Layer(Layer),
    /// The layers up to `top`, each package ranking by its own.
    Merged { top: Layer },
}

/// Priority of an entry for a path: higher wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Priority {
    layer: Layer,
    mtime: (u64, u32),
    /// Position of the package in file-name order within its layer.
    order: u32,
}

struct Builder {
    settings: ViewSettings,
    owners: PerLayer<Owner>,
    setuid: PerLayer<bool>,
    packages: Vec<Arc<ActivePackage>>,
    nodes: Vec<Node>,
    kids: Vec<Vec<u32>>,
    path_hash: Vec<u64>,
    index: FxHashMap<(u32, Box<[u8]>), u32>,
    names: Vec<Box<str>>,
    data: Vec<Arc<[u8]>>,
    host: Vec<HostNode>,
    conflicts: Vec<Conflict>,
    /// Per package: the entries its manifest keeps private (sorted).
    private: Vec<Vec<EntryId>>,
    /// Content digests found in more than one file of the active packages:
    /// only those files take an inode by content (see `content_of`).
    shared: FxHashSet<[u8; 16]>,
}

/// Keyed 64-bit hash of a pair (SipHash with the mount's secret key).
fn hash2(key: &RandomState, a: u64, b: impl Hash) -> u64 {
    key.hash_one((a, b))
}

impl Builder {
    fn new(settings: ViewSettings) -> Builder {
        Builder {
            settings,
            owners: PerLayer::default(),
            setuid: PerLayer::default(),
            packages: Vec::new(),
            nodes: Vec::new(),
            kids: Vec::new(),
            path_hash: Vec::new(),
            index: FxHashMap::default(),
            names: Vec::new(),
            data: Vec::new(),
            host: Vec::new(),
            conflicts: Vec::new(),
            private: Vec::new(),
            shared: FxHashSet::default(),
        }
    }

    fn name(&mut self, s: &str) -> u32 {
        self.names.push(s.into());
        self.names.len() as u32 - 1
    }

    fn node_name(&self, index: u32) -> &[u8] {
        match self.nodes[index as usize].source {
            Source::Entry { pkg, entry } => self.packages[pkg as usize]
                .package
                .entry(entry)
                .name_bytes(),
            Source::Dir { name } | Source::File { name, .. } => {
                self.names[name as usize].as_bytes()
            }
            Source::Host { host } => self.host[host as usize].name.as_bytes(),
        }
    }

    fn is_dir(&self, source: Source) -> bool {
        match source {
            Source::Entry { pkg, entry } => {
                self.packages[pkg as usize].package.entry(entry).is_dir()
            }
            Source::Dir { .. } => true,
            Source::File { .. } => false,
            Source::Host { host } => self.host[host as usize].kind == Kind::Dir,
        }
    }

    /// What a file node's inode number stands for: one package entry,
    /// wherever it appears (its layer's tree, `merged`, `merged-system`,
    /// a user's union). Several paths then share one inode — hard links —
    /// and the kernel keeps its pages once.
    ///
    /// Identical bytes in different packages share one inode too, once the
    /// mount computed the packages' digests (its own, never a package's
    /// claim), when they are served with the same owner and permissions.
    /// Only bytes found in more than one file take a number by content: a
    /// file whose bytes are its own keeps its number when the digests
    /// arrive, and with it the pages the kernel cached under it.
    fn content_of(&self, source: Source) -> Option<Content> {
        let Source::Entry { pkg, entry } = source else {
            return None;
        };
        if self.is_dir(source) {
            return None;
        }
        let p = &self.packages[pkg as usize];
        if self.settings.share_identical {
            if let Some(digest) = p.digests.get().and_then(|d| d.get(entry)) {
                let e = p.package.entry(entry);
                if e.kind() == EntryKind::File && self.shared.contains(digest) {
                    let (owner, perm) = served(&self.owners, &self.setuid, p, e.permissions());
                    return Some(Content::Bytes(*digest, owner, perm));
                }
            }
        }
        Some(Content::Entry(p.id, entry))
    }

    fn ino_for(&self, path_hash: u64, source: Source) -> u64 {
        let key = &self.settings.inode_key;
        let raw = match source {
            Source::Entry { .. } if !self.is_dir(source) => hash2(key, 0, self.content_of(source)),
            // Made-up files change with the view (status.json): new content,
            // new inode.
            Source::File { data, .. } => hash2(key, path_hash, &self.data[data as usize][..]),
            // An overlay's file: its own number, by host path, so the
            // package's page cache is never served for it.
            Source::Host { host } if !self.is_dir(source) => {
                let h = &self.host[host as usize];
                hash2(key, 1, (&h.path, h.stamp))
            }
            _ => hash2(key, path_hash, "dir"),
        };
        // 0 is invalid and 1 is the root.
        raw.max(2)
    }

    /// Adds a node under `parent` (the root is its own parent).
    fn add_node(&mut self, parent: u32, source: Source) -> u32 {
        let index = self.nodes.len() as u32;
        let path_hash = if self.nodes.is_empty() {
            0
        } else {
            let name = match source {
                Source::Entry { pkg, entry } => self.packages[pkg as usize]
                    .package
                    .entry(entry)
                    .name_bytes(),
                Source::Dir { name } | Source::File { name, .. } => {
                    self.names[name as usize].as_bytes()
                }
                Source::Host { host } => self.host[host as usize].name.as_bytes(),
            };
            hash2(
                &self.settings.inode_key,
                self.path_hash[parent as usize],
                name,
            )
        };
        let ino = if self.nodes.is_empty() {
            ROOT_INO
        } else {
            self.ino_for(path_hash, source)
        };
        self.nodes.push(Node {
            ino,
            parent,
            source,
            children_start: 0,
            children_len: 0,
        });
        self.kids.push(Vec::new());
        self.path_hash.push(path_hash);
        if index != parent {
            self.kids[parent as usize].push(index);
        }
        index
    }

    fn synthetic_dir(&mut self, parent: u32, name: &str) -> u32 {
        if let Some(&existing) = self.index.get(&(parent, name.as_bytes().into())) {
            return existing;
        }
        let n = self.name(name);
        let node = self.add_node(parent, Source::Dir { name: n });
        self.index.insert((parent, name.as_bytes().into()), node);
        node
    }

    fn synthetic_file(&mut self, parent: u32, name: &str, content: Arc<[u8]>) -> u32 {
        let n = self.name(name);
        self.data.push(content);
        let d = self.data.len() as u32 - 1;
        let node = self.add_node(parent, Source::File { name: n, data: d });
        self.index.insert((parent, name.as_bytes().into()), node);
        node
    }

    /// Overlays the packages of `tree` under `dir`, plus their
    /// `.packages/<name>/` metadata.
    fn fill(&mut self, dir: u32, tree: Tree) {
        let chosen: Vec<u32> = (0..self.packages.len() as u32)
            .filter(|&i| {
                let p = &self.packages[i as usize];
                let user = p.user.as_ref().map(|(u, _)| u);
                match tree {
                    Tree::Layer(l) => p.layer == l && user.is_none(),
                    Tree::Merged { top } => p.layer <= top && user.is_none(),
                    Tree::OwnLayer(name) => user == Some(name),
                    Tree::MergedUser(name) => {
                        user == Some(name) || (user.is_none() && p.layer <= Layer::Common)
                    }
                }
            })
            .collect();
        let roots = chosen
            .iter()
            .enumerate()
            .map(|(order, &pkg)| {
                let p = &self.packages[pkg as usize];
                Candidate {
                    pkg,
                    entry: p.package.toc().root().id(),
                    prio: Priority {
                        layer: p.layer,
                        mtime: (0, 0),
                        order: order as u32,
                    },
                    is_dir: true,
                }
            })
            .collect();
        let conflicts = matches!(tree, Tree::Layer(_));
        self.overlay(dir, roots, conflicts, true);
        self.metadata(dir, &chosen);
    }

    /// `.packages/<name>/{manifest.json,.PackageInfo}`; with two packages of
    /// one name, the higher layer and version keeps `<name>`, the others are
    /// `<name>-<version>`.
    fn metadata(&mut self, dir: u32, chosen: &[u32]) {
        let meta = self.synthetic_dir(dir, ".packages");
        let mut order = chosen.to_vec();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (&self.packages[a as usize], &self.packages[b as usize]);
            pb.layer
                .cmp(&pa.layer)
                .then(pb.manifest.version.compare(&pa.manifest.version))
        });
        for pkg in order {
            let p = Arc::clone(&self.packages[pkg as usize]);
            let mut dir_name = p.manifest.name.clone();
            if self.index.contains_key(&(meta, dir_name.as_bytes().into())) {
                dir_name = format!("{}-{}", p.manifest.name, p.manifest.version);
            }
            if self.index.contains_key(&(meta, dir_name.as_bytes().into())) {
                continue;
            }
            let d = self.synthetic_dir(meta, &dir_name);
            let toc = p.package.toc();
            let root = toc.root().id();
            let mut has_manifest = false;
            for name in METADATA_FILES {
                if let Some(e) = toc.lookup(root, name) {
                    if e.kind() == EntryKind::File {
                        has_manifest |= name == exos_manifest::MANIFEST_FILE;
                        let node = self.add_node(d, Source::Entry { pkg, entry: e.id() });
                        self.index.insert((d, name.as_bytes().into()), node);
                    }
                }
            }
            self.private_paths(d, pkg);
            if !has_manifest {
                // A Haiku package: show the manifest derived from its attributes.
                let mut json = serde_json::to_vec_pretty(&p.manifest.to_json()).unwrap_or_default();
                json.push(b'\n');
                self.synthetic_file(d, exos_manifest::MANIFEST_FILE, json.into());
            }
        }
    }

    /// A package's private entries under its `.packages/<name>/` directory
    /// `dir`, at their paths inside the package.
    fn private_paths(&mut self, dir: u32, pkg: u32) {
        let p = Arc::clone(&self.packages[pkg as usize]);
        let toc = p.package.toc();
        for path in &p.manifest.private {
            let Some(entry) = toc.lookup_path(path) else {
                continue;
            };
            let mut parent = dir;
            let parts: Vec<&str> = path.split('/').collect();
            for part in &parts[..parts.len() - 1] {
                parent = self.synthetic_dir(parent, part);
            }
            if self
                .index
                .contains_key(&(parent, entry.name_bytes().into()))
            {
                continue;
            }
            let node = self.add_node(
                parent,
                Source::Entry {
                    pkg,
                    entry: entry.id(),
                },
            );
            self.index.insert((parent, entry.name_bytes().into()), node);
            if entry.is_dir() {
                let m = entry.mtime();
                let source = Candidate {
                    pkg,
                    entry: entry.id(),
                    prio: Priority {
                        layer: p.layer,
                        mtime: (m.secs, m.nanos),
                        order: 0,
                    },
                    is_dir: true,
                };
                self.overlay(node, vec![source], false, false);
            }
        }
    }

    /// Fills `dir` with the union of the package directories `sources`,
    /// level by level. For each name, every package's entry is a candidate:
    /// inside a layer the highest priority wins, and if it is a directory
    /// all of that layer's directories of that name merge (its files lose);
    /// across layers the highest layer's result wins, merging with lower
    /// layers' directories down to the first layer whose result is a file
    /// (which hides everything below). The outcome does not depend on the
    /// order packages are visited in. With `record_conflicts`, losers inside
    /// a layer are reported.
    fn overlay(
        &mut self,
        dir: u32,
        sources: Vec<Candidate>,
        record_conflicts: bool,
        at_package_root: bool,
    ) {
        let packages = self.packages.clone();
        let private = std::mem::take(&mut self.private);
        let name_of = |c: &Candidate| packages[c.pkg as usize].package.entry(c.entry).name_bytes();
        let mut stack = vec![(dir, sources, at_package_root)];
        while let Some((target, sources, at_root)) = stack.pop() {
            let mut candidates = Vec::new();
            for s in &sources {
                let toc = packages[s.pkg as usize].package.toc();
                for child in toc.entry(s.entry).children() {
                    let name = child.name_bytes();
                    // Activation refuses packages shipping reserved names;
                    // skip them here too, so generated metadata always wins.
                    let listed = |names: &[&str]| names.iter().any(|n| n.as_bytes() == name);
                    if at_root && (listed(&METADATA_FILES) || listed(&RESERVED_NAMES)) {
                        continue;
                    }
                    // Private entries appear only under `.packages/<name>/`.
                    if private[s.pkg as usize].binary_search(&child.id()).is_ok() {
                        continue;
                    }
                    let m = child.mtime();
                    candidates.push(Candidate {
                        pkg: s.pkg,
                        entry: child.id(),
                        prio: Priority {
                            mtime: (m.secs, m.nanos),
                            ..s.prio
                        },
                        is_dir: child.is_dir(),
                    });
                }
            }
            candidates.sort_by(|a, b| name_of(a).cmp(name_of(b)));
            for group in candidates.chunk_by(|a, b| name_of(a) == name_of(b)) {
                let resolved = resolve(group);
                let node = self.add_node(
                    target,
                    Source::Entry {
                        pkg: resolved.winner.pkg,
                        entry: resolved.winner.entry,
                    },
                );
                if record_conflicts {
                    for (winner, loser) in &resolved.conflicts {
                        self.conflict(node, winner, loser);
                    }
                }
                if resolved.winner.is_dir {
                    stack.push((node, resolved.dirs, false));
                }
            }
        }
        self.private = private;
    }

    /// Shows overlay `o` over package `pkg`'s files in the tree under
    /// `tree`: an overlay file replaces the package's file of that path
    /// (never another package's: the overlay covers one package), an
    /// overlay directory merges with the directory there, and paths the
    /// tree lacks are added.
    fn apply_overlay(&mut self, tree: u32, pkg: u32, o: &crate::activate::ActiveOverlay) {
        use crate::activate::OverlayKind;
        let mut dirs: FxHashMap<&str, u32> = FxHashMap::default();
        dirs.insert("", tree);
        for e in &o.entries {
            let (parent_path, name) = e.path.rsplit_once('/').unwrap_or(("", &e.path));
            let Some(&parent) = dirs.get(parent_path) else {
                continue; // its parent was not shown (covered by another package)
            };
            if name.is_empty() || name == "." || name == ".." {
                continue;
            }
            let kind = match e.kind {
                OverlayKind::Dir => Kind::Dir,
                OverlayKind::File => Kind::File,
                OverlayKind::Symlink => Kind::Symlink,
            };
            let existing = self.kids[parent as usize]
                .iter()
                .copied()
                .find(|&k| self.node_name(k) == name.as_bytes());
            let host = |b: &mut Builder| {
                b.host.push(HostNode {
                    path: o.dir.join(&e.path),
                    name: name.into(),
                    kind,
                    stamp: e.stamp,
                    layer: o.layer,
                });
                Source::Host {
                    host: b.host.len() as u32 - 1,
                }
            };
            match existing {
                Some(k) if kind == Kind::Dir && self.is_dir(self.nodes[k as usize].source) => {
                    dirs.insert(&e.path, k);
                }
                Some(k) => {
                    let ours = match self.nodes[k as usize].source {
                        Source::Entry { pkg: p, .. } => p == pkg,
                        Source::Host { .. } => true,
                        _ => false,
                    };
                    if !ours || self.is_dir(self.nodes[k as usize].source) {
                        continue; // another package's file, or a directory
                    }
                    let source = host(self);
                    self.nodes[k as usize].source = source;
                    self.nodes[k as usize].ino = self.ino_for(self.path_hash[k as usize], source);
                    if kind == Kind::Dir {
                        dirs.insert(&e.path, k);
                    }
                }
                None => {
                    let source = host(self);
                    let k = self.add_node(parent, source);
                    if kind == Kind::Dir {
                        dirs.insert(&e.path, k);
                    }
                }
            }
        }
    }

    fn conflict(&mut self, node: u32, winner: &Candidate, loser: &Candidate) {
        // Relative to the layer's root: the path inside the packages.
        let full = self.path_of(node);
        let path = full
            .split_once('/')
            .map_or(full.as_str(), |(_, rest)| rest)
            .to_string();
        self.conflicts.push(Conflict {
            layer: winner.prio.layer,
            path,
            winner: self.packages[winner.pkg as usize].file_name.clone(),
            loser: self.packages[loser.pkg as usize].file_name.clone(),
        });
    }

    fn path_of(&self, mut index: u32) -> String {
        let mut parts = Vec::new();
        while index != ROOT {
            parts.push(String::from_utf8_lossy(self.node_name(index)).into_owned());
            index = self.nodes[index as usize].parent;
        }
        parts.reverse();
        parts.join("/")
    }

    fn finish(mut self) -> View {
        // Sort children by name and flatten; only nodes reachable from the
        // root are kept in the inode index (hidden subtrees are dropped).
        let mut children = Vec::with_capacity(self.nodes.len());
        let mut by_ino = FxHashMap::default();
        by_ino.reserve(self.nodes.len());
        let mut stack = vec![ROOT];
        while let Some(n) = stack.pop() {
            let mut kids = std::mem::take(&mut self.kids[n as usize]);
            kids.sort_by(|&a, &b| self.node_name(a).cmp(self.node_name(b)));
            let node = &mut self.nodes[n as usize];
            node.children_start = children.len() as u32;
            node.children_len = kids.len() as u32;
            // Inode numbers are unique per content: nodes of one package
            // entry share theirs; probe on the (rare) collision of others.
            let content = self.content_of(self.nodes[n as usize].source);
            let mut ino = self.nodes[n as usize].ino;
            let mut shared = false;
            while let Some(&other) = by_ino.get(&ino) {
                if other == n {
                    break;
                }
                if content.is_some()
                    && content == self.content_of(self.nodes[other as usize].source)
                {
                    shared = true;
                    break;
                }
                ino = ino.wrapping_add(0x9E37_79B9_7F4A_7C15).max(2);
            }
            self.nodes[n as usize].ino = ino;
            if !shared {
                by_ino.insert(ino, n);
            }
            children.extend_from_slice(&kids);
            stack.extend(kids.iter().copied());
        }
        View {
            packages: self.packages,
            nodes: self.nodes,
            children,
            names: self.names,
            data: self.data,
            host: self.host,
            by_ino,
            conflicts: self.conflicts,
            settings: self.settings,
            owners: self.owners,
            setuid: self.setuid,
        }
    }
}
