//! Delta packages: `exos delta` / `exos apply` on packages built here and
//! on Haiku-built fixtures, and upgrades over a real nginx that use a
//! published delta, or the whole package when the delta is broken or gone.

mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};

/// A tree of version `v` of a package: a 1 MiB binary-like file that
/// changes a little between versions, small text files, a file only in v1
/// and one only in v2, and one that moves.
fn tree(w: &Path, v: u32) -> PathBuf {
    let t = w.join(format!("src-{v}"));
    fs::create_dir_all(t.join("lib")).unwrap();
    fs::create_dir_all(t.join("share/doc")).unwrap();
    fs::write(
        t.join("manifest.json"),
        complete(&format!(r#"{{"name":"tool","version":"{v}.0"}}"#)),
    )
    .unwrap();
    let mut bin = noise(1 << 20, 0x1234_5678_9abc_def1);
    if v >= 2 {
        // An insertion near the start shifts everything after it.
        bin.splice(1000..1000, b"version two inserted this".iter().copied());
        bin[700_000..700_016].copy_from_slice(b"patched in v2!!!");
    }
    fs::write(t.join("lib/libtool.so"), &bin).unwrap();
    for i in 0..50 {
        fs::write(
            t.join(format!("share/doc/page{i}.txt")),
            format!("page {i} of the manual, version {v}\n").repeat(40),
        )
        .unwrap();
    }
    // Moved to another directory; renamed with its content unchanged.
    let moved = if v == 1 {
        "share/place.dat"
    } else {
        "lib/place.dat"
    };
    fs::write(t.join(moved), noise(200_000, 77)).unwrap();
    let renamed = if v == 1 {
        "share/a-name.bin"
    } else {
        "share/b-name.bin"
    };
    fs::write(t.join(renamed), noise(100_000, 55)).unwrap();
    if v == 1 {
        fs::write(t.join("share/gone.txt"), "only in version 1\n").unwrap();
    } else {
        fs::write(t.join("share/new.bin"), noise(10_000, 99)).unwrap();
    }
    t
}

fn build(w: &Path, v: u32, extra: &[&str]) -> PathBuf {
    let out = w.join(format!("tool-{v}.0{}.hpkg", extra.join("")));
    let t = tree(w, v);
    let mut args = vec!["build", "-q", s(&t), "-o", s(&out)];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

fn size(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

#[test]
fn delta_and_apply_rebuild_packages_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    for extra in [
        &[][..],
        &["-c", "zstd"][..],
        &["-c", "none"][..],
        &["-l", "3"][..],
    ] {
        let v1 = build(w, 1, extra);
        let v2 = build(w, 2, extra);
        let d = w.join("tool.delta");
        let out = w.join("rebuilt.hpkg");
        let _ = fs::remove_file(&out);
        let json = ok(&["delta", s(&v1), s(&v2), "-o", s(&d), "--json"]);
        let stats: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(stats["chunks_literal"], 0, "{extra:?}: {json}");
        assert_eq!(stats["delta_size"].as_u64().unwrap(), size(&d));
        // Unchanged and moved files cost next to nothing.
        assert!(
            size(&d) * 10 < size(&v2),
            "{extra:?}: a {} delta for a {} package",
            size(&d),
            size(&v2)
        );
        ok(&["apply", "-q", s(&v1), s(&d), "-o", s(&out)]);
        assert_eq!(fs::read(&out).unwrap(), fs::read(&v2).unwrap(), "{extra:?}");
    }

    // The wrong old package is refused before anything is written.
    let (v1, v2) = (build(w, 1, &[]), build(w, 2, &[]));
    let d = w.join("tool.delta");
    ok(&["delta", "-q", s(&v1), s(&v2), "-o", s(&d)]);
    let out = w.join("out.hpkg");
    let err = text(&exos(&["apply", s(&v2), s(&d), "-o", s(&out)]).stderr);
    assert!(err.contains("made from a package with SHA-256"), "{err}");
    assert!(!out.exists());

    // A changed byte anywhere past the header: refused, nothing written.
    let good = fs::read(&d).unwrap();
    for at in [200, good.len() / 2, good.len() - 3] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        let bd = w.join("bad.delta");
        fs::write(&bd, &bad).unwrap();
        let o = exos(&["apply", s(&v1), s(&bd), "-o", s(&out)]);
        assert!(!o.status.success(), "a delta changed at {at} applied");
        let err = text(&o.stderr);
        assert!(
            err.contains("bad.delta"),
            "the error names the delta: {err}"
        );
        assert!(!out.exists(), "changed at {at}: output written");
    }
    // Truncated: the rule broken is named.
    fs::write(w.join("short.delta"), &good[..good.len() - 10]).unwrap();
    let err = text(&exos(&["apply", s(&v1), s(&w.join("short.delta")), "-o", s(&out)]).stderr);
    assert!(err.contains("do not add up"), "{err}");
}

#[test]
fn deltas_between_haiku_built_packages_are_exact() {
    // Built by Haiku's own tools: zlib chunks our compressor may not
    // reproduce travel as they are stored; the result is still exact.
    let f = fixtures_dir();
    let w = tempfile::tempdir().unwrap();
    let pairs = [
        (
            "generated_testpkg-zlib.hpkg",
            "generated_testpkg-attrs-zlib.hpkg",
        ),
        ("generated_testpkg-zlib.hpkg", "generated_testpkg-zstd.hpkg"),
        (
            "generated_mini-uncompressed.hpkg",
            "generated_testpkg-zlib.hpkg",
        ),
    ];
    for (a, b) in pairs {
        let (old, new) = (f.join(a), f.join(b));
        let d = w.path().join("d.delta");
        let out = w.path().join("out.hpkg");
        ok(&["delta", "-q", s(&old), s(&new), "-o", s(&d)]);
        ok(&["apply", "-q", s(&old), s(&d), "-o", s(&out)]);
        assert_eq!(
            fs::read(&out).unwrap(),
            fs::read(&new).unwrap(),
            "{a} -> {b}"
        );
    }
}

#[test]
fn upgrades_use_published_deltas_and_never_fail_because_of_one() {
    if !nginx_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let dir = w.join("pub");
    fs::create_dir_all(&dir).unwrap();
    ok(&["key", "generate", "repo", "-d", s(w), "-q"]);
    let key = w.join("repo.key");
    fs::rename(build(w, 1, &[]), dir.join("tool-1.0.hpkg")).unwrap();
    ok(&[
        "repo",
        "index",
        "-q",
        s(&dir),
        "-k",
        s(&key),
        "--deltas",
        "2",
    ]);
    let nginx = Nginx::serve(&dir);
    // Three roots with version 1 installed from the repository.
    let roots: Vec<PathBuf> = (0..3)
        .map(|i| {
            let r = w.join(format!("root{i}"));
            root_with_repo(&r, &nginx.url(), &w.join("repo.pub"));
            ok(&["install", "-q", "tool", "-r", s(&r)]);
            r
        })
        .collect();

    // Version 2 is published with a delta from version 1.
    fs::rename(build(w, 2, &[]), dir.join("tool-2.0.hpkg")).unwrap();
    let said = ok(&["repo", "index", s(&dir), "-k", s(&key), "--deltas", "2"]);
    let delta_name = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".delta"))
        .expect("no delta published");
    assert!(
        said.contains(&delta_name) && said.contains(", 1 deltas,"),
        "{said}"
    );
    let delta_size = size(&dir.join(&delta_name));
    assert!(delta_size * 10 < size(&dir.join("tool-2.0.hpkg")));
    let again = ok(&["repo", "index", s(&dir), "-k", s(&key), "--deltas", "2"]);
    assert!(
        again.contains("kept"),
        "an unchanged delta is made again: {again}"
    );

    let upgrade = |r: &Path| {
        ok(&["repo", "refresh", "-q", "-r", s(r)]);
        let o = exos(&["upgrade", "-y", "-r", s(r)]);
        assert!(o.status.success(), "upgrade failed: {}", text(&o.stderr));
        assert!(state(r).contains("tool-2.0.hpkg"), "{}", state(r));
        ok(&["check", "-q", "-r", s(r)]);
        text(&o.stderr)
    };
    let fetched_whole = |nginx: &Nginx| {
        nginx
            .log()
            .lines()
            .filter(|l| l.contains("GET /tool-2.0.hpkg "))
            .count()
    };
    // 1. The delta is used: the package itself is never fetched.
    let err = upgrade(&roots[0]);
    assert!(err.contains("rebuilt from a"), "{err}");
    assert_eq!(fetched_whole(&nginx), 0, "{}", nginx.log());
    assert!(nginx.log().contains(&delta_name));

    // 2. A corrupted delta (same size): the package is downloaded whole.
    let dp = dir.join(&delta_name);
    let mut bytes = fs::read(&dp).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&dp, &bytes).unwrap();
    let err = upgrade(&roots[1]);
    assert!(err.contains("delta not used"), "{err}");
    assert_eq!(fetched_whole(&nginx), 1, "{}", nginx.log());

    // 3. The delta gone from the server (HTTP 404): the same.
    fs::remove_file(&dp).unwrap();
    let err = upgrade(&roots[2]);
    assert!(err.contains("delta not used"), "{err}");
    assert_eq!(fetched_whole(&nginx), 2, "{}", nginx.log());

    // --deltas 0 takes deltas out of the index and the directory.
    ok(&["repo", "index", "-q", s(&dir), "-k", s(&key)]);
    assert!(!fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".delta")));
    let index = fs::read_to_string(dir.join("index.json")).unwrap();
    assert!(!index.contains("\"deltas\""), "{index}");
}

fn state(root: &Path) -> String {
    ok(&["state", "show", "-r", s(root)])
}
