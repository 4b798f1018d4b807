//! The resolvo dependency provider: slots, version sets and the request
//! encoding described in the crate docs, over the interned [`Pool`].

use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::fmt::Display;

use exos_manifest::{Dependency, VersionRange};
use exos_version::{Architecture, Version};
use resolvo::{
    Candidates, Condition, ConditionId, ConditionalRequirement, Dependencies, DependencyProvider,
    HintDependenciesAvailable, Interner, KnownDependencies, NameId, Problem, Requirement,
    SolvableId, Solver, SolverCache, StringId, UnsolvableOrCancelled, VersionSetId,
    VersionSetUnionId,
};

use crate::plan::Plan;
use crate::pool::{DepRec, Pool, ProvideRec, RangeId, Solvable, Sym};
use crate::{Origin, Request, ResolveError, Stats, Universe};

/// Marks the id of a range only a request names (not in the pool, whose
/// ids stay far below it).
const REQUEST_RANGE: u32 = 1 << 31;

/// What a resolvo name stands for.
enum NameDef {
    /// A package name and its major version, as in the candidate `first`.
    Slot { first: SolvableId },
    /// An API with no provider at all: requirements on it fail with its name.
    Missing { api: String },
}

/// Which solvables of a slot a version set selects.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Selector {
    /// Provides the API in the range.
    Provides(DepRec),
    /// Provides something the conflict names.
    ConflictsWith(DepRec),
    /// Is the package named so (any version).
    Package(Sym),
    /// Is exactly this package release.
    Exact(Sym, Version),
    /// Nothing (the slot of an API nobody provides): shows the dependency.
    Nothing(Dependency),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct VersionSetDef {
    name: NameId,
    selector: Selector,
    /// Selects the complement (for conflicts and removals).
    negate: bool,
}

/// Lists keyed by a dense index (a name, a slot), stored as one array
/// with offsets: no allocation per key, no hashing to find a list.
struct Lists<T> {
    start: Vec<u32>,
    items: Vec<T>,
}

impl<T: Copy> Lists<T> {
    /// Groups `pairs` (key, item) by key; `keys` is one more than the
    /// largest key.
    fn build(keys: usize, pairs: &[(u32, T)]) -> Lists<T> {
        let mut start = vec![0u32; keys + 1];
        for &(k, _) in pairs {
            start[k as usize + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut fill = start.clone();
        // Every slot is overwritten below; this only sizes the array.
        let mut items: Vec<T> = pairs.iter().map(|&(_, item)| item).collect();
        for &(k, item) in pairs {
            items[fill[k as usize] as usize] = item;
            fill[k as usize] += 1;
        }
        Lists { start, items }
    }

    fn get(&self, key: u32) -> &[T] {
        match (
            self.start.get(key as usize),
            self.start.get(key as usize + 1),
        ) {
            (Some(&a), Some(&b)) => &self.items[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Removes adjacent repeats inside each list.
    fn dedup(&mut self)
    where
        T: PartialEq,
    {
        let mut write = 0usize;
        let mut list_start = 0usize;
        for key in 0..self.start.len() - 1 {
            let end = self.start[key + 1] as usize;
            let new_start = write;
            for i in list_start..end {
                if write == new_start || self.items[write - 1] != self.items[i] {
                    self.items[write] = self.items[i];
                    write += 1;
                }
            }
            self.start[key] = new_start as u32;
            list_start = end;
        }
        *self.start.last_mut().expect("one more start than keys") = write as u32;
        self.items.truncate(write);
    }

    /// Applies `f` to every list, in place.
    fn for_each_mut(&mut self, mut f: impl FnMut(&mut [T])) {
        for w in 0..self.start.len() - 1 {
            let (a, b) = (self.start[w] as usize, self.start[w + 1] as usize);
            if b - a > 1 {
                f(&mut self.items[a..b]);
            }
        }
    }
}

pub(crate) struct Provider<'u> {
    pool: &'u Pool,
    /// Ranges a request names that no candidate does, numbered after the
    /// pool's.
    request_ranges: Vec<VersionRange>,
    names: Vec<NameDef>,
    /// Candidates of each slot name, newest first.
    slot_candidates: Lists<SolvableId>,
    slot_of: Vec<NameId>,
    /// Slots by package name, newest first.
    slots_by_package: Lists<NameId>,
    /// Slots whose candidates provide an API, newest first.
    slots_by_api: Lists<NameId>,
    missing_names: RefCell<HashMap<String, NameId>>,
    extra_names: RefCell<Vec<NameDef>>,
    version_sets: RefCell<Vec<VersionSetDef>>,
    version_set_ids: RefCell<HashMap<VersionSetDef, VersionSetId>>,
    unions: RefCell<Vec<Vec<VersionSetId>>>,
    strings: RefCell<Vec<String>>,
    /// Installed solvables stay favoured (kept at their version).
    favour_installed: bool,
    /// Packages being upgraded: their installed release is not favoured.
    upgrading: Vec<Sym>,
    host_arch: Architecture,
}

impl<'u> Provider<'u> {
    fn new(universe: &'u Universe, favour_installed: bool, upgrading: &[String]) -> Self {
        let pool = &universe.pool;
        let n = pool.solvables.len();
        // Slots: (package, major), numbered in order of first appearance.
        let mut names = Vec::new();
        let mut slot_ids: HashMap<(Sym, &str), NameId> = HashMap::default();
        slot_ids.reserve(n);
        let mut slot_of = Vec::with_capacity(n);
        for (i, s) in pool.solvables.iter().enumerate() {
            // Version components are lower-cased by the parser.
            let key = (s.name, pool.version(s.version).major.as_str());
            let name = *slot_ids.entry(key).or_insert_with(|| {
                names.push(NameDef::Slot {
                    first: SolvableId::from_raw(i as u32),
                });
                NameId::from_raw(names.len() as u32 - 1)
            });
            slot_of.push(name);
        }
        drop(slot_ids);
        let pairs: Vec<(u32, SolvableId)> = slot_of
            .iter()
            .enumerate()
            .map(|(i, slot)| (slot.into_raw(), SolvableId::from_raw(i as u32)))
            .collect();
        let mut slot_candidates = Lists::build(names.len(), &pairs);
        slot_candidates.for_each_mut(|list| list.sort_by(|a, b| newest_first(pool, *a, *b)));
        let first_of = |slot: NameId| match names[slot.into_raw() as usize] {
            NameDef::Slot { first } => pool.solvables[first.into_raw() as usize].name,
            NameDef::Missing { .. } => unreachable!("slots only"),
        };
        let pairs: Vec<(u32, NameId)> = (0..names.len() as u32)
            .map(|slot| {
                let slot = NameId::from_raw(slot);
                (first_of(slot).0, slot)
            })
            .collect();
        let name_count = pool.name_bound();
        let mut slots_by_package = Lists::build(name_count, &pairs);
        let mut pairs: Vec<(u32, NameId)> = Vec::with_capacity(n + n / 2);
        for (i, s) in pool.solvables.iter().enumerate() {
            pairs.extend(pool.provides(s).iter().map(|p| (p.api.0, slot_of[i])));
        }
        let mut slots_by_api = Lists::build(name_count, &pairs);
        drop(pairs);
        // Prefer newer slots when a requirement can be met by several.
        let newest_in = |slot: &NameId| slot_candidates.get(slot.into_raw())[0];
        let by_newest = |list: &mut [NameId]| {
            list.sort_by(|a, b| {
                newest_first(pool, newest_in(a), newest_in(b)).then(a.into_raw().cmp(&b.into_raw()))
            })
        };
        slots_by_package.for_each_mut(by_newest);
        slots_by_api.for_each_mut(by_newest);
        // A slot with several candidates providing the API appears once.
        slots_by_api.dedup();
        Provider {
            pool,
            request_ranges: Vec::new(),
            names,
            slot_candidates,
            slot_of,
            slots_by_package,
            slots_by_api,
            missing_names: RefCell::default(),
            extra_names: RefCell::default(),
            version_sets: RefCell::default(),
            version_set_ids: RefCell::default(),
            unions: RefCell::default(),
            strings: RefCell::default(),
            favour_installed,
            upgrading: upgrading.iter().filter_map(|n| pool.find_name(n)).collect(),
            host_arch: Architecture::host(),
        }
    }

    fn solvable(&self, s: SolvableId) -> &'u Solvable {
        &self.pool.solvables[s.into_raw() as usize]
    }

    fn name_of(&self, s: SolvableId) -> &'u str {
        self.pool.name(self.solvable(s).name)
    }

    fn version_of(&self, s: SolvableId) -> &'u Version {
        self.pool.version(self.solvable(s).version)
    }

    fn is_installed(&self, s: SolvableId) -> bool {
        matches!(self.pool.origin(self.solvable(s)), Origin::Installed { .. })
    }

    fn range(&self, r: RangeId) -> &VersionRange {
        if r.0 & REQUEST_RANGE != 0 {
            &self.request_ranges[(r.0 & !REQUEST_RANGE) as usize]
        } else {
            self.pool.range(r)
        }
    }

    fn meets(&self, dep: DepRec, p: &ProvideRec) -> bool {
        p.api == dep.api
            && self.range(dep.range).matches(
                p.version.map(|v| self.pool.version(v)),
                p.compatible.map(|v| self.pool.version(v)),
            )
    }

    fn conflicts_with(&self, dep: DepRec, p: &ProvideRec) -> bool {
        p.api == dep.api
            && (self.range(dep.range).is_any() || (p.version.is_some() && self.meets(dep, p)))
    }

    fn dep_text(&self, dep: DepRec) -> String {
        Dependency {
            api: self.pool.name(dep.api).to_string(),
            range: self.range(dep.range).clone(),
        }
        .to_string()
    }

    /// A request's dependency in the pool's terms; `None` when no candidate
    /// mentions its API (so none provides it).
    fn request_dep(&mut self, d: &Dependency) -> Option<DepRec> {
        let api = self.pool.find_name(&d.api)?;
        let range = match self.pool.find_range(&d.range) {
            Some(r) => r,
            None => {
                self.request_ranges.push(d.range.clone());
                RangeId(REQUEST_RANGE | (self.request_ranges.len() - 1) as u32)
            }
        };
        Some(DepRec { api, range })
    }

    fn with_name<R>(&self, name: NameId, f: impl FnOnce(&NameDef) -> R) -> R {
        let i = name.into_raw() as usize;
        match self.names.get(i) {
            Some(def) => f(def),
            None => f(&self.extra_names.borrow()[i - self.names.len()]),
        }
    }

    fn version_set(&self, def: VersionSetDef) -> VersionSetId {
        if let Some(&id) = self.version_set_ids.borrow().get(&def) {
            return id;
        }
        let mut sets = self.version_sets.borrow_mut();
        let id = VersionSetId(sets.len() as u32);
        sets.push(def.clone());
        self.version_set_ids.borrow_mut().insert(def, id);
        id
    }

    fn missing_name(&self, api: &str) -> NameId {
        if let Some(&id) = self.missing_names.borrow().get(api) {
            return id;
        }
        let mut extra = self.extra_names.borrow_mut();
        let id = NameId::from_raw((self.names.len() + extra.len()) as u32);
        extra.push(NameDef::Missing {
            api: api.to_string(),
        });
        self.missing_names.borrow_mut().insert(api.to_string(), id);
        id
    }

    fn intern_string(&self, s: String) -> StringId {
        let mut strings = self.strings.borrow_mut();
        strings.push(s);
        StringId(strings.len() as u32 - 1)
    }

    /// "Any of these dependencies", as one resolvo requirement.
    fn requirement(&self, alternatives: &[DepRec]) -> Requirement {
        let mut sets = Vec::new();
        for &dep in alternatives {
            for &slot in self.slots_by_api.get(dep.api.0) {
                sets.push(self.version_set(VersionSetDef {
                    name: slot,
                    selector: Selector::Provides(dep),
                    negate: false,
                }));
            }
        }
        if sets.is_empty() {
            // Nobody provides any alternative: name the first so the
            // explanation says what is missing.
            let dep = alternatives[0];
            return self.nothing(Dependency {
                api: self.pool.name(dep.api).to_string(),
                range: self.range(dep.range).clone(),
            });
        }
        self.union(sets)
    }

    /// A requirement no candidate can meet, naming `dep`.
    fn nothing(&self, dep: Dependency) -> Requirement {
        let name = self.missing_name(&dep.api);
        Requirement::Single(self.version_set(VersionSetDef {
            name,
            selector: Selector::Nothing(dep),
            negate: false,
        }))
    }

    fn union(&self, sets: Vec<VersionSetId>) -> Requirement {
        if sets.len() == 1 {
            return Requirement::Single(sets[0]);
        }
        let mut unions = self.unions.borrow_mut();
        unions.push(sets);
        Requirement::Union(VersionSetUnionId(unions.len() as u32 - 1))
    }

    /// "Package `name` (any version, in any slot or only the newest)".
    fn package_requirement(&self, name: Sym, newest_only: bool) -> Option<Requirement> {
        let slots = self.slots_by_package.get(name.0);
        if slots.is_empty() {
            return None;
        }
        let slots = if newest_only { &slots[..1] } else { slots };
        let sets = slots
            .iter()
            .map(|&slot| {
                self.version_set(VersionSetDef {
                    name: slot,
                    selector: Selector::Package(name),
                    negate: false,
                })
            })
            .collect();
        Some(self.union(sets))
    }

    /// "Exactly release `version` of package `name`", in whichever slot
    /// holds it.
    fn exact_requirement(
        &self,
        name: &str,
        version: &Version,
    ) -> Result<Requirement, ResolveError> {
        let slots = self
            .pool
            .find_name(name)
            .map(|n| (n, self.slots_by_package.get(n.0)))
            .filter(|(_, slots)| !slots.is_empty());
        let Some((name, slots)) = slots else {
            return Err(ResolveError::BadRequest(format!(
                "{name} {version} is not among the candidates"
            )));
        };
        let sets = slots
            .iter()
            .map(|&slot| {
                self.version_set(VersionSetDef {
                    name: slot,
                    selector: Selector::Exact(name, version.clone()),
                    negate: false,
                })
            })
            .collect();
        Ok(self.union(sets))
    }

    /// Constraints forbidding package `name` in every slot except `own`.
    fn forbid_package(&self, name: Sym, own: Option<NameId>, out: &mut Vec<VersionSetId>) {
        for &slot in self.slots_by_package.get(name.0) {
            if Some(slot) != own {
                out.push(self.version_set(VersionSetDef {
                    name: slot,
                    selector: Selector::Package(name),
                    negate: true,
                }));
            }
        }
    }

    fn selects(&self, s: SolvableId, def: &VersionSetDef) -> bool {
        let solvable = self.solvable(s);
        let provides = || self.pool.provides(solvable).iter();
        let hit = match &def.selector {
            Selector::Provides(dep) => provides().any(|p| self.meets(*dep, p)),
            Selector::ConflictsWith(dep) => provides().any(|p| self.conflicts_with(*dep, p)),
            Selector::Package(name) => solvable.name == *name,
            Selector::Exact(name, version) => {
                solvable.name == *name && self.version_of(s).compare(version).is_eq()
            }
            Selector::Nothing(_) => false,
        };
        hit != def.negate
    }

    fn arch_mismatch(&self, s: &Solvable) -> Option<String> {
        match s.architecture {
            Architecture::Any => None,
            a if a == self.host_arch => None,
            a => Some(format!("built for {a}, this machine is {}", self.host_arch)),
        }
    }
}

/// Newer versions first; between equal versions, the installed copy.
fn newest_first(pool: &Pool, a: SolvableId, b: SolvableId) -> std::cmp::Ordering {
    let (a, b) = (
        &pool.solvables[a.into_raw() as usize],
        &pool.solvables[b.into_raw() as usize],
    );
    let installed = |s: &Solvable| matches!(pool.origin(s), Origin::Installed { .. });
    pool.version(b.version)
        .compare(pool.version(a.version))
        .then_with(|| installed(b).cmp(&installed(a)))
}

impl Interner for Provider<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, solvable: SolvableId) -> impl Display + '_ {
        format!("{} {}", self.name_of(solvable), self.version_of(solvable))
    }

    fn display_merged_solvables(&self, solvables: &[SolvableId]) -> impl Display + '_ {
        let Some(&first) = solvables.first() else {
            return String::new();
        };
        let versions: Vec<String> = solvables
            .iter()
            .map(|&s| self.version_of(s).to_string())
            .collect();
        format!("{} {}", self.name_of(first), versions.join(" | "))
    }

    fn display_name(&self, name: NameId) -> impl Display + '_ {
        self.with_name(name, |def| match def {
            NameDef::Slot { first } => {
                let s = self.solvable(*first);
                let package = self.pool.name(s.name);
                if self.slots_by_package.get(s.name.0).len() > 1 {
                    format!("{package} (major {})", self.pool.version(s.version).major)
                } else {
                    package.to_string()
                }
            }
            NameDef::Missing { api } => api.clone(),
        })
    }

    fn display_version_set(&self, version_set: VersionSetId) -> impl Display + '_ {
        let def = self.version_sets.borrow()[version_set.0 as usize].clone();
        let slot_package = self.with_name(def.name, |d| match d {
            NameDef::Slot { first } => Some(self.solvable(*first).name),
            NameDef::Missing { .. } => None,
        });
        let text = match &def.selector {
            Selector::Provides(dep) if Some(dep.api) == slot_package => {
                self.range(dep.range).to_string()
            }
            Selector::Provides(dep) | Selector::ConflictsWith(dep) => {
                format!("(providing {})", self.dep_text(*dep))
            }
            Selector::Nothing(dep) => dep.range.to_string(),
            Selector::Package(_) => "*".to_string(),
            Selector::Exact(_, version) => format!("={version}"),
        };
        if def.negate {
            format!("not {text}")
        } else {
            text
        }
    }

    fn display_string(&self, string_id: StringId) -> impl Display + '_ {
        self.strings.borrow()[string_id.0 as usize].clone()
    }

    fn version_set_name(&self, version_set: VersionSetId) -> NameId {
        self.version_sets.borrow()[version_set.0 as usize].name
    }

    fn solvable_name(&self, solvable: SolvableId) -> NameId {
        self.slot_of[solvable.into_raw() as usize]
    }

    fn version_sets_in_union(
        &self,
        version_set_union: VersionSetUnionId,
    ) -> impl Iterator<Item = VersionSetId> {
        self.unions.borrow()[version_set_union.0 as usize]
            .clone()
            .into_iter()
    }

    fn resolve_condition(&self, _condition: ConditionId) -> Condition {
        unreachable!("the EXOS provider never creates conditional requirements")
    }
}

impl DependencyProvider for Provider<'_> {
    async fn filter_candidates(
        &self,
        candidates: &[SolvableId],
        version_set: VersionSetId,
        inverse: bool,
    ) -> Vec<SolvableId> {
        let def = self.version_sets.borrow()[version_set.0 as usize].clone();
        candidates
            .iter()
            .copied()
            .filter(|&s| self.selects(s, &def) != inverse)
            .collect()
    }

    async fn get_candidates(&self, name: NameId) -> Option<Candidates<SolvableId>> {
        if name.into_raw() as usize >= self.names.len() {
            return None;
        }
        let list = self.slot_candidates.get(name.into_raw());
        let mut candidates = Vec::with_capacity(list.len());
        let mut excluded = Vec::new();
        let mut favored = None;
        for &s in list {
            let solvable = self.solvable(s);
            let installed = self.is_installed(s);
            if installed && self.favour_installed && !self.upgrading.contains(&solvable.name) {
                favored = Some(s);
            }
            // Excluded candidates stay listed so explanations can name them.
            if let Some(why) = self.arch_mismatch(solvable).filter(|_| !installed) {
                excluded.push((s, self.intern_string(why)));
            }
            candidates.push(s);
        }
        Some(Candidates {
            candidates,
            favored,
            locked: None,
            hint_dependencies_available: HintDependenciesAvailable::None,
            excluded,
            allow_multiple: false,
        })
    }

    async fn sort_candidates(&self, _solver: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        solvables.sort_by(|a, b| newest_first(self.pool, *a, *b));
    }

    async fn get_dependencies(&self, solvable: SolvableId) -> Dependencies {
        let s = self.solvable(solvable);
        let own = self.slot_of[solvable.into_raw() as usize];
        let mut requirements: Vec<ConditionalRequirement> = Vec::new();
        for alternatives in self.pool.requires(s) {
            requirements.push(self.requirement(alternatives).into());
        }
        for &u in self.pool.uses(s) {
            requirements.push(self.requirement(&[u]).into());
        }
        let mut constrains = Vec::new();
        for &c in self.pool.conflicts(s) {
            for &slot in self.slots_by_api.get(c.api.0) {
                if slot != own {
                    constrains.push(self.version_set(VersionSetDef {
                        name: slot,
                        selector: Selector::ConflictsWith(c),
                        negate: true,
                    }));
                }
            }
        }
        for &r in self.pool.replaces(s) {
            self.forbid_package(r, Some(own), &mut constrains);
        }
        Dependencies::Known(KnownDependencies {
            requirements,
            constrains,
        })
    }
}

pub(crate) fn solve(universe: &Universe, request: &Request) -> Result<(Plan, Stats), ResolveError> {
    let started = std::time::Instant::now();
    // An upgrade first aims at each package's newest major; when that does
    // not fit, at the newest release of any major.
    let result = match request {
        Request::Upgrade(_) => solve_once(universe, request, true, Keep::WhatItCan)
            .or_else(|_| solve_once(universe, request, false, Keep::WhatItCan)),
        // Installing exact releases or removing changes only what it must:
        // first try keeping every installed package. resolvo tries soft
        // requirements one at a time, each a pass over all its decisions,
        // so keeping 10,000 installed packages softly was quadratic (most
        // of an install's time in such a root); as requirements they are
        // one pass. When that cannot be (the change needs an installed
        // package upgraded or removed), the installed ones are kept softly,
        // as much as they can be. A request by name or API is not tried so:
        // kept pinned, an older release of what was asked for could be
        // chosen where the newest needs an upgrade.
        Request::InstallExact(_) | Request::Remove(_) => {
            solve_once(universe, request, false, Keep::All)
                .or_else(|_| solve_once(universe, request, false, Keep::WhatItCan))
        }
        _ => solve_once(universe, request, false, Keep::WhatItCan),
    };
    let chosen = result?;
    let stats = Stats {
        candidates: universe.len(),
        solve_seconds: started.elapsed().as_secs_f64(),
    };
    Ok((Plan::new(universe, request, &chosen), stats))
}

/// How a solve keeps the installed packages the request leaves alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// All of them, as requirements: no solution when one must change.
    All,
    /// As many as can be, as soft requirements.
    WhatItCan,
}

fn solve_once(
    universe: &Universe,
    request: &Request,
    newest_major: bool,
    keep: Keep,
) -> Result<Vec<usize>, ResolveError> {
    let favour_installed = !matches!(request, Request::Upgrade(names) if names.is_empty());
    let upgrading = match request {
        Request::Upgrade(names) => names.as_slice(),
        _ => &[],
    };
    let mut provider = Provider::new(universe, favour_installed, upgrading);
    let mut goals = Goals::for_request(&mut provider, request, newest_major)?;
    if keep == Keep::All {
        goals.require_installed(&provider);
    }
    goals.keep_soft_slots_reachable(&provider);
    let problem = Problem::new()
        .requirements(goals.requirements)
        .constraints(goals.constraints)
        .soft_requirements(goals.soft);
    let mut solver = Solver::new(provider);
    let solution = match solver.solve(problem) {
        Ok(s) => s,
        Err(UnsolvableOrCancelled::Unsolvable(conflict)) => {
            return Err(ResolveError::Unsatisfiable(
                conflict.display_user_friendly(&solver).to_string(),
            ))
        }
        Err(UnsolvableOrCancelled::Cancelled(_)) => {
            return Err(ResolveError::BadRequest("resolution was cancelled".into()))
        }
    };
    Ok(solution.iter().map(|s| s.into_raw() as usize).collect())
}

/// What a request asks of the solver: hard requirements, constraints (what
/// must not be installed) and soft requirements (what stays if it can).
struct Goals {
    requirements: Vec<ConditionalRequirement>,
    constraints: Vec<VersionSetId>,
    soft: Vec<SolvableId>,
}

impl Goals {
    fn for_request(
        provider: &mut Provider,
        request: &Request,
        newest_major: bool,
    ) -> Result<Self, ResolveError> {
        let pool = provider.pool;
        let installed: Vec<SolvableId> = (0..pool.solvables.len())
            .map(|i| SolvableId::from_raw(i as u32))
            .filter(|&s| provider.is_installed(s))
            .collect();
        let mut goals = Goals {
            requirements: Vec::new(),
            constraints: Vec::new(),
            soft: installed.clone(),
        };
        // Names of installed packages, each checked to be one.
        let installed_names = |names: &[String], verb: &str| -> Result<Vec<Sym>, ResolveError> {
            names
                .iter()
                .map(|n| {
                    pool.find_name(n)
                        .filter(|&sym| {
                            installed
                                .iter()
                                .any(|&s| pool.solvables[s.into_raw() as usize].name == sym)
                        })
                        .ok_or_else(|| {
                            ResolveError::BadRequest(format!(
                                "{n} is not installed, so it cannot be {verb}"
                            ))
                        })
                })
                .collect()
        };
        match request {
            Request::Install(deps) => {
                for d in deps {
                    let r = match provider.request_dep(d) {
                        Some(dep) => provider.requirement(&[dep]),
                        None => provider.nothing(d.clone()),
                    };
                    goals.requirements.push(r.into());
                }
            }
            Request::InstallExact(releases) => {
                for (name, version) in releases {
                    let r = provider.exact_requirement(name, version)?;
                    goals.requirements.push(r.into());
                }
            }
            Request::Remove(names) => {
                let syms = installed_names(names, "removed")?;
                for &n in &syms {
                    provider.forbid_package(n, None, &mut goals.constraints);
                }
                goals
                    .soft
                    .retain(|&s| !syms.contains(&provider.solvable(s).name));
            }
            Request::Upgrade(names) => {
                let targets: Vec<Sym> = if names.is_empty() {
                    let mut all: Vec<Sym> = installed
                        .iter()
                        .map(|&s| provider.solvable(s).name)
                        .collect();
                    all.sort_unstable();
                    all.dedup();
                    all
                } else {
                    installed_names(names, "upgraded")?
                };
                for &name in &targets {
                    if let Some(r) = provider.package_requirement(name, newest_major) {
                        goals.requirements.push(r.into());
                    }
                }
                // The upgraded packages are not pinned to their current version.
                goals
                    .soft
                    .retain(|&s| !targets.contains(&provider.solvable(s).name));
            }
        }
        // Host APIs are always present.
        for (i, s) in pool.solvables.iter().enumerate() {
            if *pool.origin(s) == Origin::Host {
                goals.soft.push(SolvableId::from_raw(i as u32));
            }
        }
        Ok(goals)
    }

    /// Makes every installed package still soft (those the request does
    /// not change) a requirement: exactly that release, in its slot.
    fn require_installed(&mut self, provider: &Provider) {
        let (installed, host): (Vec<SolvableId>, Vec<SolvableId>) =
            self.soft.iter().partition(|&&s| provider.is_installed(s));
        for s in installed {
            let solvable = provider.solvable(s);
            let exact = provider.version_set(VersionSetDef {
                name: provider.slot_of[s.into_raw() as usize],
                selector: Selector::Exact(solvable.name, provider.version_of(s).clone()),
                negate: false,
            });
            self.requirements.push(Requirement::Single(exact).into());
        }
        // Host APIs stay soft: always there, nothing to pin.
        self.soft = host;
    }

    /// resolvo only adds its one-per-name clauses for candidates reachable
    /// from a requirement, and soft requirements are not requirements: an
    /// installed release could end up chosen beside a newer one of its slot.
    /// So every slot holding a soft candidate is made reachable by a
    /// requirement that the always-installed anchor satisfies.
    fn keep_soft_slots_reachable(&mut self, provider: &Provider) {
        let anchor = provider
            .pool
            .find_name(crate::ANCHOR)
            .and_then(|a| provider.package_requirement(a, false))
            .expect("the universe has an anchor");
        self.requirements.push(anchor.into());
        let mut keep_slots: Vec<NameId> = self
            .soft
            .iter()
            .map(|&s| provider.slot_of[s.into_raw() as usize])
            .collect();
        keep_slots.sort_unstable_by_key(|n| n.into_raw());
        keep_slots.dedup();
        let anchor_set = match anchor {
            Requirement::Single(vs) => vs,
            Requirement::Union(_) => unreachable!("the anchor has one slot"),
        };
        for slot in keep_slots {
            let NameDef::Slot { first } = provider.with_name(slot, |d| match d {
                NameDef::Slot { first } => NameDef::Slot { first: *first },
                NameDef::Missing { api } => NameDef::Missing { api: api.clone() },
            }) else {
                continue;
            };
            let any = provider.version_set(VersionSetDef {
                name: slot,
                selector: Selector::Package(provider.solvable(first).name),
                negate: false,
            });
            self.requirements
                .push(provider.union(vec![anchor_set, any]).into());
        }
    }
}
