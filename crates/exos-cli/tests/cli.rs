//! End-to-end tests of the `exos` binary.

mod support;
use support::*;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
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
  "license": "MIT", "copyright": "2026 The EXOS authors",
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

// ---------------------------------------------------------------------------
// Hostile input and Haiku fidelity (issue: hardening).

#[test]
fn listings_escape_control_characters_on_a_terminal_and_pad_by_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let p = hostile(tmp.path(), "control-char-names");
    // Into a pipe or a file: names byte for byte, as Haiku's `package
    // list` writes them.
    let out = stdout(&exos(&["list", p.to_str().unwrap()]));
    for raw in ["new\nline", "esc\x1b[31mred", "tab\there"] {
        assert!(out.contains(raw), "{raw:?} missing in {out:?}");
    }
    let paths = stdout(&exos(&["list", "-p", p.to_str().unwrap()]));
    assert!(paths.contains("new\nline\n"), "{paths:?}");
    // On a terminal (a pty, from script(1)): escaped like `ls -b`, so no
    // name moves the cursor or forges a line; every line is one entry.
    let o = Command::new("script")
        .args([
            "-qec",
            &format!("{} list {}", env!("CARGO_BIN_EXE_exos"), s(&p)),
            "/dev/null",
        ])
        .output()
        .expect("script (bsdutils) runs");
    let out = stdout(&o).replace("\r\n", "\n");
    assert!(!out.contains('\x1b'), "{out:?}");
    for escaped in ["new\\nline", "esc\\033[31mred", "tab\\there"] {
        assert!(out.contains(escaped), "{escaped} missing in {out:?}");
    }
    let entry_lines = out
        .lines()
        .filter(|l| !l.starts_with('\t') && !l.starts_with("package-attributes"))
        .count();
    assert_eq!(entry_lines, 3, "{out}");

    // UTF-8 names are padded to 32 bytes (printf's %-32s), not characters;
    // the sticky bit is not shown; attribute type 0 prints as 0.
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sticky")).unwrap();
    fs::write(
        src.join("manifest.json"),
        r#"{"name":"u","version":"1","summary":"s","license":"MIT","copyright":"c"}"#,
    )
    .unwrap();
    fs::write(src.join("héllo"), "x").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    let mut value = 0u32.to_le_bytes().to_vec();
    value.extend_from_slice(b"v");
    rustix::fs::setxattr(
        src.join("héllo"),
        "user.haiku.zero",
        &value,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let pkg = tmp.path().join("u.hpkg");
    assert!(exos(&[
        "build",
        "-q",
        src.to_str().unwrap(),
        "-o",
        pkg.to_str().unwrap()
    ])
    .status
    .success());
    let out = stdout(&exos(&["list", "-a", pkg.to_str().unwrap()]));
    let line = out.lines().find(|l| l.starts_with("héllo")).unwrap();
    // 5 characters, 6 bytes: 26 spaces of padding, as Haiku's printf pads.
    let expected = format!("héllo{}  {:>8}", " ".repeat(32 - "héllo".len()), 1);
    assert!(line.starts_with(&expected), "{line:?}");
    let sticky = out.lines().find(|l| l.starts_with("sticky")).unwrap();
    assert!(sticky.ends_with("drwxrwxrwx"), "{sticky:?}");
    let attr = out.lines().find(|l| l.contains("<zero")).unwrap();
    assert!(attr.ends_with("  0>"), "{attr:?}");
}

#[test]
fn names_that_are_not_utf8_are_listed_extracted_and_rebuilt_as_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    // Made as Haiku's writer makes it: names are whatever bytes the file
    // system had (Latin-1 "café", a byte-order mark, half UTF-8).
    let p = hostile(tmp.path(), "non-utf8-names");
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    // Into a pipe: the bytes, as Haiku's `package list` writes them.
    let o = exos(&["list", s(&p)]);
    assert!(o.status.success(), "{}", stderr(&o));
    for raw in [
        &b"caf\xe9 "[..],
        b"\xff\xfe ",
        b"mixed-\xc3\xa9-\xe9 ",
        b"-> caf\xe9\n",
    ] {
        assert!(contains(&o.stdout, raw), "{raw:?} missing");
    }
    let o = exos(&["list", "-p", s(&p)]);
    assert!(contains(&o.stdout, b"\nr\xe9p/caf\xe9\n"), "{:?}", o.stdout);
    // On a terminal: escaped like `ls -b`.
    let o = Command::new("script")
        .args([
            "-qec",
            &format!("{} list {}", env!("CARGO_BIN_EXE_exos"), s(&p)),
            "/dev/null",
        ])
        .output()
        .expect("script (bsdutils) runs");
    let shown = stdout(&o);
    for escaped in ["caf\\351", "\\377\\376", "mixed-é-\\351", "-> caf\\351"] {
        assert!(shown.contains(escaped), "{escaped} missing in {shown}");
    }
    // JSON: escaped the same way, and said so.
    let v: serde_json::Value = serde_json::from_slice(&exos(&["list", "--json", s(&p)]).stdout)
        .expect("the listing is JSON");
    let entries = v["entries"].as_array().unwrap();
    let find = |path: &str| entries.iter().find(|e| e["path"] == path).cloned();
    let cafe = find("caf\\351").expect("caf\\351 listed");
    assert_eq!(cafe["escaped"], true);
    let link = find("link").expect("link listed");
    assert_eq!(
        (&link["symlink_target"], &link["escaped"]),
        (&"caf\\351".into(), &true.into())
    );
    assert!(find("r\\351p/caf\\351").is_some(), "{entries:?}");
    // Extracted with the same bytes as names, the link pointing at one.
    let out = tmp.path().join("out");
    let o = exos(&["extract", "-q", s(&p), s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let at = |name: &[u8]| out.join(OsStr::from_bytes(name));
    assert_eq!(fs::read(at(b"caf\xe9")).unwrap(), b"latin-1");
    assert_eq!(
        fs::read(at(b"r\xe9p").join(OsStr::from_bytes(b"caf\xe9"))).unwrap(),
        b"inner"
    );
    assert_eq!(fs::read(at(b"\xff\xfe")).unwrap(), b"bom");
    assert_eq!(
        fs::read_link(at(b"link")).unwrap().as_os_str().as_bytes(),
        b"caf\xe9"
    );
    // And built again from that tree, names unchanged.
    fs::write(
        out.join("manifest.json"),
        r#"{"name":"latin1","version":"1","summary":"s","license":"MIT","copyright":"c"}"#,
    )
    .unwrap();
    let again = tmp.path().join("again.hpkg");
    let o = exos(&["build", "-q", s(&out), "-o", s(&again)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = exos(&["list", "-p", s(&again)]);
    for raw in [&b"\ncaf\xe9\n"[..], b"\nr\xe9p/caf\xe9\n", b"\n\xff\xfe\n"] {
        assert!(
            contains(&o.stdout, raw),
            "{raw:?} missing in {:?}",
            o.stdout
        );
    }
}

#[test]
fn build_extract_build_gives_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, MANIFEST);
    let first = tmp.path().join("first.hpkg");
    assert!(exos(&[
        "build",
        "-q",
        src.to_str().unwrap(),
        "-o",
        first.to_str().unwrap()
    ])
    .status
    .success());
    let out = tmp.path().join("out");
    let o = exos(&[
        "extract",
        "-q",
        first.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The extracted tree holds the generated .PackageInfo: Haiku's
    // `package create` can rebuild it, and so can we, byte for byte.
    let info = fs::read_to_string(out.join(".PackageInfo")).unwrap();
    for key in ["copyrights", "licenses", "summary", "packager", "vendor"] {
        assert!(info.contains(key), "{key} missing in .PackageInfo:\n{info}");
    }
    let second = tmp.path().join("second.hpkg");
    assert!(exos(&[
        "build",
        "-q",
        out.to_str().unwrap(),
        "-o",
        second.to_str().unwrap()
    ])
    .status
    .success());
    assert_eq!(
        fs::read(&first).unwrap(),
        fs::read(&second).unwrap(),
        "build -> extract -> build changed the package"
    );
}

#[test]
fn build_fills_what_haiku_requires_says_so_and_refuses_reserved_names() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("manifest.json"),
        r#"{"name":"a","version":"1","summary":"s"}"#,
    )
    .unwrap();
    // What Haiku's tools need gets stated defaults, each one said.
    let out = tmp.path().join("a.hpkg");
    let o = exos(&["build", s(&src), "-o", s(&out)]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    for said in [
        "no \"license\": \"Unknown\"",
        "no \"copyright\": \"Unknown\"",
        "no \"vendor\": \"EXOS\" used; Haiku's package_repo",
    ] {
        assert!(e.contains(said), "{said}: {e}");
    }
    let info = stdout(&exos(&["list", "-i", s(&out)]));
    assert!(info.contains("Unknown"), "{info}");
    fs::write(
        src.join("manifest.json"),
        r#"{"name":"a","version":"1","summary":"s","license":"MIT","copyright":"c"}"#,
    )
    .unwrap();
    fs::create_dir_all(src.join(".packages/victim")).unwrap();
    let o = exos(&[
        "build",
        "-q",
        src.to_str().unwrap(),
        "-o",
        tmp.path().join("a.hpkg").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(".packages"), "{}", stderr(&o));
}

#[test]
fn a_failed_extraction_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let p = hostile(tmp.path(), "data-chunk-flipped");
    let dest = tmp.path().join("new");
    let o = exos(&["extract", p.to_str().unwrap(), dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("nothing was extracted"),
        "{}",
        stderr(&o)
    );
    assert!(!dest.exists());
    // Into an existing directory: it keeps exactly what it had.
    let existing = tmp.path().join("existing");
    fs::create_dir(&existing).unwrap();
    fs::write(existing.join("keep"), "k").unwrap();
    let o = exos(&["extract", p.to_str().unwrap(), existing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let names: Vec<_> = fs::read_dir(&existing)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep"]);
}

#[test]
fn install_and_check_refuse_packages_whose_data_does_not_decompress() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    assert!(exos(&["init", root.to_str().unwrap()]).status.success());
    for case in ["data-chunk-flipped", "data-chunk-bomb"] {
        let p = hostile(tmp.path(), case);
        let o = exos(&["install", "-r", root.to_str().unwrap(), p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(3), "{case}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("heap chunk 0") && e.contains("data of f"),
            "{case}: {e}"
        );
    }
    // A package mounts would refuse is refused at install already.
    for case in ["reserved-packages-dir", "reserved-packages-file"] {
        let p = hostile(tmp.path(), case);
        let o = exos(&["install", "-r", root.to_str().unwrap(), p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{case}: {}", stderr(&o));
        assert!(stderr(&o).contains("reserves"), "{}", stderr(&o));
    }
    // A corrupt package placed by hand under its right SHA-256: `check` finds it.
    let p = hostile(tmp.path(), "data-chunk-flipped");
    fs::copy(&p, root.join("system/packages/bad.hpkg")).unwrap();
    let sha = stdout(&exos(&["checksum", p.to_str().unwrap()]));
    let sha = sha.split_whitespace().next().unwrap();
    fs::write(
        root.join("system/state/active.list"),
        format!("# exos state\nsystem bad.hpkg {sha}\n"),
    )
    .unwrap();
    let o = exos(&["check", "-r", root.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("bad.hpkg") && stderr(&o).contains("data of f"),
        "{}",
        stderr(&o)
    );
}
