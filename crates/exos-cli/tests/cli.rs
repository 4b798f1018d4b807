//! End-to-end tests of the `exos` binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn exos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(args)
        .output()
        .expect("run exos")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn fixtures_dir() -> PathBuf {
    if let Ok(p) = std::env::var("EXOS_FIXTURES") {
        return PathBuf::from(p);
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    assert!(
        d.is_dir(),
        "fixtures not found at {} (set EXOS_FIXTURES)",
        d.display()
    );
    d
}

#[test]
fn list_matches_haikus_package_list_for_every_fixture() {
    let mut checked = 0;
    for e in fs::read_dir(fixtures_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "hpkg") {
            continue;
        }
        let expected = fs::read_to_string(p.with_extension("package-list.txt")).unwrap();
        let o = exos(&["list", p.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), expected, "{}", p.display());
        checked += 1;
    }
    assert!(checked >= 7);
}

#[test]
fn list_of_a_repository_names_versions_and_checksums() {
    let o = exos(&[
        "list",
        fixtures_dir()
            .join("generated_testrepo.hpkr")
            .to_str()
            .unwrap(),
    ]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.starts_with("testpkg "), "{out}");
    assert!(out.contains("1.2.3~beta1-4"));
    assert!(out.contains("dc13f87b1ac4f98ed1ea92a8bb9acee2d70f18822ea391c46dad5fc24693ad7c"));
    let o = exos(&[
        "list",
        fixtures_dir()
            .join("haikudepotserver-core-test_src_test_resources_sample-repo.hpkr")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(stdout(&o).lines().count(), 2333);
}

#[test]
fn info_json_describes_header_and_attributes() {
    let p = fixtures_dir()
        .join("haikudepotserver-packagefile_src_test_resources_artificial-1.0.0-any.hpkg");
    let o = exos(&["info", "--json", p.to_str().unwrap()]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["compression"], "zstd");
    assert_eq!(v["info"]["name"], "example");
    assert_eq!(v["info"]["version"], "42.17-12");
    assert_eq!(v["info"]["architecture"], "x86_gcc2");
    assert_eq!(v["file_size"], 563);
    let o = exos(&["info", p.to_str().unwrap()]);
    assert!(stdout(&o).contains("compression:   zstd"));
}

#[test]
fn checksum_is_sha256() {
    let p = fixtures_dir().join("generated_testpkg-zlib.hpkg");
    let o = exos(&["checksum", p.to_str().unwrap()]);
    assert!(stdout(&o)
        .starts_with("dc13f87b1ac4f98ed1ea92a8bb9acee2d70f18822ea391c46dad5fc24693ad7c  "));
}

fn write_tree(dir: &Path, manifest: &str) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("share/doc")).unwrap();
    fs::write(dir.join("manifest.json"), manifest).unwrap();
    fs::write(
        dir.join("bin/hello"),
        "#!/bin/sh\necho hello from a package\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join("bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("share/doc/README"), "x".repeat(100_000)).unwrap();
    std::os::unix::fs::symlink("../bin/hello", dir.join("share/hello-link")).unwrap();
}

const MANIFEST: &str = r#"{
  "name": "hello", "version": "1.2.3-1", "summary": "Says hello", "architecture": "x86_64",
  "license": "MIT",
  "provides": ["cmd:hello = 1.2.3", {"api": "lib:libhello", "version": "1.2", "compatible": "1.0"}],
  "requires": ["core.runtime >= 1.0", {"api": "lib:libc", "version": ">=2.36"}]
}"#;

#[test]
fn build_list_extract_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, MANIFEST);
    let pkg = tmp.path().join("hello.hpkg");
    for comp in ["zlib", "zstd", "none"] {
        let _ = fs::remove_file(&pkg);
        let o = exos(&[
            "build",
            src.to_str().unwrap(),
            "-o",
            pkg.to_str().unwrap(),
            "-c",
            comp,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("built"), "{}", stderr(&o));
        let o = exos(&["list", pkg.to_str().unwrap()]);
        let out = stdout(&o);
        assert!(out.contains("\tname: hello\n"), "{out}");
        assert!(out.contains("\tversion: 1.2.3-1\n"));
        assert!(out.contains("\tprovides: hello = 1.2.3-1\n"));
        assert!(out.contains("\tprovides: lib:libhello = 1.2 (compatible >= 1.0)\n"));
        assert!(out.contains("\trequires: core.runtime>=1.0\n"));
        assert!(out.contains("\trequires: lib:libc>=2.36\n"));
        assert!(out.contains("\n  hello-link   "), "{out}");
        assert!(out.contains("lrwxrwxrwx  -> ../bin/hello\n"), "{out}");
        let dest = tmp.path().join(format!("out-{comp}"));
        let o = exos(&[
            "extract",
            "-q",
            pkg.to_str().unwrap(),
            dest.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).is_empty(), "--quiet printed: {}", stderr(&o));
        let diff = Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&src)
            .arg(&dest)
            .arg("--exclude=.PackageInfo")
            .output()
            .unwrap();
        assert!(
            diff.status.success(),
            "{}",
            String::from_utf8_lossy(&diff.stdout)
        );
        // Extraction restores the executable bit and times.
        use std::os::unix::fs::MetadataExt;
        let a = fs::metadata(src.join("bin/hello")).unwrap();
        let b = fs::metadata(dest.join("bin/hello")).unwrap();
        assert_eq!(a.mode(), b.mode());
        assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
        // The extracted file runs.
        let run = Command::new(dest.join("bin/hello")).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "hello from a package\n"
        );
    }
}

#[test]
fn default_output_name_is_canonical() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, MANIFEST);
    let o = Command::new(env!("CARGO_BIN_EXE_exos"))
        .current_dir(tmp.path())
        .args(["build", "-q", "src"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("hello-1.2.3-1-x86_64.hpkg").exists());
}

#[test]
fn extract_refuses_to_overwrite_or_follow_planted_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, MANIFEST);
    let pkg = tmp.path().join("p.hpkg");
    assert!(exos(&[
        "build",
        "-q",
        src.to_str().unwrap(),
        "-o",
        pkg.to_str().unwrap()
    ])
    .status
    .success());
    let dest = tmp.path().join("dest");
    fs::create_dir_all(dest.join("bin")).unwrap();
    let outside = tmp.path().join("outside");
    std::os::unix::fs::symlink(&outside, dest.join("bin/hello")).unwrap();
    let o = exos(&["extract", pkg.to_str().unwrap(), dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bin/hello"), "{}", stderr(&o));
    assert!(!outside.exists(), "extraction followed a planted symlink");
}

#[test]
fn manifest_errors_name_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"name":"a","version":"1","colour":"red"}"#, "colour"),
        (r#"{"name":"a","version":1}"#, "version"),
        (r#"{"name":"a b","version":"1"}"#, "\"name\""),
        (
            r#"{"name":"a","version":"1","architecture":"vax"}"#,
            "architecture",
        ),
        (
            r#"{"name":"a","version":"1","requires":["x >> 2"]}"#,
            "requires",
        ),
        (r#"{"name":"a""#, "manifest"),
        (
            r#"{"name":"a","version":"1","provides":[{"api":"x","verison":"1"}]}"#,
            "provides[0]",
        ),
    ];
    for (i, (m, key)) in cases.iter().enumerate() {
        let src = tmp.path().join(format!("s{i}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("manifest.json"), m).unwrap();
        let o = exos(&[
            "build",
            src.to_str().unwrap(),
            "-o",
            tmp.path().join("x.hpkg").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{m}");
        let err = stderr(&o);
        assert!(
            err.contains("manifest.json") && err.contains(key),
            "{m}: {err}"
        );
    }
    let o = exos(&["build", tmp.path().join("nope").to_str().unwrap()]);
    assert!(stderr(&o).contains("manifest.json"));
}

#[test]
fn exit_codes_distinguish_invalid_files_from_other_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.hpkg");
    let mut b = fs::read(fixtures_dir().join("generated_mini-uncompressed.hpkg")).unwrap();
    b.truncate(200);
    fs::write(&bad, b).unwrap();
    let o = exos(&["list", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("bad.hpkg"), "{}", stderr(&o));
    let o = exos(&["info", tmp.path().join("missing.hpkg").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.hpkg"));
    let o = exos(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}
