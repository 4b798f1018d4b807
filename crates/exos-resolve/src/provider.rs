//! The resolvo dependency provider: slots, version sets and the request
//! encoding described in the crate docs.

use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::fmt::Display;

use exos_hpkg::{Architecture, Version};
use exos_manifest::{Dependency, Manifest};
use resolvo::{
    Candidates, Condition, ConditionId, ConditionalRequirement, Dependencies, DependencyProvider,
    HintDependenciesAvailable, Interner, KnownDependencies, NameId, Problem, Requirement,
    SolvableId, Solver, SolverCache, StringId, UnsolvableOrCancelled, VersionSetId,
    VersionSetUnionId,
};

use crate::plan::Plan;
use crate::{Origin, Request, ResolveError, Stats, Universe};

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
    /// Provides `dep.api` in `dep.range`.
    Provides(Dependency),
    /// Provides something the conflict `dep` names.
    ConflictsWith(Dependency),
    /// Is the package named so (any version).
    Package(String),
    /// Is exactly this package release.
    Exact(String, Version),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct VersionSetDef {
    name: NameId,
    selector: Selector,
    /// Selects the complement (for conflicts and removals).
    negate: bool,
}

pub(crate) struct Provider<'u> {
    universe: &'u Universe,
    names: Vec<NameDef>,
    /// Candidates of each slot name, newest first.
    slot_candidates: Vec<Vec<SolvableId>>,
    slot_of: Vec<NameId>,
    /// Slots (names) by package name.
    slots_by_package: HashMap<&'u str, Vec<NameId>>,
    /// Slots whose candidates provide an API.
    slots_by_api: HashMap<&'u str, Vec<NameId>>,
    missing_names: RefCell<HashMap<String, NameId>>,
    extra_names: RefCell<Vec<NameDef>>,
    version_sets: RefCell<Vec<VersionSetDef>>,
    version_set_ids: RefCell<HashMap<VersionSetDef, VersionSetId>>,
    unions: RefCell<Vec<Vec<VersionSetId>>>,
    strings: RefCell<Vec<String>>,
    /// Installed solvables stay favoured (kept at their version).
    favour_installed: bool,
    /// Packages being upgraded: their installed release is not favoured.
    upgrading: Vec<String>,
    host_arch: Architecture,
}

impl<'u> Provider<'u> {
    fn new(universe: &'u Universe, favour_installed: bool, upgrading: Vec<String>) -> Self {
        let mut names = Vec::new();
        let n = universe.candidates.len();
        let mut slot_ids: HashMap<(&str, &str), NameId> = HashMap::default();
        slot_ids.reserve(n);
        let mut slot_candidates: Vec<Vec<SolvableId>> = Vec::new();
        let mut slot_of = Vec::with_capacity(universe.candidates.len());
        let mut slots_by_package: HashMap<&str, Vec<NameId>> = HashMap::default();
        slots_by_package.reserve(n);
        let mut slots_by_api: HashMap<&str, Vec<NameId>> = HashMap::default();
        slots_by_api.reserve(n + n / 2);
        for (i, c) in universe.candidates.iter().enumerate() {
            let m = &c.manifest;
            // Version components are lower-cased by the parser.
            let key = (m.name.as_str(), m.version.major.as_str());
            let name = *slot_ids.entry(key).or_insert_with(|| {
                let id = NameId::from_raw(names.len() as u32);
                names.push(NameDef::Slot {
                    first: SolvableId::from_raw(i as u32),
                });
                slot_candidates.push(Vec::new());
                slots_by_package
                    .entry(m.name.as_str())
                    .or_default()
                    .push(id);
                id
            });
            slot_candidates[name.into_raw() as usize].push(SolvableId::from_raw(i as u32));
            slot_of.push(name);
            for p in &m.provides {
                let slots = slots_by_api.entry(p.api.as_str()).or_default();
                if !slots.contains(&name) {
                    slots.push(name);
                }
            }
        }
        let cands = &universe.candidates;
        let newest_first = |a: &SolvableId, b: &SolvableId| {
            let (a, b) = (&cands[a.into_raw() as usize], &cands[b.into_raw() as usize]);
            b.manifest
                .version
                .compare(&a.manifest.version)
                .then_with(|| b.is_installed().cmp(&a.is_installed()))
        };
        for list in &mut slot_candidates {
            list.sort_by(newest_first);
        }
        // Prefer newer slots when a requirement can be met by several.
        let newest_in = |slot: &NameId, slot_candidates: &Vec<Vec<SolvableId>>| {
            slot_candidates[slot.into_raw() as usize][0]
        };
        for slots in slots_by_api
            .values_mut()
            .chain(slots_by_package.values_mut())
        {
            if slots.len() < 2 {
                continue;
            }
            slots.sort_by(|a, b| {
                newest_first(
                    &newest_in(a, &slot_candidates),
                    &newest_in(b, &slot_candidates),
                )
            });
        }
        Provider {
            universe,
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
            upgrading,
            host_arch: Architecture::host(),
        }
    }

    fn manifest(&self, s: SolvableId) -> &'u Manifest {
        &self.universe.candidates[s.into_raw() as usize].manifest
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
    fn requirement(&self, alternatives: &[Dependency]) -> Requirement {
        let mut sets = Vec::new();
        for dep in alternatives {
            for &slot in self
                .slots_by_api
                .get(dep.api.as_str())
                .into_iter()
                .flatten()
            {
                sets.push(self.version_set(VersionSetDef {
                    name: slot,
                    selector: Selector::Provides(dep.clone()),
                    negate: false,
                }));
            }
        }
        if sets.is_empty() {
            // Nobody provides any alternative: name the first so the
            // explanation says what is missing.
            let dep = &alternatives[0];
            sets.push(self.version_set(VersionSetDef {
                name: self.missing_name(&dep.api),
                selector: Selector::Provides(dep.clone()),
                negate: false,
            }));
        }
        self.union(sets)
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
    fn package_requirement(&self, name: &str, newest_only: bool) -> Option<Requirement> {
        let slots = self.slots_by_package.get(name)?;
        let slots = if newest_only { &slots[..1] } else { &slots[..] };
        let sets = slots
            .iter()
            .map(|&slot| {
                self.version_set(VersionSetDef {
                    name: slot,
                    selector: Selector::Package(name.to_string()),
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
            .slots_by_package
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if slots.is_empty() {
            return Err(ResolveError::BadRequest(format!(
                "{name} {version} is not among the candidates"
            )));
        }
        let sets = slots
            .iter()
            .map(|&slot| {
                self.version_set(VersionSetDef {
                    name: slot,
                    selector: Selector::Exact(name.to_string(), version.clone()),
                    negate: false,
                })
            })
            .collect();
        Ok(self.union(sets))
    }

    /// Constraints forbidding package `name` in every slot except `own`.
    fn forbid_package(&self, name: &str, own: Option<NameId>, out: &mut Vec<VersionSetId>) {
        for &slot in self.slots_by_package.get(name).into_iter().flatten() {
            if Some(slot) != own {
                out.push(self.version_set(VersionSetDef {
                    name: slot,
                    selector: Selector::Package(name.to_string()),
                    negate: true,
                }));
            }
        }
    }

    fn selects(&self, s: SolvableId, def: &VersionSetDef) -> bool {
        let m = self.manifest(s);
        let hit = match &def.selector {
            Selector::Provides(dep) => m.provides.iter().any(|p| dep.is_met_by(p)),
            Selector::ConflictsWith(dep) => m.provides.iter().any(|p| dep.conflicts_with(p)),
            Selector::Package(name) => &m.name == name,
            Selector::Exact(name, version) => &m.name == name && m.version.compare(version).is_eq(),
        };
        hit != def.negate
    }

    fn arch_mismatch(&self, m: &Manifest) -> Option<String> {
        match m.architecture {
            Architecture::Any => None,
            a if a == self.host_arch => None,
            a => Some(format!("built for {a}, this machine is {}", self.host_arch)),
        }
    }
}

impl Interner for Provider<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, solvable: SolvableId) -> impl Display + '_ {
        let m = self.manifest(solvable);
        format!("{} {}", m.name, m.version)
    }

    fn display_merged_solvables(&self, solvables: &[SolvableId]) -> impl Display + '_ {
        let Some(&first) = solvables.first() else {
            return String::new();
        };
        let versions: Vec<String> = solvables
            .iter()
            .map(|&s| self.manifest(s).version.to_string())
            .collect();
        format!("{} {}", self.manifest(first).name, versions.join(" | "))
    }

    fn display_name(&self, name: NameId) -> impl Display + '_ {
        self.with_name(name, |def| match def {
            NameDef::Slot { first } => {
                let m = self.manifest(*first);
                if self
                    .slots_by_package
                    .get(m.name.as_str())
                    .map_or(0, Vec::len)
                    > 1
                {
                    format!("{} (major {})", m.name, m.version.major)
                } else {
                    m.name.clone()
                }
            }
            NameDef::Missing { api } => api.clone(),
        })
    }

    fn display_version_set(&self, version_set: VersionSetId) -> impl Display + '_ {
        let def = self.version_sets.borrow()[version_set.0 as usize].clone();
        let slot_package = self.with_name(def.name, |d| match d {
            NameDef::Slot { first } => Some(self.manifest(*first).name.clone()),
            NameDef::Missing { .. } => None,
        });
        let text = match &def.selector {
            Selector::Provides(dep)
                if Some(&dep.api) == slot_package.as_ref() || slot_package.is_none() =>
            {
                dep.range.to_string()
            }
            Selector::Provides(dep) | Selector::ConflictsWith(dep) => format!("(providing {dep})"),
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
        let list = self.slot_candidates.get(name.into_raw() as usize)?;
        let mut candidates = Vec::with_capacity(list.len());
        let mut excluded = Vec::new();
        let mut favored = None;
        for &s in list {
            let c = &self.universe.candidates[s.into_raw() as usize];
            if c.is_installed()
                && self.favour_installed
                && !self.upgrading.contains(&c.manifest.name)
            {
                favored = Some(s);
            }
            // Excluded candidates stay listed so explanations can name them.
            if let Some(why) = self
                .arch_mismatch(&c.manifest)
                .filter(|_| !c.is_installed())
            {
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
        let cands = &self.universe.candidates;
        solvables.sort_by(|a, b| {
            let (a, b) = (&cands[a.into_raw() as usize], &cands[b.into_raw() as usize]);
            b.manifest
                .version
                .compare(&a.manifest.version)
                .then_with(|| b.is_installed().cmp(&a.is_installed()))
        });
    }

    async fn get_dependencies(&self, solvable: SolvableId) -> Dependencies {
        let m = self.manifest(solvable);
        let own = self.slot_of[solvable.into_raw() as usize];
        let mut requirements: Vec<ConditionalRequirement> = Vec::new();
        for r in &m.requires {
            requirements.push(self.requirement(&r.alternatives).into());
        }
        for u in &m.uses {
            requirements.push(self.requirement(std::slice::from_ref(u)).into());
        }
        let mut constrains = Vec::new();
        for c in &m.conflicts {
            for &slot in self.slots_by_api.get(c.api.as_str()).into_iter().flatten() {
                if slot != own {
                    constrains.push(self.version_set(VersionSetDef {
                        name: slot,
                        selector: Selector::ConflictsWith(c.clone()),
                        negate: true,
                    }));
                }
            }
        }
        for r in &m.replaces {
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
        Request::Upgrade(_) => {
            solve_once(universe, request, true).or_else(|_| solve_once(universe, request, false))
        }
        _ => solve_once(universe, request, false),
    };
    let chosen = result?;
    let stats = Stats {
        candidates: universe.candidates().len(),
        solve_seconds: started.elapsed().as_secs_f64(),
    };
    Ok((Plan::new(universe, request, &chosen), stats))
}

fn solve_once(
    universe: &Universe,
    request: &Request,
    newest_major: bool,
) -> Result<Vec<usize>, ResolveError> {
    let favour_installed = !matches!(request, Request::Upgrade(names) if names.is_empty());
    let upgrading = match request {
        Request::Upgrade(names) => names.clone(),
        _ => Vec::new(),
    };
    let provider = Provider::new(universe, favour_installed, upgrading);
    let mut goals = Goals::for_request(&provider, universe, request, newest_major)?;
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
        provider: &Provider,
        universe: &Universe,
        request: &Request,
        newest_major: bool,
    ) -> Result<Self, ResolveError> {
        let installed: Vec<SolvableId> = universe
            .candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_installed())
            .map(|(i, _)| SolvableId::from_raw(i as u32))
            .collect();
        let mut goals = Goals {
            requirements: Vec::new(),
            constraints: Vec::new(),
            soft: installed.clone(),
        };
        let require_installed = |names: &[String], verb: &str| {
            for n in names {
                if !installed.iter().any(|&s| provider.manifest(s).name == *n) {
                    return Err(ResolveError::BadRequest(format!(
                        "{n} is not installed, so it cannot be {verb}"
                    )));
                }
            }
            Ok(())
        };
        match request {
            Request::Install(deps) => {
                for d in deps {
                    let r = provider.requirement(std::slice::from_ref(d));
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
                require_installed(names, "removed")?;
                for n in names {
                    provider.forbid_package(n, None, &mut goals.constraints);
                }
                goals
                    .soft
                    .retain(|&s| !names.contains(&provider.manifest(s).name));
            }
            Request::Upgrade(names) => {
                let targets: Vec<&str> = if names.is_empty() {
                    let mut all: Vec<&str> = installed
                        .iter()
                        .map(|&s| provider.manifest(s).name.as_str())
                        .collect();
                    all.sort_unstable();
                    all.dedup();
                    all
                } else {
                    require_installed(names, "upgraded")?;
                    names.iter().map(String::as_str).collect()
                };
                for name in &targets {
                    if let Some(r) = provider.package_requirement(name, newest_major) {
                        goals.requirements.push(r.into());
                    }
                }
                // The upgraded packages are not pinned to their current version.
                goals
                    .soft
                    .retain(|&s| !targets.contains(&provider.manifest(s).name.as_str()));
            }
        }
        // Host APIs are always present.
        for (i, c) in universe.candidates.iter().enumerate() {
            if c.origin == Origin::Host {
                goals.soft.push(SolvableId::from_raw(i as u32));
            }
        }
        Ok(goals)
    }

    /// resolvo only adds its one-per-name clauses for candidates reachable
    /// from a requirement, and soft requirements are not requirements: an
    /// installed release could end up chosen beside a newer one of its slot.
    /// So every slot holding a soft candidate is made reachable by a
    /// requirement that the always-installed anchor satisfies.
    fn keep_soft_slots_reachable(&mut self, provider: &Provider) {
        let anchor = provider
            .package_requirement(crate::ANCHOR, false)
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
            let package = provider.with_name(slot, |d| match d {
                NameDef::Slot { first } => provider.manifest(*first).name.clone(),
                NameDef::Missing { api } => api.clone(),
            });
            let any = provider.version_set(VersionSetDef {
                name: slot,
                selector: Selector::Package(package),
                negate: false,
            });
            self.requirements
                .push(provider.union(vec![anchor_set, any]).into());
        }
    }
}
