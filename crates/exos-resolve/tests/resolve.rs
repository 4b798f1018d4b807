//! The resolver against hand-made universes: requests, ranges, conflicts,
//! replacements and what a plan reports.

use exos_manifest::{Dependency, Manifest};
use exos_resolve::{
    host_api, resolve, Candidate, CandidateId, Change, Origin, Plan, RemovalReason, Request,
    ResolveError, Universe, UniverseBuilder,
};
use exos_version::Version;

fn manifest(json: &str) -> Manifest {
    Manifest::parse(json.as_bytes(), "test").unwrap()
}

fn available(json: &str) -> Candidate {
    Candidate {
        manifest: manifest(json),
        origin: Origin::Available {
            source: "test".into(),
        },
        id: CandidateId(0),
    }
}

fn installed(json: &str) -> Candidate {
    Candidate {
        manifest: manifest(json),
        origin: Origin::Installed {
            location: "system/packages/x.hpkg".into(),
        },
        id: CandidateId(0),
    }
}

fn install(specs: &[&str]) -> Request {
    Request::Install(
        specs
            .iter()
            .map(|s| Dependency::parse(s).unwrap())
            .collect(),
    )
}

fn result_of(plan: &Plan) -> Vec<String> {
    plan.result.iter().map(|p| p.to_string()).collect()
}

fn solve(cands: Vec<Candidate>, req: Request) -> Plan {
    match resolve(&Universe::new(cands), &req) {
        Ok((plan, _)) => plan,
        Err(e) => panic!("{e}"),
    }
}

fn unsolvable(cands: Vec<Candidate>, req: Request) -> String {
    match resolve(&Universe::new(cands), &req) {
        Ok((plan, _)) => panic!("expected failure, got {:?}", result_of(&plan)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn requirements_resolve_by_contract_not_by_name() {
    let plan = solve(
        vec![
            available(r#"{"name":"app","version":"1.0","requires":["libgreet >=1.0"]}"#),
            available(
                r#"{"name":"greetlib","version":"1.5","provides":[{"api":"libgreet","version":"1.5"}]}"#,
            ),
            available(
                r#"{"name":"greetlib","version":"0.9","provides":[{"api":"libgreet","version":"0.9"}]}"#,
            ),
        ],
        install(&["app"]),
    );
    assert_eq!(result_of(&plan), ["app 1.0", "greetlib 1.5"]);
    assert!(plan
        .changes
        .iter()
        .all(|c| matches!(c, Change::Install { .. })));
}

#[test]
fn newest_matching_version_wins() {
    let plan = solve(
        vec![
            available(r#"{"name":"lib","version":"1.2"}"#),
            available(r#"{"name":"lib","version":"1.10"}"#),
            available(r#"{"name":"lib","version":"1.9"}"#),
            available(r#"{"name":"lib","version":"2.0~beta1"}"#),
            available(r#"{"name":"app","version":"1","requires":["lib ~1.2"]}"#),
        ],
        install(&["app"]),
    );
    assert_eq!(result_of(&plan), ["app 1", "lib 1.2"]);
    let plan = solve(
        vec![
            available(r#"{"name":"lib","version":"1.2"}"#),
            available(r#"{"name":"lib","version":"1.10"}"#),
            available(r#"{"name":"app","version":"1","requires":["lib ^1.2"]}"#),
        ],
        install(&["app"]),
    );
    assert_eq!(result_of(&plan), ["app 1", "lib 1.10"]);
}

#[test]
fn incompatible_majors_coexist() {
    let plan = solve(
        vec![
            available(r#"{"name":"old_app","version":"1","requires":["libfoo ^1.4"]}"#),
            available(r#"{"name":"new_app","version":"1","requires":["libfoo >=2.1"]}"#),
            available(r#"{"name":"libfoo","version":"1.6"}"#),
            available(r#"{"name":"libfoo","version":"2.3"}"#),
        ],
        install(&["old_app", "new_app"]),
    );
    assert_eq!(
        result_of(&plan),
        ["libfoo 1.6", "libfoo 2.3", "new_app 1", "old_app 1"]
    );
}

#[test]
fn one_release_per_major() {
    let err = unsolvable(
        vec![
            available(r#"{"name":"a","version":"1","requires":["lib =1.1"]}"#),
            available(r#"{"name":"b","version":"1","requires":["lib =1.2"]}"#),
            available(r#"{"name":"lib","version":"1.1"}"#),
            available(r#"{"name":"lib","version":"1.2"}"#),
        ],
        install(&["a", "b"]),
    );
    assert!(err.contains("lib"), "{err}");
}

#[test]
fn failure_names_the_chain_of_requirements() {
    let err = unsolvable(
        vec![
            available(r#"{"name":"editor","version":"3.0","requires":["libui >=2"]}"#),
            available(
                r#"{"name":"uikit","version":"2.1","provides":[{"api":"libui","version":"2.1"}],"requires":["libgfx >=5"]}"#,
            ),
            available(r#"{"name":"libgfx","version":"4.2"}"#),
        ],
        install(&["editor"]),
    );
    for needle in ["editor", "libui >=2", "uikit 2.1", "libgfx >=5", "libgfx"] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn missing_api_is_named() {
    let err = unsolvable(
        vec![available(
            r#"{"name":"game","version":"1","uses":["system.cuda >=12"]}"#,
        )],
        install(&["game"]),
    );
    assert!(err.contains("system.cuda"), "{err}");
    // The host can provide it.
    let mut cands = vec![available(
        r#"{"name":"game","version":"1","uses":["system.cuda >=12"]}"#,
    )];
    cands.push(host_api(
        "system.cuda",
        Some(Version::parse("12.4").unwrap()),
    ));
    let plan = solve(cands, install(&["game"]));
    assert_eq!(result_of(&plan), ["game 1"]);
    // ... but not in too old a version.
    let mut cands = vec![available(
        r#"{"name":"game","version":"1","uses":["system.cuda >=12"]}"#,
    )];
    cands.push(host_api(
        "system.cuda",
        Some(Version::parse("11.8").unwrap()),
    ));
    unsolvable(cands, install(&["game"]));
}

#[test]
fn alternatives() {
    let plan = solve(
        vec![
            available(r#"{"name":"man","version":"1","requires":[{"any":["pager","less"]}]}"#),
            available(r#"{"name":"less","version":"590"}"#),
        ],
        install(&["man"]),
    );
    assert_eq!(result_of(&plan), ["less 590", "man 1"]);
}

#[test]
fn compatibility_window_limits_lower_bounds() {
    let cands = || {
        vec![
            available(r#"{"name":"app","version":"1","requires":["libz >=1.0"]}"#),
            available(
                r#"{"name":"zlib","version":"2.0","provides":[{"api":"libz","version":"2.0","compatible":"1.5"}]}"#,
            ),
        ]
    };
    unsolvable(cands(), install(&["app"]));
    let mut c = cands();
    c.push(available(
        r#"{"name":"zlib_compat","version":"1.2","provides":[{"api":"libz","version":"1.2"}]}"#,
    ));
    let plan = solve(c, install(&["app"]));
    assert_eq!(result_of(&plan), ["app 1", "zlib_compat 1.2"]);
}

#[test]
fn installed_packages_stay_at_their_version() {
    let plan = solve(
        vec![
            installed(r#"{"name":"lib","version":"1.0"}"#),
            available(r#"{"name":"lib","version":"1.5"}"#),
            available(r#"{"name":"tool","version":"1","requires":["lib"]}"#),
        ],
        install(&["tool"]),
    );
    assert_eq!(result_of(&plan), ["lib 1.0", "tool 1"]);
    // Unless the request needs a newer one: then it is upgraded.
    let plan = solve(
        vec![
            installed(r#"{"name":"lib","version":"1.0"}"#),
            available(r#"{"name":"lib","version":"1.5"}"#),
            available(r#"{"name":"tool","version":"1","requires":["lib >=1.2"]}"#),
        ],
        install(&["tool"]),
    );
    assert_eq!(result_of(&plan), ["lib 1.5", "tool 1"]);
    assert!(plan.changes.iter().any(|c| matches!(c, Change::Upgrade { from, to } if from.version.to_string() == "1.0" && to.version.to_string() == "1.5")));
}

#[test]
fn upgrade_all_moves_to_newest_consistent_versions() {
    let plan = solve(
        vec![
            installed(r#"{"name":"app","version":"1.0","requires":["lib ^1"]}"#),
            installed(r#"{"name":"lib","version":"1.0"}"#),
            available(r#"{"name":"app","version":"1.1","requires":["lib ^1.3"]}"#),
            available(r#"{"name":"lib","version":"1.4"}"#),
            available(r#"{"name":"lib","version":"2.0"}"#),
        ],
        Request::Upgrade(vec![]),
    );
    // lib 2.0 is a new major: lib is upgraded to it, and 1.x stays because app needs it.
    assert_eq!(result_of(&plan), ["app 1.1", "lib 1.4", "lib 2.0"]);
}

#[test]
fn exact_releases_are_installed_whatever_they_provide() {
    // greetings provides its own name at 1.2 while its release is 1.2-1.
    let cands = || {
        vec![
            installed(
                r#"{"name":"greetings","version":"1.0-1","provides":[{"api":"greetings","version":"1.0"}]}"#,
            ),
            available(
                r#"{"name":"greetings","version":"1.2-1","provides":[{"api":"greetings","version":"1.2","compatible":"1.0"}]}"#,
            ),
        ]
    };
    let v = |s: &str| Version::parse(s).unwrap();
    let plan = solve(
        cands(),
        Request::InstallExact(vec![("greetings".into(), v("1.2-1"))]),
    );
    assert_eq!(result_of(&plan), ["greetings 1.2-1"]);
    // Back to the installed one is nothing to do; an unknown release is a bad request.
    let plan = solve(
        cands(),
        Request::InstallExact(vec![("greetings".into(), v("1.0-1"))]),
    );
    assert!(plan.is_empty());
    let err = resolve(
        &Universe::new(cands()),
        &Request::InstallExact(vec![("nope".into(), v("1"))]),
    )
    .unwrap_err();
    assert!(matches!(err, ResolveError::BadRequest(_)));
}

#[test]
fn upgrading_one_package_leaves_the_others_alone() {
    let plan = solve(
        vec![
            installed(r#"{"name":"lib","version":"1.0"}"#),
            installed(r#"{"name":"other","version":"1.0"}"#),
            available(r#"{"name":"lib","version":"1.1"}"#),
            available(r#"{"name":"other","version":"1.5"}"#),
        ],
        Request::Upgrade(vec!["lib".into()]),
    );
    assert_eq!(result_of(&plan), ["lib 1.1", "other 1.0"]);
}

#[test]
fn installing_or_removing_among_many_installed_packages_changes_only_what_it_must() {
    // 3,000 installed packages, in chains (each of the 2,000 apps needs a
    // lib), and one more to install that needs lib0 newer than installed.
    let mut cands = Vec::new();
    for i in 0..1000 {
        cands.push(installed(&format!(
            r#"{{"name":"lib{i}","version":"1.0"}}"#
        )));
        for j in 0..2 {
            cands.push(installed(&format!(
                r#"{{"name":"app{i}_{j}","version":"1.0","requires":["lib{i}>=1.0"]}}"#
            )));
        }
    }
    cands.push(available(r#"{"name":"lib0","version":"1.5"}"#));
    cands.push(available(
        r#"{"name":"new","version":"1.0","requires":["lib1"]}"#,
    ));
    cands.push(available(
        r#"{"name":"newer","version":"1.0","requires":["lib0>=1.5"]}"#,
    ));
    let v = |s: &str| Version::parse(s).unwrap();
    let exact = |name: &str| Request::InstallExact(vec![(name.into(), v("1.0"))]);
    let changed = |plan: &Plan| -> Vec<String> {
        let mut out: Vec<String> = plan.changes.iter().map(|c| format!("{c:?}")).collect();
        out.sort();
        out
    };
    // Nothing installed has to change: everything stays, one is added.
    let plan = solve(cands.clone(), exact("new"));
    assert_eq!(plan.result.len(), 3001);
    assert!(result_of(&plan).contains(&"new 1.0".to_string()));
    assert_eq!(plan.changes.len(), 1, "{:?}", changed(&plan));
    // One must be upgraded: it is, and everything else stays.
    let plan = solve(cands.clone(), exact("newer"));
    let result = result_of(&plan);
    assert_eq!(result.len(), 3001, "{:?}", changed(&plan));
    assert!(result.contains(&"lib0 1.5".to_string()) && !result.contains(&"lib0 1.0".to_string()));
    assert!(result.contains(&"app0_1 1.0".to_string()));
    // Removing what nothing needs removes only it; a lib takes its apps.
    let plan = solve(cands.clone(), Request::Remove(vec!["app5_0".into()]));
    assert_eq!(plan.result.len(), 2999);
    assert_eq!(plan.changes.len(), 1, "{:?}", changed(&plan));
    let plan = solve(cands, Request::Remove(vec!["lib7".into()]));
    let result = result_of(&plan);
    assert_eq!(result.len(), 2997, "{:?}", changed(&plan));
    assert!(!result.iter().any(|r| r.starts_with("app7_")));
}

#[test]
fn remove_takes_dependents_along_and_says_why() {
    let plan = solve(
        vec![
            installed(r#"{"name":"lib","version":"1.0"}"#),
            installed(r#"{"name":"app","version":"1.0","requires":["lib"]}"#),
            installed(r#"{"name":"other","version":"1.0"}"#),
        ],
        Request::Remove(vec!["lib".into()]),
    );
    assert_eq!(result_of(&plan), ["other 1.0"]);
    let reasons: Vec<(String, RemovalReason)> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Remove { package, reason } => Some((package.name.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("app".to_string(), RemovalReason::Unmet("lib".into())),
            ("lib".to_string(), RemovalReason::Requested)
        ]
    );
    let err = resolve(
        &Universe::new(vec![installed(r#"{"name":"lib","version":"1.0"}"#)]),
        &Request::Remove(vec!["nothere".into()]),
    )
    .unwrap_err();
    assert!(matches!(err, ResolveError::BadRequest(_)), "{err}");
}

#[test]
fn replaces_and_conflicts_remove_the_old_package() {
    let plan = solve(
        vec![
            installed(r#"{"name":"oldmail","version":"1.0"}"#),
            available(r#"{"name":"newmail","version":"2.0","replaces":["oldmail"]}"#),
        ],
        install(&["newmail"]),
    );
    assert_eq!(result_of(&plan), ["newmail 2.0"]);
    assert!(plan.changes.iter().any(|c| matches!(c, Change::Remove { package, reason: RemovalReason::ReplacedBy(_) } if package.name == "oldmail")));

    let plan = solve(
        vec![
            installed(r#"{"name":"sendmail","version":"8","provides":["mta"]}"#),
            available(r#"{"name":"postfix","version":"3","provides":["mta"],"conflicts":["mta"]}"#),
        ],
        install(&["postfix"]),
    );
    assert_eq!(result_of(&plan), ["postfix 3"]);
    assert!(plan.changes.iter().any(|c| matches!(
        c,
        Change::Remove {
            reason: RemovalReason::ConflictsWith(_),
            ..
        }
    )));

    // A conflict with a package that is explicitly requested cannot be solved.
    unsolvable(
        vec![
            available(r#"{"name":"a","version":"1","conflicts":["b"]}"#),
            available(r#"{"name":"b","version":"1"}"#),
        ],
        install(&["a", "b"]),
    );
}

#[test]
fn foreign_architectures_are_not_chosen() {
    let err = unsolvable(
        vec![available(
            r#"{"name":"tool","version":"1","architecture":"sparc"}"#,
        )],
        install(&["tool"]),
    );
    assert!(err.contains("sparc"), "{err}");
}

mod property {
    use super::*;
    use proptest::prelude::*;

    /// Random universes over a handful of names; whenever a plan comes
    /// back, it must be consistent.
    fn universe() -> impl Strategy<Value = Vec<Candidate>> {
        let names = ["a", "b", "c", "d", "e"];
        let pkg = (
            0usize..5,
            1u32..4,
            0u32..3,
            proptest::collection::vec((0usize..5, 0usize..4, 1u32..4), 0..3),
            proptest::option::of(0usize..5),
            any::<bool>(),
        );
        proptest::collection::vec(pkg, 1..12).prop_map(move |pkgs| {
            pkgs.into_iter()
                .map(|(n, major, minor, reqs, conflict, is_installed)| {
                    let ops = ["", " >=", " <", " ^"];
                    let requires: Vec<String> = reqs
                        .iter()
                        .filter(|(r, _, _)| *r != n)
                        .map(|(r, op, v)| {
                            if *op == 0 {
                                format!("\"{}\"", names[*r])
                            } else {
                                format!("\"{}{}{}\"", names[*r], ops[*op], v)
                            }
                        })
                        .collect();
                    let conflicts: Vec<String> = conflict
                        .filter(|c| *c != n)
                        .map(|c| format!("\"{}\"", names[c]))
                        .into_iter()
                        .collect();
                    let json = format!(
                        r#"{{"name":"{}","version":"{major}.{minor}","requires":[{}],"conflicts":[{}]}}"#,
                        names[n],
                        requires.join(","),
                        conflicts.join(",")
                    );
                    if is_installed {
                        installed(&json)
                    } else {
                        available(&json)
                    }
                })
                .collect()
        })
    }

    /// Checks a plan against the candidates' own manifests, with the
    /// manifest model's matching (independent of the solver's pool).
    fn check_consistent(plan: &Plan, candidates: &[Candidate]) {
        let chosen: Vec<&Manifest> = plan
            .result
            .iter()
            .map(|p| {
                &candidates
                    .iter()
                    .find(|c| {
                        c.manifest.name == p.name
                            && c.manifest.version == p.version
                            && c.origin == p.origin
                    })
                    .unwrap()
                    .manifest
            })
            .collect();
        for m in &chosen {
            for r in &m.requires {
                assert!(
                    r.alternatives.iter().any(|d| chosen
                        .iter()
                        .any(|o| o.provides.iter().any(|p| d.is_met_by(p)))),
                    "{} {}: requirement {r} unmet in {:?}",
                    m.name,
                    m.version,
                    result_of(plan)
                );
            }
            for c in &m.conflicts {
                assert!(
                    !chosen
                        .iter()
                        .any(|o| o.name != m.name && o.provides.iter().any(|p| c.conflicts_with(p))),
                    "conflict {c} violated"
                );
            }
        }
        let mut slots: Vec<(String, String)> = chosen
            .iter()
            .map(|m| (m.name.clone(), m.version.major.clone()))
            .collect();
        let n = slots.len();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), n, "two releases of one major chosen");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn plans_are_consistent(cands in universe(), target in 0usize..5) {
            let universe = Universe::new(cands.clone());
            let names = ["a", "b", "c", "d", "e"];
            let req = install(&[names[target]]);
            if let Ok((plan, _)) = resolve(&universe, &req) {
                check_consistent(&plan, &cands);
                prop_assert!(plan.result.iter().any(|p| p.name == names[target]));
            }
            if let Ok((plan, _)) = resolve(&universe, &Request::Upgrade(vec![])) {
                check_consistent(&plan, &cands);
            }
        }

        /// Loading manifests as JSON lines (parsed and interned on every
        /// core, nothing copied) gives the same plans as building the
        /// universe from `Manifest`s.
        #[test]
        fn json_lines_and_manifests_make_the_same_universe(cands in universe(), target in 0usize..5) {
            let names = ["a", "b", "c", "d", "e"];
            let mut lines = String::new();
            for c in &cands {
                lines.push_str(&serde_json::to_string(&c.manifest).unwrap());
                lines.push('\n');
            }
            let mut b = UniverseBuilder::new();
            b.add_json_lines(lines.as_bytes(), 0, "test", Origin::Available { source: "test".into() }, 0)
                .unwrap();
            let from_lines = b.finish();
            let available: Vec<Candidate> = cands
                .iter()
                .map(|c| Candidate { origin: Origin::Available { source: "test".into() }, ..c.clone() })
                .collect();
            let from_manifests = Universe::new(available);
            prop_assert_eq!(from_lines.len(), from_manifests.len());
            let req = install(&[names[target]]);
            let plans = |u: &Universe| match resolve(u, &req) {
                Ok((plan, _)) => Ok(plan.result.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
                Err(e) => Err(e.to_string()),
            };
            prop_assert_eq!(plans(&from_lines), plans(&from_manifests));
        }
    }
}
