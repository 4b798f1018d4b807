//! The candidates as the solver sees them, interned: every name, version
//! and range is stored once and referred to by a 32-bit id, and each
//! candidate's lists are spans of shared flat arrays. Debian's 66,000
//! packages mention about 100,000 distinct names but the same few versions
//! and ranges over and over; a candidate costs ~60 bytes plus its
//! dependencies at 8 bytes each, instead of a `Manifest`'s ~2 KiB.

use std::collections::HashMap;

use exos_manifest::{Dependency, DependencyRef, Manifest, ManifestRef, Provide, VersionRange};
use exos_version::{Architecture, Version};

use crate::intern::{Interner, Parsed, Shared, SharedParsed};
use crate::{CandidateId, Origin};

/// An interned name (package or API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Sym(pub u32);

/// An interned version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct VerId(pub u32);

/// An interned version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RangeId(pub u32);

/// A run of entries in one of the pool's flat arrays.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of<T>(list: &mut Vec<T>, items: impl IntoIterator<Item = T>) -> Span {
        let start = list.len() as u32;
        list.extend(items);
        Span {
            start,
            len: list.len() as u32 - start,
        }
    }

    fn from(start: u32, end: usize) -> Span {
        Span {
            start,
            len: end as u32 - start,
        }
    }

    fn shifted(self, by: u32) -> Span {
        Span {
            start: self.start + by,
            ..self
        }
    }

    fn slice<T>(self, list: &[T]) -> &[T] {
        &list[self.start as usize..(self.start + self.len) as usize]
    }
}

/// What a pool holds (see [`Pool::memory`]).
#[derive(Debug, Clone, Copy)]
pub struct PoolMemory {
    /// Distinct package names.
    pub names: usize,
    /// Distinct versions.
    pub versions: usize,
    /// Distinct version ranges.
    pub ranges: usize,
    /// Bytes in use (a lower bound: arrays reserved ahead count what they
    /// hold, strings their capacity, not the allocator's rounding).
    pub bytes: usize,
}

/// A provided API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProvideRec {
    pub api: Sym,
    pub version: Option<VerId>,
    pub compatible: Option<VerId>,
}

/// A needed (or conflicting) API in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DepRec {
    pub api: Sym,
    pub range: RangeId,
}

/// One candidate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Solvable {
    pub name: Sym,
    pub version: VerId,
    pub architecture: Architecture,
    pub origin: u32,
    pub id: CandidateId,
    provides: Span,
    /// Spans of `groups`, each a span of `deps` (the alternatives).
    requires: Span,
    uses: Span,
    conflicts: Span,
    replaces: Span,
}

/// Every candidate's data, interned.
pub(crate) struct Pool {
    names: Interner,
    versions: Parsed<Version>,
    ranges: Parsed<VersionRange>,
    provides: Vec<ProvideRec>,
    deps: Vec<DepRec>,
    groups: Vec<Span>,
    syms: Vec<Sym>,
    origins: Vec<Origin>,
    /// Index of `origins`: every installed package has an origin of its
    /// own, so a scan per candidate was quadratic in a large root.
    origin_ids: HashMap<Origin, u32>,
    pub solvables: Vec<Solvable>,
}

impl Pool {
    pub(crate) fn new() -> Pool {
        Pool {
            names: Interner::default(),
            versions: Parsed::default(),
            ranges: Parsed::default(),
            provides: Vec::new(),
            deps: Vec::new(),
            groups: Vec::new(),
            syms: Vec::new(),
            origins: Vec::new(),
            origin_ids: HashMap::new(),
            solvables: Vec::new(),
        }
    }

    pub(crate) fn name(&self, s: Sym) -> &str {
        self.names.get(s.0)
    }

    pub(crate) fn find_name(&self, s: &str) -> Option<Sym> {
        self.names.find(s).map(Sym)
    }

    /// Every name's `Sym` is below this: arrays can be indexed by it.
    pub(crate) fn name_bound(&self) -> usize {
        self.names.id_bound()
    }

    pub(crate) fn intern_name(&mut self, s: &str) -> Sym {
        Sym(self.names.intern(s))
    }

    pub(crate) fn version(&self, v: VerId) -> &Version {
        self.versions.get(v.0)
    }

    pub(crate) fn intern_version(&mut self, v: &Version) -> VerId {
        VerId(self.versions.intern(v.clone()))
    }

    pub(crate) fn range(&self, r: RangeId) -> &VersionRange {
        self.ranges.get(r.0)
    }

    /// The id of `r` if a candidate mentions it.
    pub(crate) fn find_range(&self, r: &VersionRange) -> Option<RangeId> {
        self.ranges.find(r).map(RangeId)
    }

    pub(crate) fn intern_range(&mut self, r: &VersionRange) -> RangeId {
        RangeId(self.ranges.intern(r.clone()))
    }

    pub(crate) fn origin(&self, s: &Solvable) -> &Origin {
        &self.origins[s.origin as usize]
    }

    pub(crate) fn provides(&self, s: &Solvable) -> &[ProvideRec] {
        s.provides.slice(&self.provides)
    }

    /// Each requirement as its alternatives.
    pub(crate) fn requires<'p>(&'p self, s: &Solvable) -> impl Iterator<Item = &'p [DepRec]> + 'p {
        s.requires
            .slice(&self.groups)
            .iter()
            .map(|g| g.slice(&self.deps))
    }

    pub(crate) fn uses(&self, s: &Solvable) -> &[DepRec] {
        s.uses.slice(&self.deps)
    }

    pub(crate) fn conflicts(&self, s: &Solvable) -> &[DepRec] {
        s.conflicts.slice(&self.deps)
    }

    pub(crate) fn replaces(&self, s: &Solvable) -> &[Sym] {
        s.replaces.slice(&self.syms)
    }

    /// Does `provide` offer `dep`'s API in a matching version?
    pub(crate) fn meets(&self, dep: DepRec, provide: &ProvideRec) -> bool {
        provide.api == dep.api
            && self.range(dep.range).matches(
                provide.version.map(|v| self.version(v)),
                provide.compatible.map(|v| self.version(v)),
            )
    }

    /// Is `provide` what the conflict `dep` names? A versioned conflict
    /// only hits versioned providers (see `Dependency::conflicts_with`).
    pub(crate) fn conflicts_with(&self, dep: DepRec, provide: &ProvideRec) -> bool {
        provide.api == dep.api
            && (self.range(dep.range).is_any()
                || (provide.version.is_some() && self.meets(dep, provide)))
    }

    /// A dependency as text (`libfoo >=1.0`).
    pub(crate) fn dep_text(&self, dep: DepRec) -> String {
        Dependency {
            api: self.name(dep.api).to_string(),
            range: self.range(dep.range).clone(),
        }
        .to_string()
    }

    fn dep(&mut self, d: &Dependency) -> DepRec {
        DepRec {
            api: self.intern_name(&d.api),
            range: self.intern_range(&d.range),
        }
    }

    /// The number standing for `origin` in solvables.
    pub(crate) fn origin_id(&mut self, origin: Origin) -> u32 {
        // Candidates arrive grouped by source: the last one usually matches.
        if self.origins.last() == Some(&origin) {
            return self.origins.len() as u32 - 1;
        }
        if let Some(&i) = self.origin_ids.get(&origin) {
            return i;
        }
        let id = self.origins.len() as u32;
        self.origin_ids.insert(origin.clone(), id);
        self.origins.push(origin);
        id
    }

    /// Adds a candidate from an owned manifest.
    pub(crate) fn add(&mut self, m: &Manifest, origin: Origin, id: CandidateId) {
        let name = self.intern_name(&m.name);
        let version = self.intern_version(&m.version);
        let provides: Vec<ProvideRec> = m.provides.iter().map(|p| self.provide(p)).collect();
        let provides = Span::of(&mut self.provides, provides);
        let mut groups = Vec::with_capacity(m.requires.len());
        for r in &m.requires {
            let alternatives: Vec<DepRec> = r.alternatives.iter().map(|d| self.dep(d)).collect();
            groups.push(Span::of(&mut self.deps, alternatives));
        }
        let requires = Span::of(&mut self.groups, groups);
        let uses: Vec<DepRec> = m.uses.iter().map(|d| self.dep(d)).collect();
        let uses = Span::of(&mut self.deps, uses);
        let conflicts: Vec<DepRec> = m.conflicts.iter().map(|d| self.dep(d)).collect();
        let conflicts = Span::of(&mut self.deps, conflicts);
        let replaces: Vec<Sym> = m.replaces.iter().map(|r| self.intern_name(r)).collect();
        let replaces = Span::of(&mut self.syms, replaces);
        let origin = self.origin_id(origin);
        self.solvables.push(Solvable {
            name,
            version,
            architecture: m.architecture,
            origin,
            id,
            provides,
            requires,
            uses,
            conflicts,
            replaces,
        });
    }

    fn provide(&mut self, p: &Provide) -> ProvideRec {
        ProvideRec {
            api: self.intern_name(&p.api),
            version: p.version.as_ref().map(|v| self.intern_version(v)),
            compatible: p.compatible.as_ref().map(|v| self.intern_version(v)),
        }
    }

    /// Lends the interners to threads that build [`Segment`]s at once.
    pub(crate) fn share(&mut self) -> SharedTables<'_> {
        SharedTables {
            names: self.names.share(),
            versions: self.versions.share(),
            ranges: self.ranges.share(),
        }
    }

    /// Appends what a thread built, numbering its candidates from `first`.
    pub(crate) fn append(&mut self, seg: Segment, first: u32) {
        let base = |list_len: usize| list_len as u32;
        let (provides, deps, groups, syms) = (
            base(self.provides.len()),
            base(self.deps.len()),
            base(self.groups.len()),
            base(self.syms.len()),
        );
        self.provides.extend_from_slice(&seg.provides);
        self.deps.extend_from_slice(&seg.deps);
        self.groups
            .extend(seg.groups.iter().map(|g| g.shifted(deps)));
        self.syms.extend_from_slice(&seg.syms);
        self.solvables
            .extend(seg.solvables.iter().enumerate().map(|(i, s)| Solvable {
                id: CandidateId(first + i as u32),
                provides: s.provides.shifted(provides),
                requires: s.requires.shifted(groups),
                uses: s.uses.shifted(deps),
                conflicts: s.conflicts.shifted(deps),
                replaces: s.replaces.shifted(syms),
                ..*s
            }));
    }

    /// What the pool holds and the bytes it takes (`--stats`).
    pub(crate) fn memory(&self) -> PoolMemory {
        // What is in use: reserved room never touched takes no memory.
        fn bytes<T>(v: &[T]) -> usize {
            std::mem::size_of_val(v)
        }
        let versions = self.versions.bytes(|v| {
            std::mem::size_of::<Version>()
                + v.major.capacity()
                + v.minor.capacity()
                + v.micro.capacity()
                + v.pre_release.capacity()
        });
        let ranges = self.ranges.bytes(|r| {
            std::mem::size_of::<VersionRange>()
                + r.constraints.len() * std::mem::size_of::<exos_manifest::Constraint>()
        });
        PoolMemory {
            names: self.names.len(),
            versions: self.versions.len(),
            ranges: self.ranges.len(),
            bytes: self.names.bytes()
                + versions
                + ranges
                + bytes(&self.provides)
                + bytes(&self.deps)
                + bytes(&self.groups)
                + bytes(&self.syms)
                + bytes(&self.solvables),
        }
    }

    /// Makes room for an index of `bytes` of manifest JSON, so that the
    /// arrays never grow by copying (each copy leaves garbage the allocator
    /// keeps for a while: measured, it doubled the peak memory of loading
    /// Debian's index). Room never touched costs no memory.
    pub(crate) fn reserve_for_json(&mut self, bytes: usize) {
        // Generous per-byte estimates from Debian's index (66,506 packages
        // in 19.5 MB: ~290 bytes, 1.3 provides and 5 dependencies each).
        self.solvables.reserve(bytes / 100);
        self.provides.reserve(bytes / 60);
        self.deps.reserve(bytes / 20);
        self.groups.reserve(bytes / 25);
        self.syms.reserve(bytes / 1000);
        self.names.reserve(bytes / 100, bytes / 8);
    }
}

/// The pool's interners, shared by threads building segments.
pub(crate) struct SharedTables<'a> {
    names: Shared<'a>,
    versions: SharedParsed<'a, Version>,
    ranges: SharedParsed<'a, VersionRange>,
}

/// Candidates one thread adds from borrowed manifests, with spans relative
/// to its own arrays ([`Pool::append`] moves them into the pool).
#[derive(Default)]
pub(crate) struct Segment<'a> {
    provides: Vec<ProvideRec>,
    deps: Vec<DepRec>,
    groups: Vec<Span>,
    syms: Vec<Sym>,
    solvables: Vec<Solvable>,
    /// Names this thread met, borrowed from the text: the same few APIs
    /// (`libc6`) are needed by thousands of packages, and this small table
    /// answers without the shared one's lock.
    seen: rustc_hash::FxHashMap<&'a str, Sym>,
    /// Likewise for version and range texts.
    seen_versions: rustc_hash::FxHashMap<&'a str, VerId>,
    seen_ranges: rustc_hash::FxHashMap<&'a str, RangeId>,
}

impl<'a> Segment<'a> {
    pub(crate) fn len(&self) -> usize {
        self.solvables.len()
    }

    // A `Cow`, not a `&str`: only text borrowed for `'a` can be a key.
    #[allow(clippy::ptr_arg)]
    fn name(&mut self, t: &SharedTables, s: &std::borrow::Cow<'a, str>) -> Sym {
        match s {
            std::borrow::Cow::Borrowed(b) => {
                *self.seen.entry(b).or_insert_with(|| Sym(t.names.intern(b)))
            }
            std::borrow::Cow::Owned(o) => Sym(t.names.intern(o)),
        }
    }

    // A `Cow`, not a `&str`: only text borrowed for `'a` can be a key.
    #[allow(clippy::ptr_arg)]
    fn version(&mut self, t: &SharedTables, text: &std::borrow::Cow<'a, str>) -> VerId {
        // ManifestRef checked the text: parsing cannot fail.
        let intern = |s: &str| {
            VerId(
                t.versions
                    .intern_text(s, Version::parse)
                    .unwrap_or_default(),
            )
        };
        match text {
            std::borrow::Cow::Borrowed(b) => {
                *self.seen_versions.entry(b).or_insert_with(|| intern(b))
            }
            std::borrow::Cow::Owned(o) => intern(o),
        }
    }

    // A `Cow`, not a `&str`: only text borrowed for `'a` can be a key.
    #[allow(clippy::ptr_arg)]
    fn range(&mut self, t: &SharedTables, text: &std::borrow::Cow<'a, str>) -> RangeId {
        let intern = |s: &str| {
            RangeId(
                t.ranges
                    .intern_text(s, VersionRange::parse)
                    .unwrap_or_default(),
            )
        };
        match text {
            std::borrow::Cow::Borrowed(b) => {
                *self.seen_ranges.entry(b).or_insert_with(|| intern(b))
            }
            std::borrow::Cow::Owned(o) => intern(o),
        }
    }

    fn dep(&mut self, t: &SharedTables, d: &DependencyRef<'a>) -> DepRec {
        DepRec {
            api: self.name(t, &d.api),
            range: self.range(t, &d.range),
        }
    }

    /// Adds a candidate from a checked, borrowed manifest (no `Manifest`
    /// is built).
    pub(crate) fn add_ref(&mut self, t: &SharedTables, m: &ManifestRef<'a>, origin: u32) {
        let name = self.name(t, &m.name);
        let version = self.version(t, &m.version);
        let start = self.provides.len() as u32;
        if !m.provides_itself() {
            self.provides.push(ProvideRec {
                api: name,
                version: Some(version),
                compatible: None,
            });
        }
        for p in &m.provides {
            let rec = ProvideRec {
                api: self.name(t, &p.api),
                version: p.version.as_ref().map(|v| self.version(t, v)),
                compatible: p.compatible.as_ref().map(|v| self.version(t, v)),
            };
            self.provides.push(rec);
        }
        let provides = Span::from(start, self.provides.len());
        let groups_start = self.groups.len() as u32;
        for alternatives in m.requirements() {
            let start = self.deps.len() as u32;
            for d in alternatives {
                let dep = self.dep(t, d);
                self.deps.push(dep);
            }
            self.groups.push(Span::from(start, self.deps.len()));
        }
        let requires = Span::from(groups_start, self.groups.len());
        let start = self.deps.len() as u32;
        for d in &m.uses {
            let dep = self.dep(t, d);
            self.deps.push(dep);
        }
        let uses = Span::from(start, self.deps.len());
        let start = self.deps.len() as u32;
        for d in &m.conflicts {
            let dep = self.dep(t, d);
            self.deps.push(dep);
        }
        let conflicts = Span::from(start, self.deps.len());
        let start = self.syms.len() as u32;
        for r in &m.replaces {
            let sym = self.name(t, r);
            self.syms.push(sym);
        }
        let replaces = Span::from(start, self.syms.len());
        self.solvables.push(Solvable {
            name,
            version,
            architecture: m.architecture,
            origin,
            // Set by `Pool::append`.
            id: CandidateId(0),
            provides,
            requires,
            uses,
            conflicts,
            replaces,
        });
    }
}
