//! `exos resolve` end to end, with packages built by `exos build`.

mod support;
use support::*;

use std::fs;
use std::path::Path;

/// Builds a package from just a manifest (plus one file) into `out_dir`.
fn package(work: &Path, out_dir: &Path, manifest: &str) {
    let v: serde_json::Value = serde_json::from_str(manifest).unwrap();
    let id = format!(
        "{}-{}",
        v["name"].as_str().unwrap(),
        v["version"].as_str().unwrap()
    );
    let src = work.join(format!("src-{id}"));
    fs::create_dir_all(src.join("data")).unwrap();
    fs::write(src.join("manifest.json"), complete(manifest)).unwrap();
    fs::write(src.join("data").join(&id), &id).unwrap();
    fs::create_dir_all(out_dir).unwrap();
    let out = out_dir.join(format!("{id}.hpkg"));
    let o = exos(&[
        "build",
        "-q",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

fn repo(tmp: &Path) -> std::path::PathBuf {
    let r = tmp.join("repo");
    package(
        tmp,
        &r,
        r#"{"name":"libgreet","version":"1.4","provides":[{"api":"greet","version":"1.4","compatible":"1.0"}]}"#,
    );
    package(
        tmp,
        &r,
        r#"{"name":"libgreet","version":"2.1","provides":[{"api":"greet","version":"2.1"}]}"#,
    );
    package(
        tmp,
        &r,
        r#"{"name":"hello","version":"1.0","requires":[{"api":"greet","version":"^1.2"}]}"#,
    );
    package(
        tmp,
        &r,
        r#"{"name":"hello2","version":"1.0","requires":["greet >=2"]}"#,
    );
    package(
        tmp,
        &r,
        r#"{"name":"gpu_app","version":"1.0","uses":["system.cuda >=12"]}"#,
    );
    r
}

#[test]
fn install_by_contract_with_coexisting_majors() {
    let tmp = tempfile::tempdir().unwrap();
    let r = repo(tmp.path());
    let o = exos(&[
        "resolve",
        "-a",
        r.to_str().unwrap(),
        "--json",
        "install",
        "hello",
        "hello2",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let result: Vec<String> = v["plan"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        result,
        ["hello 1.0", "hello2 1.0", "libgreet 1.4", "libgreet 2.1"]
    );
    assert!(v["plan"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["action"] == "install"));
    // Human output lists the same.
    let o = exos(&["resolve", "-a", r.to_str().unwrap(), "install", "hello"]);
    let out = text(&o.stdout);
    assert!(
        out.contains("install   hello 1.0") && out.contains("libgreet 1.4"),
        "{out}"
    );
    assert!(out.contains("2 to install"), "{out}");
}

#[test]
fn impossible_requests_explain_and_exit_4() {
    let tmp = tempfile::tempdir().unwrap();
    let r = repo(tmp.path());
    let o = exos(&["resolve", "-a", r.to_str().unwrap(), "install", "gpu_app"]);
    assert_eq!(o.status.code(), Some(4));
    let err = text(&o.stderr);
    assert!(
        err.contains("gpu_app") && err.contains("system.cuda"),
        "{err}"
    );
    let o = exos(&[
        "resolve",
        "-a",
        r.to_str().unwrap(),
        "--json",
        "install",
        "greet >=3",
    ]);
    assert_eq!(o.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "unsatisfiable");
    assert_eq!(v["error"]["exit_code"], 4);
    assert!(v["error"]["message"].as_str().unwrap().contains("greet"));
    // With the host providing the API, it works.
    let o = exos(&[
        "resolve",
        "-a",
        r.to_str().unwrap(),
        "--host-api",
        "system.cuda=12.4",
        "install",
        "gpu_app",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // A malformed request is a usage-level error, not "unsolvable".
    let o = exos(&["resolve", "-a", r.to_str().unwrap(), "install", "bad name!"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn remove_and_upgrade_against_an_exos_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let sys = root.join("system/packages");
    package(
        tmp.path(),
        &sys,
        r#"{"name":"libgreet","version":"1.2","provides":[{"api":"greet","version":"1.2"}]}"#,
    );
    package(
        tmp.path(),
        &root.join("user/packages"),
        r#"{"name":"hello","version":"1.0","requires":[{"api":"greet","version":"^1.2"}]}"#,
    );
    let r = repo(tmp.path());
    let o = exos(&[
        "resolve",
        "--root",
        root.to_str().unwrap(),
        "--json",
        "remove",
        "libgreet",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changes = v["plan"]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{v}");
    assert_eq!(changes[0]["package"]["name"], "hello");
    assert!(
        changes[0]["reason"].as_str().unwrap().contains("greet"),
        "{v}"
    );
    assert_eq!(changes[1]["reason"], "requested");
    let o = exos(&[
        "resolve",
        "--root",
        root.to_str().unwrap(),
        "-a",
        r.to_str().unwrap(),
        "upgrade",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("upgrade   libgreet 1.2 -> 1.4")
            || out.contains("upgrade   libgreet 1.2 -> 2.1"),
        "{out}"
    );
    let o = exos(&[
        "resolve",
        "--root",
        root.to_str().unwrap(),
        "remove",
        "nothere",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("not installed"));
}

#[test]
fn manifest_travels_inside_the_package() {
    let tmp = tempfile::tempdir().unwrap();
    let r = repo(tmp.path());
    let pkg = r.join("hello-1.0.hpkg");
    let o = exos(&["list", "-p", pkg.to_str().unwrap()]);
    assert!(
        text(&o.stdout).lines().any(|l| l == "manifest.json"),
        "{}",
        text(&o.stdout)
    );
    let o = exos(&["info", "--json", pkg.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["manifest_source"], "package");
    assert_eq!(v["manifest"]["requires"][0]["version"], "^1.2");
    // Haiku sees the dependency as a pair of requires.
    let reqs: Vec<&str> = v["info"]["requires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reqs, ["greet>=1.2", "greet<2"]);
}

#[test]
fn haiku_packages_and_repositories_resolve() {
    let f = fixtures_dir();
    // A Haiku package has no manifest.json: one is derived.
    let o = exos(&[
        "info",
        "--json",
        f.join("haikudepotserver-core-test_src_test_resources_tipster-1.1.1-1-x86_64.hpkg")
            .to_str()
            .unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["manifest_source"], "attributes");
    assert_eq!(v["manifest"]["name"], "tipster");
    // HaikuPorts' own index: vim needs the base system, which the host provides here.
    let repo = f.join("haikudepotserver-core-test_src_test_resources_sample-repo.hpkr");
    let o = exos(&["resolve", "-a", repo.to_str().unwrap(), "install", "vim"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(text(&o.stderr).contains("haiku"), "{}", text(&o.stderr));
    let o = exos(&[
        "resolve",
        "--json",
        "-a",
        repo.to_str().unwrap(),
        "--host-api",
        "haiku=r1~beta1_hrev52295-1",
        "--host-api",
        "lib:libstdc++",
        "--host-api",
        "lib:libsupc++",
        "--host-api",
        "lib:libgcc_s",
        "install",
        "vim",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["plan"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"vim") && names.contains(&"ncurses6"),
        "{names:?}"
    );
}

/// An index is read a megabyte at a time: a line cut by a block boundary,
/// a line longer than a block, and an error far into the file keep their
/// true line numbers.
#[test]
fn large_indexes_load_by_blocks_and_name_the_right_line() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("big.jsonl");
    let mut index = String::new();
    for i in 0..12_000 {
        index.push_str(&format!(
            "{{\"name\":\"p{i}\",\"version\":\"1.{}\",\"summary\":\"{}\",\"requires\":[\"p{}\"]}}\n",
            i % 7,
            "x".repeat(i % 300),
            i / 2
        ));
    }
    // Longer than a block on its own.
    index.push_str(&format!(
        "{{\"name\":\"long\",\"version\":\"1\",\"summary\":\"{}\"}}\n",
        "y".repeat(1_500_000)
    ));
    fs::write(&idx, &index).unwrap();
    let o = exos(&[
        "resolve",
        "--json",
        "-a",
        idx.to_str().unwrap(),
        "install",
        "p11999",
        "long",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let result = v["plan"]["result"].as_array().unwrap();
    assert!(result.iter().any(|p| p["name"] == "long"));
    assert!(result.iter().any(|p| p["name"] == "p0"));
    index.push_str("{\"name\":\"bad\",\"version\":\"1\",\"uses\":[\"x >>1\"]}\n");
    fs::write(&idx, &index).unwrap();
    let o = exos(&["resolve", "-a", idx.to_str().unwrap(), "install", "p1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("big.jsonl line 12002") && err.contains("uses[0]"),
        "{err}"
    );
}

#[test]
fn bad_index_lines_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("index.jsonl");
    fs::write(&idx, "{\"name\":\"a\",\"version\":\"1\"}\n\n{\"name\":\"b\",\"version\":\"1\",\"requires\":[3]}\n").unwrap();
    let o = exos(&["resolve", "-a", idx.to_str().unwrap(), "install", "a"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("index.jsonl line 3") && err.contains("requires[0]"),
        "{err}"
    );
    // A broken package in a directory is skipped with a warning.
    let dir = tmp.path().join("dir");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("junk.hpkg"), b"hpkg but not really").unwrap();
    let o = exos(&[
        "resolve",
        "-a",
        dir.to_str().unwrap(),
        "-a",
        idx.with_file_name("none.jsonl").to_str().unwrap(),
        "install",
        "a",
    ]);
    assert_eq!(o.status.code(), Some(1));
    fs::write(
        tmp.path().join("ok.jsonl"),
        "{\"name\":\"a\",\"version\":\"1\"}\n",
    )
    .unwrap();
    let o = exos(&[
        "resolve",
        "-a",
        dir.to_str().unwrap(),
        "-a",
        tmp.path().join("ok.jsonl").to_str().unwrap(),
        "install",
        "a",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("skipping") && text(&o.stderr).contains("junk.hpkg"));
}
