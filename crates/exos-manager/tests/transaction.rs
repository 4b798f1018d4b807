//! The manager as a library: plans, consent, commits and recovery, on
//! roots in temporary directories with packages built for each test.

use std::fs;
use std::path::{Path, PathBuf};

use exos_manager::{Error, Layer, Request, Root, Transaction};

/// Builds a package from a manifest (plus one file) into `dir`.
fn package(dir: &Path, manifest: &str) -> PathBuf {
    let m = exos_manifest::Manifest::parse(manifest.as_bytes(), "test").unwrap();
    let src = dir.join(format!("src-{}-{}", m.name, m.version));
    fs::create_dir_all(src.join("share")).unwrap();
    fs::write(src.join("manifest.json"), manifest).unwrap();
    fs::write(src.join("share").join(&m.name), &m.name).unwrap();
    let out = dir.join(format!("{}-{}.hpkg", m.name, m.version));
    exos_hpkg::build_from_dir(
        &src,
        &out,
        &m.to_package_info(),
        exos_hpkg::BuildOptions::default(),
        &mut |_| {},
        &mut |_| {},
    )
    .unwrap();
    out
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    lib: PathBuf,
    app: PathBuf,
    core: PathBuf,
    lib2: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_path_buf();
    let lib = package(&d, r#"{"name":"lib","version":"1.0"}"#);
    let app = package(&d, r#"{"name":"app","version":"1.0","requires":["lib"]}"#);
    let core = package(&d, r#"{"name":"core","version":"1.0","essential":true}"#);
    let newer = d.join("newer");
    fs::create_dir_all(&newer).unwrap();
    let lib2 = package(&newer, r#"{"name":"lib","version":"2.0"}"#);
    let root = d.join("root");
    Root::init(&root).unwrap();
    Fixture {
        root,
        lib,
        app,
        core,
        lib2,
        _tmp: tmp,
    }
}

/// A plan without downloads, admitted as it is.
fn admit(root: &Root, plan: exos_manager::Plan) -> exos_manager::AdmittedPlan {
    plan.admit_downloads(root, &[]).unwrap()
}

fn tx(request: Request) -> Transaction {
    Transaction {
        request,
        available: Vec::new(),
        host_apis: Vec::new(),
        force: false,
        remote: Vec::new(),
        keys: Default::default(),
        from: Default::default(),
        typed: None,
    }
}

fn install(files: &[&PathBuf]) -> Transaction {
    tx(Request::Install {
        files: files.iter().map(|p| p.to_path_buf()).collect(),
        layer: Layer::System,
    })
}

fn remove(names: &[&str]) -> Transaction {
    tx(Request::Remove {
        names: names.iter().map(|s| s.to_string()).collect(),
    })
}

#[test]
fn install_plans_resolves_and_commits_a_numbered_state() {
    let fx = fixture();
    let root = Root::lock(&fx.root).unwrap();
    // app alone cannot work.
    let err = install(&[&fx.app]).plan(&root).unwrap_err();
    assert!(matches!(err, Error::Unsatisfiable(_)), "{err}");
    let plan = install(&[&fx.app, &fx.lib]).plan(&root).unwrap();
    assert_eq!(plan.change, "install app 1.0, lib 1.0");
    assert_eq!(plan.files.len(), 2);
    assert_eq!(plan.new.len(), 2);
    assert!(plan.bytes_copied > 0);
    assert!(plan.also_removed.is_empty() && plan.essential_removed.is_empty());
    plan.check_consent(false, false).unwrap();
    let n = root.commit(&admit(&root, plan.clone())).unwrap();
    assert_eq!(n, 1);
    let current = root.current().unwrap();
    assert_eq!(current.entries.len(), 2);
    assert_eq!(root.current_number().unwrap(), Some(1));
    assert!(root.check().unwrap().is_empty());
    // Installing the same again changes nothing.
    assert!(install(&[&fx.app, &fx.lib]).plan(&root).unwrap().is_empty());
}

#[test]
fn a_cascade_needs_consent_and_essential_packages_need_force() {
    let fx = fixture();
    let root = Root::lock(&fx.root).unwrap();
    let plan = install(&[&fx.app, &fx.lib, &fx.core]).plan(&root).unwrap();
    root.commit(&admit(&root, plan.clone())).unwrap();
    // Removing lib takes app along: the user must agree.
    let plan = remove(&["lib"]).plan(&root).unwrap();
    assert_eq!(plan.also_removed.len(), 1);
    assert_eq!(plan.also_removed[0].name, "app");
    assert!(matches!(
        plan.check_consent(false, false),
        Err(Error::NeedsConsent(_))
    ));
    plan.check_consent(true, false).unwrap();
    // Removing the essential package: not even --yes will do.
    let plan = remove(&["core"]).plan(&root).unwrap();
    assert_eq!(plan.essential_removed.len(), 1);
    assert!(matches!(
        plan.check_consent(true, false),
        Err(Error::Essential(_))
    ));
    plan.check_consent(false, true).unwrap();
    root.commit(&admit(&root, plan.clone())).unwrap();
    assert!(!root
        .current()
        .unwrap()
        .entries
        .iter()
        .any(|e| e.file.as_str().starts_with("core")));
    // Forced: exactly what was asked, no cascade.
    let mut t = remove(&["lib"]);
    t.force = true;
    let plan = t.plan(&root).unwrap();
    assert!(plan.resolution.is_none());
    assert_eq!(plan.files.len(), 1);
}

#[test]
fn an_upgrade_of_an_essential_package_is_not_a_removal() {
    let fx = fixture();
    let dir = fx.root.parent().unwrap().join("ess");
    fs::create_dir_all(dir.join("v2")).unwrap();
    let v1 = package(&dir, r#"{"name":"base","version":"1.0","essential":true}"#);
    let v2 = package(
        &dir.join("v2"),
        r#"{"name":"base","version":"1.1","essential":true}"#,
    );
    let root = Root::lock(&fx.root).unwrap();
    root.commit(&admit(&root, install(&[&v1, &fx.lib]).plan(&root).unwrap()))
        .unwrap();
    let mut t = tx(Request::Upgrade {
        names: Vec::new(),
        layer: Layer::System,
    });
    t.available = vec![v2.parent().unwrap().to_path_buf(), fx.lib2.clone()];
    let plan = t.plan(&root).unwrap();
    assert!(
        plan.essential_removed.is_empty(),
        "{:?}",
        plan.essential_removed
    );
    assert!(plan.also_removed.is_empty(), "{:?}", plan.also_removed);
    plan.check_consent(false, false).unwrap();
    root.commit(&admit(&root, plan.clone())).unwrap();
    let files: Vec<String> = root
        .current()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.file.to_string())
        .collect();
    assert_eq!(files, ["base-1.1.hpkg", "lib-2.0.hpkg"]);
}

#[test]
fn recovery_removes_states_never_made_current() {
    let fx = fixture();
    let root = Root::lock(&fx.root).unwrap();
    root.commit(&admit(&root, install(&[&fx.lib]).plan(&root).unwrap()))
        .unwrap();
    // A crash after writing state 2, before the commit.
    let layout = exos_root::Layout::new(&fx.root);
    let never = exos_root::StateList {
        entries: Vec::new(),
        change: "remove lib".into(),
        created: 1,
    };
    fs::write(layout.state_file(2), never.render()).unwrap();
    fs::write(layout.states_dir().join(".exos-tmp-x"), "half").unwrap();
    let notes = root.recover().unwrap();
    assert!(notes.iter().any(|n| n.contains("state 2")), "{notes:?}");
    assert_eq!(root.states().unwrap(), [0, 1]);
    assert_eq!(fs::read_dir(layout.states_dir()).unwrap().count(), 2);
    // The next change gets number 2.
    let n = root
        .commit(&admit(&root, install(&[&fx.app]).plan(&root).unwrap()))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn gc_keeps_the_current_state_and_what_kept_states_use() {
    let fx = fixture();
    let root = Root::lock(&fx.root).unwrap();
    root.commit(&admit(&root, install(&[&fx.lib]).plan(&root).unwrap()))
        .unwrap();
    root.commit(&admit(&root, remove(&["lib"]).plan(&root).unwrap()))
        .unwrap();
    let report = root.gc(1).unwrap();
    assert_eq!(report.states_removed, 2);
    assert_eq!(report.files_removed, 1);
    assert!(report.bytes_freed > 0);
    assert_eq!(root.states().unwrap(), [2]);
    assert!(root.check().unwrap().is_empty());
}
