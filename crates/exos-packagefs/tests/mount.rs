//! packagefs for real: mount, read, unmount (needs /dev/fuse; run as root).
//!
//! Without /dev/fuse these tests say so loudly and pass; with `CI=true`
//! they fail instead, so CI can never skip them silently.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exos_hpkg::{build_from_dir, BuildOptions, Compression};
use exos_manifest::Manifest;
use exos_packagefs::fs::XattrPolicy;
use exos_packagefs::{Mount, MountOptions};

fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("/dev/fuse is missing, and CI=true: FUSE tests must not be skipped");
    }
    eprintln!("\n!!!!!!!! /dev/fuse is missing: packagefs tests NOT RUN !!!!!!!!\n");
    false
}

/// Builds `dir` (which has a manifest.json) into `out`.
fn build(dir: &Path, out: &Path) {
    let manifest = Manifest::load(&dir.join("manifest.json")).unwrap();
    let options = BuildOptions::with_compression(Compression::Zlib);
    build_from_dir(
        dir,
        out,
        &manifest.to_package_info(),
        options,
        &mut |_| {},
        &mut |_| {},
    )
    .unwrap();
}

/// Writes a package source tree: a manifest and the given files.
fn source(base: &Path, manifest: &str, files: &[(&str, &str)]) -> PathBuf {
    let v: serde_json::Value = serde_json::from_str(manifest).unwrap();
    let dir = base.join(format!(
        "src-{}-{}",
        v["name"].as_str().unwrap(),
        v["version"].as_str().unwrap()
    ));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("manifest.json"), manifest).unwrap();
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    }
    dir
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    mnt: PathBuf,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    for layer in ["system", "common", "user"] {
        fs::create_dir_all(root.join(layer).join("packages")).unwrap();
    }
    let mnt = tmp.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    Fixture {
        root,
        mnt,
        work,
        _tmp: tmp,
    }
}

impl Fixture {
    fn add(&self, layer: &str, file: &str, manifest: &str, files: &[(&str, &str)]) -> PathBuf {
        let src = source(&self.work, manifest, files);
        let out = self.root.join(layer).join("packages").join(file);
        build(&src, &out);
        out
    }

    fn mount(&self) -> Mount {
        self.mount_with(|_| {})
    }

    fn mount_with(&self, change: impl FnOnce(&mut MountOptions)) -> Mount {
        let mut o = MountOptions::new(self.root.clone(), self.mnt.clone());
        o.allow_other = false;
        o.cache_bytes = 8 << 20;
        change(&mut o);
        Mount::start(o).expect("mount")
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.mnt.join(".exos/status.json")).unwrap()).unwrap()
    }
}

/// Polls `f` for up to ten seconds (the live re-activation is a thread of
/// its own, which a loaded machine may run late); returns how long it took.
fn within(f: impl Fn() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn layers_merge_with_user_over_common_over_system() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    fx.add(
        "system",
        "base.hpkg",
        r#"{"name":"base","version":"1.0"}"#,
        &[
            ("bin/tool", "system tool\n"),
            ("share/base/readme", "base\n"),
            ("etc/conf", "system conf\n"),
        ],
    );
    fx.add(
        "common",
        "site.hpkg",
        r#"{"name":"site","version":"1.0"}"#,
        &[("etc/conf", "common conf\n"), ("share/site/x", "site\n")],
    );
    fx.add(
        "user",
        "mine.hpkg",
        r#"{"name":"mine","version":"2.0"}"#,
        &[("bin/tool", "user tool\n")],
    );
    let m = fx.mount();
    let read = |p: &str| fs::read_to_string(fx.mnt.join(p)).unwrap();
    assert_eq!(read("system/bin/tool"), "system tool\n");
    assert_eq!(read("user/bin/tool"), "user tool\n");
    assert_eq!(read("merged/bin/tool"), "user tool\n");
    assert_eq!(read("merged/etc/conf"), "common conf\n");
    assert_eq!(read("merged/share/base/readme"), "base\n");
    assert_eq!(read("merged/share/site/x"), "site\n");
    assert!(!fx.mnt.join("common/bin").exists());
    // Each package's manifest is under .packages/<name>/, never in the union.
    assert!(!fx.mnt.join("merged/manifest.json").exists());
    assert!(!fx.mnt.join("system/manifest.json").exists());
    let m_json = read("system/.packages/base/manifest.json");
    assert!(m_json.contains("\"base\""), "{m_json}");
    assert!(fx.mnt.join("merged/.packages/mine/manifest.json").exists());
    assert!(fx.mnt.join("user/.packages/mine/.PackageInfo").exists());
    let mut names: Vec<String> = fs::read_dir(fx.mnt.join("merged"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".packages", "bin", "etc", "share"]);
    // Read-only.
    assert!(fs::write(fx.mnt.join("merged/bin/tool"), "x").is_err());
    assert!(fs::create_dir(fx.mnt.join("merged/new")).is_err());
    m.unmount().unwrap();
    assert!(!fx.mnt.join("merged").exists(), "still mounted");
}

#[test]
fn conflicts_inside_a_layer_are_deterministic_and_reported() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let a = source(
        &fx.work,
        r#"{"name":"a","version":"1"}"#,
        &[("bin/x", "from a\n")],
    );
    let b = source(
        &fx.work,
        r#"{"name":"b","version":"1"}"#,
        &[("bin/x", "from b\n")],
    );
    // a's copy is newer: it wins although b sorts later.
    let newer = std::time::SystemTime::now();
    let older = newer - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(a.join("bin/x"))
        .unwrap()
        .set_modified(newer)
        .unwrap();
    fs::File::options()
        .write(true)
        .open(b.join("bin/x"))
        .unwrap()
        .set_modified(older)
        .unwrap();
    build(&a, &fx.root.join("system/packages/a.hpkg"));
    build(&b, &fx.root.join("system/packages/b.hpkg"));
    let m = fx.mount();
    assert_eq!(
        fs::read_to_string(fx.mnt.join("system/bin/x")).unwrap(),
        "from a\n"
    );
    let status = fx.status();
    let c = &status["conflicts"][0];
    // The path inside the layer; `exos status` prints layer/path.
    assert_eq!(c["layer"], "system");
    assert_eq!(c["path"], "bin/x");
    assert_eq!(c["winner"], "a.hpkg");
    assert_eq!(c["loser"], "b.hpkg");
    m.unmount().unwrap();
}

#[test]
fn bad_packages_and_missing_system_apis_are_refused_the_rest_mounts() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    fx.add(
        "system",
        "ok.hpkg",
        r#"{"name":"ok","version":"1"}"#,
        &[("bin/ok", "fine\n")],
    );
    fx.add(
        "system",
        "gpu.hpkg",
        r#"{"name":"gpu","version":"1","uses":["system.cuda >=12"]}"#,
        &[("bin/gpu", "needs cuda\n")],
    );
    fx.add(
        "user",
        "needs_gpu.hpkg",
        r#"{"name":"needs_gpu","version":"1","uses":["gpu"]}"#,
        &[("bin/needs_gpu", "needs gpu\n")],
    );
    fs::write(
        fx.root.join("system/packages/broken.hpkg"),
        b"hpkg\x00\x00garbage",
    )
    .unwrap();
    let mut truncated = fs::read(fx.root.join("system/packages/ok.hpkg")).unwrap();
    truncated.truncate(truncated.len() / 2);
    fs::write(fx.root.join("common/packages/truncated.hpkg"), truncated).unwrap();
    let m = fx.mount();
    assert_eq!(
        fs::read_to_string(fx.mnt.join("merged/bin/ok")).unwrap(),
        "fine\n"
    );
    assert!(!fx.mnt.join("merged/bin/gpu").exists());
    assert!(
        !fx.mnt.join("merged/bin/needs_gpu").exists(),
        "its provider was refused"
    );
    let status = fx.status();
    let refused: Vec<(String, String)> = status["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = r["file"].as_str().unwrap();
            (
                f.rsplit('/').next().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason = |f: &str| {
        refused
            .iter()
            .find(|r| r.0 == f)
            .map(|r| r.1.clone())
            .unwrap_or_default()
    };
    assert!(reason("gpu.hpkg").contains("system.cuda"), "{refused:?}");
    assert!(reason("needs_gpu.hpkg").contains("gpu"), "{refused:?}");
    assert!(reason("broken.hpkg").contains("broken.hpkg"), "{refused:?}");
    assert!(!reason("truncated.hpkg").is_empty(), "{refused:?}");
    m.unmount().unwrap();

    // The host can provide the API.
    let mut o = MountOptions::new(fx.root.clone(), fx.mnt.clone());
    o.allow_other = false;
    o.host_apis = vec![exos_manifest::Provide {
        api: "system.cuda".into(),
        version: Some(exos_hpkg::Version::parse("12.4").unwrap()),
        compatible: None,
    }];
    let m = Mount::start(o).unwrap();
    assert!(fx.mnt.join("merged/bin/gpu").exists());
    assert!(fx.mnt.join("merged/bin/needs_gpu").exists());
    m.unmount().unwrap();
}

#[test]
fn live_activation_and_open_files_of_removed_packages() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let big: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
    let first = fx.add(
        "system",
        "first.hpkg",
        r#"{"name":"first","version":"1"}"#,
        &[("share/first/big", big.as_str())],
    );
    let m = fx.mount();
    // Open before removal; read after.
    let mut f = fs::File::open(fx.mnt.join("merged/share/first/big")).unwrap();
    // Drop a package in: visible within a second.
    let src = source(
        &fx.work,
        r#"{"name":"second","version":"1"}"#,
        &[("bin/second", "second\n")],
    );
    let tmp = fx.root.join("user/packages/.second.tmp");
    build(&src, &tmp);
    fs::rename(&tmp, fx.root.join("user/packages/second.hpkg")).unwrap();
    let t = within(|| fx.mnt.join("merged/bin/second").exists()).expect("new package visible");
    assert!(t < Duration::from_secs(1), "{t:?}");
    assert_eq!(
        fs::read_to_string(fx.mnt.join("merged/bin/second")).unwrap(),
        "second\n"
    );
    // Remove the first package: its path goes, the open file still reads.
    fs::remove_file(&first).unwrap();
    let t = within(|| !fx.mnt.join("merged/share/first/big").exists()).expect("removal visible");
    assert!(t < Duration::from_secs(1), "{t:?}");
    let mut content = String::new();
    use std::io::Read;
    f.read_to_string(&mut content).unwrap();
    assert!(
        content == big,
        "open file read {} of {} bytes",
        content.len(),
        big.len()
    );
    drop(f);
    // Replacing a package with new content under the same file name.
    fx.add(
        "user",
        "second.hpkg",
        r#"{"name":"second","version":"2"}"#,
        &[("bin/second", "second v2\n")],
    );
    within(|| {
        fs::read_to_string(fx.mnt.join("merged/bin/second")).is_ok_and(|s| s == "second v2\n")
    })
    .expect("replaced package visible");
    let status = fx.status();
    assert!(status["generation"].as_u64().unwrap() >= 3);
    m.unmount().unwrap();
}

/// When a mount's content digests arrive, only files whose bytes appear
/// more than once take an inode by content; a file whose bytes are its own
/// keeps its number (and the pages the kernel cached under it).
#[test]
fn digests_arriving_renumber_only_shared_files() {
    let fx = fixture();
    let same = "shared bytes\n".repeat(100);
    fx.add(
        "system",
        "a.hpkg",
        r#"{"name":"a","version":"1"}"#,
        &[("share/a/same", same.as_str()), ("share/a/own", "only a\n")],
    );
    fx.add(
        "system",
        "b.hpkg",
        r#"{"name":"b","version":"1"}"#,
        &[("share/b/same", same.as_str()), ("share/b/own", "only b\n")],
    );
    let scanner = exos_packagefs::activate::Scanner::new(
        fx.root.clone(),
        Vec::new(),
        std::sync::Arc::new(exos_packagefs::cache::ChunkCache::new(8 << 20)),
    );
    let activation = scanner.scan(None);
    let settings = exos_packagefs::view::ViewSettings::new(exos_packagefs::Privileges::default());
    let ino = |view: &exos_packagefs::view::View, path: &str| {
        view.node(view.lookup_path(path).unwrap_or_else(|| panic!("{path}")))
            .ino
    };
    let before = exos_packagefs::view::View::build(&activation, &settings);
    assert_ne!(
        ino(&before, "merged/share/a/same"),
        ino(&before, "merged/share/b/same")
    );
    for p in activation.all() {
        let d = p.package.content_digests().unwrap();
        p.digests
            .set(std::sync::Arc::new(exos_root::digests::ContentDigests(d)))
            .unwrap();
    }
    let after = exos_packagefs::view::View::build(&activation, &settings);
    assert_eq!(
        ino(&after, "merged/share/a/same"),
        ino(&after, "merged/share/b/same")
    );
    for own in [
        "merged/share/a/own",
        "merged/share/b/own",
        "system/share/a/own",
    ] {
        assert_eq!(ino(&before, own), ino(&after, own), "{own} was renumbered");
    }
    assert_ne!(
        ino(&after, "merged/share/a/same"),
        ino(&before, "merged/share/a/same"),
        "a shared file kept its own number"
    );
}

/// A package replaced again and again under readers: every path it has in
/// both versions reads whole, as one version or the other, never missing —
/// although each swap gives its files new inode numbers (lookups racing a
/// swap once answered with an inode neither view nor the orphan table knew).
#[test]
fn files_stay_readable_while_the_view_is_swapped_under_readers() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let paths: Vec<String> = (0..120)
        .map(|i| format!("share/churn/d{}/f{i}", i % 12))
        .collect();
    let version = |v: &str| -> PathBuf {
        let contents: Vec<String> = paths.iter().map(|p| format!("{p} v{v}\n")).collect();
        let files: Vec<(&str, &str)> = paths
            .iter()
            .map(String::as_str)
            .zip(contents.iter().map(String::as_str))
            .collect();
        let src = source(
            &fx.work,
            &format!(r#"{{"name":"churn","version":"{v}"}}"#),
            &files,
        );
        let out = fx.work.join(format!("churn-{v}.hpkg"));
        build(&src, &out);
        out
    };
    let (one, two) = (version("1"), version("2"));
    let installed = fx.root.join("system/packages/churn.hpkg");
    fs::copy(&one, &installed).unwrap();
    let m = fx.mount();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (stop, paths) = (stop.clone(), paths.clone());
            let merged = fx.mnt.join("merged");
            std::thread::spawn(move || {
                let (mut reads, mut failures) = (0u64, Vec::new());
                let mut i = r * 7;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let p = &paths[i % paths.len()];
                    match fs::read_to_string(merged.join(p)) {
                        Ok(s) if s == format!("{p} v1\n") || s == format!("{p} v2\n") => {}
                        Ok(s) => failures.push(format!("{p}: read {s:?}")),
                        Err(e) => failures.push(format!("{p}: {e}")),
                    }
                    reads += 1;
                    i += 1;
                }
                (reads, failures)
            })
        })
        .collect();
    for round in 0..30 {
        let (next, want) = if round % 2 == 0 {
            (&two, "v2")
        } else {
            (&one, "v1")
        };
        let tmp = fx.root.join("system/packages/.churn.tmp");
        fs::copy(next, &tmp).unwrap();
        fs::rename(&tmp, &installed).unwrap();
        let probe = fx.mnt.join("merged").join(&paths[0]);
        within(|| fs::read_to_string(&probe).is_ok_and(|s| s.ends_with(&format!("{want}\n"))))
            .unwrap_or_else(|| panic!("round {round}: {want} never shown"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        let (reads, failures) = r.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} failed reads: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        total += reads;
    }
    assert!(total > 300, "only {total} reads while swapping");
    m.unmount().unwrap();
}

/// `.exos/status.json` gets a new inode with every view (its content
/// changes). A reader that looked it up in one view and reads it after
/// the next was swapped in must still get a whole status — the one it
/// looked up — never ENOENT (`exos status` failed so right after a live
/// re-activation).
#[test]
fn the_status_file_reads_whole_while_views_are_swapped() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    fx.add(
        "system",
        "base.hpkg",
        r#"{"name":"base","version":"1"}"#,
        &[("share/base", "base\n")],
    );
    let extra = fx.add(
        "system",
        "extra.hpkg",
        r#"{"name":"extra","version":"1"}"#,
        &[("share/extra", "extra\n")],
    );
    let kept = fx.work.join("extra.hpkg");
    fs::rename(&extra, &kept).unwrap();
    let m = fx.mount();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            let status = fx.mnt.join(".exos/status.json");
            std::thread::spawn(move || {
                let (mut reads, mut failures) = (0u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match fs::read(&status) {
                        Ok(b) => {
                            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&b) {
                                failures.push(format!("not whole JSON ({} bytes): {e}", b.len()));
                            }
                        }
                        Err(e) => failures.push(e.to_string()),
                    }
                    reads += 1;
                }
                (reads, failures)
            })
        })
        .collect();
    let installed = fx.root.join("system/packages/extra.hpkg");
    for round in 0..40 {
        let tmp = fx.root.join("system/packages/.extra.tmp");
        if round % 2 == 0 {
            fs::copy(&kept, &tmp).unwrap();
            fs::rename(&tmp, &installed).unwrap();
        } else {
            fs::remove_file(&installed).unwrap();
        }
        let shown = fx.mnt.join("system/share/extra");
        assert!(
            within(|| shown.exists() == (round % 2 == 0)).is_some(),
            "round {round}: the view did not follow"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        let (reads, failures) = r.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} of {reads} reads of status.json failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
    m.unmount().unwrap();
}

#[test]
fn programs_run_with_libraries_from_another_package() {
    if !fuse_available() {
        return;
    }
    if std::process::Command::new("cc")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("cc is missing in CI (build-essential)");
        }
        eprintln!("\n!!!!!!!! no C compiler: executable test NOT RUN !!!!!!!!\n");
        return;
    }
    let fx = fixture();
    let lib_src = fx.work.join("libgreet");
    fs::create_dir_all(lib_src.join("lib")).unwrap();
    fs::write(
        lib_src.join("manifest.json"),
        r#"{"name":"libgreet","version":"1.0","provides":[{"api":"libgreet","version":"1.0"}]}"#,
    )
    .unwrap();
    let c = fx.work.join("greet.c");
    fs::write(
        &c,
        "#include <stdio.h>\nvoid greet(void) { puts(\"hello from libgreet\"); }\n",
    )
    .unwrap();
    let ok = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(lib_src.join("lib/libgreet.so"))
        .arg(&c)
        .status()
        .unwrap();
    assert!(ok.success());
    let app_src = fx.work.join("app");
    fs::create_dir_all(app_src.join("bin")).unwrap();
    fs::write(
        app_src.join("manifest.json"),
        r#"{"name":"app","version":"1.0","requires":["libgreet >=1.0"]}"#,
    )
    .unwrap();
    let main_c = fx.work.join("main.c");
    fs::write(
        &main_c,
        "void greet(void);\nint main(void) { greet(); return 0; }\n",
    )
    .unwrap();
    let ok = std::process::Command::new("cc")
        .arg("-o")
        .arg(app_src.join("bin/app"))
        .arg(&main_c)
        .arg("-L")
        .arg(lib_src.join("lib"))
        .args(["-lgreet", "-Wl,-rpath,$ORIGIN/../lib"])
        .status()
        .unwrap();
    assert!(ok.success());
    build(&lib_src, &fx.root.join("system/packages/libgreet.hpkg"));
    build(&app_src, &fx.root.join("user/packages/app.hpkg"));
    let m = fx.mount();
    let bin = fx.mnt.join("merged/bin/app");
    assert_eq!(
        fs::metadata(&bin).unwrap().permissions().mode() & 0o111,
        0o111
    );
    let out = std::process::Command::new(&bin).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from libgreet\n"
    );
    // The library really is the mounted one.
    let maps = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "LD_DEBUG=libs {} 2>&1 | grep 'calling init' | grep libgreet",
            bin.display()
        ))
        .output()
        .unwrap();
    let maps = String::from_utf8_lossy(&maps.stdout);
    assert!(
        maps.contains(
            &fx.mnt
                .join("merged/bin/../lib/libgreet.so")
                .display()
                .to_string()
        ),
        "{maps}"
    );
    m.unmount().unwrap();
}

#[test]
fn extended_attributes_come_from_the_package() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let src = source(
        &fx.work,
        r#"{"name":"attrs","version":"1"}"#,
        &[("doc/readme", "text\n")],
    );
    let value = [
        b"MIMS".iter().rev().copied().collect::<Vec<u8>>(),
        b"text/plain\0".to_vec(),
    ]
    .concat();
    match rustix_setxattr(&src.join("doc/readme"), "user.haiku.BEOS:TYPE", &value) {
        Ok(()) => {}
        Err(e) => {
            eprintln!(
                "!!!!!!!! xattrs unsupported on the temp fs ({e}): attribute test NOT RUN !!!!!!!!"
            );
            return;
        }
    }
    build(&src, &fx.root.join("system/packages/attrs.hpkg"));
    let m = fx.mount();
    let p = fx.mnt.join("merged/doc/readme");
    let out = std::process::Command::new("getfattr")
        .args(["-d", "-m", "-", "-e", "hex"])
        .arg(&p)
        .output();
    let got = xattr_get(&p, "user.haiku.BEOS:TYPE").unwrap();
    assert_eq!(got, value);
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("user.haiku.BEOS:TYPE"), "getfattr: {text}");
    }
    m.unmount().unwrap();
}

fn rustix_setxattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    rustix::fs::setxattr(path, name, value, rustix::fs::XattrFlags::empty()).map_err(Into::into)
}

fn xattr_get(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::getxattr(path, name, &mut buf[..])?;
    buf.truncate(n);
    Ok(buf)
}

/// Packages built from real system trees, mounted: every file's bytes,
/// mode, size, symlink target and mtime match the source. (Without sharing:
/// identical files shared as one inode show one modification time.)
#[test]
fn large_real_trees_read_back_exactly() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let trees: Vec<&str> = ["/usr/include", "/usr/lib/python3.11", "/usr/share/perl"]
        .into_iter()
        .filter(|t| Path::new(t).is_dir())
        .collect();
    assert!(!trees.is_empty(), "no source trees found");
    for (i, t) in trees.iter().enumerate() {
        let m = Manifest::parse(
            format!(r#"{{"name":"tree{i}","version":"1"}}"#).as_bytes(),
            "t",
        )
        .unwrap();
        let out = fx.root.join(format!("system/packages/tree{i}.hpkg"));
        build_from_dir(
            Path::new(t),
            &out,
            &m.to_package_info(),
            BuildOptions::with_compression(Compression::Zlib),
            &mut |_| {},
            &mut |_| {},
        )
        .unwrap();
    }
    let m = fx.mount_with(|o| o.share_identical = false);
    let (mut files, mut links, mut bytes) = (0u64, 0u64, 0u64);
    for t in &trees {
        let mut stack = vec![PathBuf::from(t)];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let src = e.unwrap().path();
                let rel = src.strip_prefix(t).unwrap();
                let mounted = fx.mnt.join("system").join(rel);
                let sm = fs::symlink_metadata(&src).unwrap();
                let mm = fs::symlink_metadata(&mounted)
                    .unwrap_or_else(|e| panic!("{}: {e}", mounted.display()));
                assert_eq!(sm.mode(), mm.mode(), "{}", rel.display());
                assert_eq!(sm.mtime(), mm.mtime(), "{}", rel.display());
                assert_eq!(sm.mtime_nsec(), mm.mtime_nsec(), "{}", rel.display());
                if sm.is_dir() {
                    stack.push(src);
                } else if sm.file_type().is_symlink() {
                    assert_eq!(
                        fs::read_link(&src).unwrap(),
                        fs::read_link(&mounted).unwrap()
                    );
                    links += 1;
                } else {
                    assert_eq!(sm.len(), mm.len(), "{}", rel.display());
                    let (a, b) = (fs::read(&src).unwrap(), fs::read(&mounted).unwrap());
                    assert!(a == b, "{}: content differs", rel.display());
                    files += 1;
                    bytes += a.len() as u64;
                }
            }
        }
    }
    eprintln!("compared {files} files ({bytes} bytes) and {links} symlinks");
    assert!(files > 1000);
    m.unmount().unwrap();
}

// ---------------------------------------------------------------------------
// Hostile packages and privileges (issue: hardening).

/// The fixture's directories, opened to other users (tempdirs are 0700).
fn open_to_everyone(fx: &Fixture) {
    let mut p = fx.root.parent().unwrap().to_path_buf();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["root", "mnt"] {
        p.push(d);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p.pop();
    }
}

fn mount_with(fx: &Fixture, f: impl FnOnce(&mut MountOptions)) -> Mount {
    let mut o = MountOptions::new(fx.root.clone(), fx.mnt.clone());
    o.allow_other = false;
    f(&mut o);
    Mount::start(o).expect("mount")
}

/// Runs a command as `nobody` (uid 65534): a real unprivileged user.
fn as_nobody(cmd: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd)
        .args(args)
        .output()
        .expect("run setpriv")
}

/// Mount options of `mnt` as the kernel reports them (findmnt's OPTIONS).
fn mount_options(mnt: &Path) -> String {
    let o = std::process::Command::new("findmnt")
        .args(["-n", "-o", "OPTIONS", "--mountpoint"])
        .arg(mnt)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A package whose `bin/myid` is a copy of /usr/bin/id with mode 4755.
fn add_setuid_id(fx: &Fixture, layer: &str, name: &str) {
    let src = fx.work.join(format!("suid-{name}"));
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(
        src.join("manifest.json"),
        format!(r#"{{"name":"{name}","version":"1.0"}}"#),
    )
    .unwrap();
    fs::copy("/usr/bin/id", src.join("bin/myid")).unwrap();
    fs::set_permissions(src.join("bin/myid"), fs::Permissions::from_mode(0o4755)).unwrap();
    build(
        &src,
        &fx.root
            .join(layer)
            .join("packages")
            .join(format!("{name}.hpkg")),
    );
}

fn euid_of(fx: &Fixture, path: &str) -> String {
    let o = as_nobody(&fx.mnt.join(path), &["-u"]);
    assert!(o.status.success(), "{path}: {o:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn setuid_bits_never_come_from_user_or_common_and_the_mount_is_nosuid_nodev() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    open_to_everyone(&fx);
    add_setuid_id(&fx, "system", "sysid");
    add_setuid_id(&fx, "common", "comid");
    add_setuid_id(&fx, "user", "usrid");

    // Default: nosuid,nodev; no layer serves the bits; nobody stays nobody.
    let m = mount_with(&fx, |o| o.allow_other = true);
    let opts = mount_options(&fx.mnt);
    assert!(opts.contains("nosuid") && opts.contains("nodev"), "{opts}");
    for layer in ["system", "common", "user", "merged"] {
        let mode = fs::metadata(fx.mnt.join(layer).join("bin/myid"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o6000, 0, "{layer}: {mode:o}");
        assert_eq!(
            euid_of(&fx, &format!("{layer}/bin/myid")),
            "65534",
            "{layer}"
        );
    }
    let st = fx.status();
    assert_eq!(st["security"]["nosuid"], true);
    assert_eq!(st["security"]["setuid"]["system"], false);
    m.unmount().unwrap();

    // --allow-setuid: the system layer's setuid program works (root-only
    // layer), common and user copies still run as the caller.
    let m = mount_with(&fx, |o| {
        o.allow_other = true;
        o.privileges.setuid_from_system = true;
    });
    let opts = mount_options(&fx.mnt);
    assert!(!opts.contains("nosuid") && opts.contains("nodev"), "{opts}");
    let mode = fs::metadata(fx.mnt.join("system/bin/myid")).unwrap().mode();
    assert_eq!(mode & 0o4000, 0o4000, "{mode:o}");
    assert_eq!(euid_of(&fx, "system/bin/myid"), "0");
    for layer in ["common", "user", "merged"] {
        assert_eq!(
            euid_of(&fx, &format!("{layer}/bin/myid")),
            "65534",
            "{layer}"
        );
    }
    // A user layer belongs to the owner of its packages directory.
    std::os::unix::fs::chown(fx.root.join("user/packages"), Some(65534), Some(65534)).unwrap();
    fs::rename(
        fx.root.join("user/packages/usrid.hpkg"),
        fx.root.join("user/packages/usrid2.hpkg"),
    )
    .unwrap();
    assert!(
        within(|| fs::metadata(fx.mnt.join("user/bin/myid")).is_ok_and(|m| m.uid() == 65534))
            .is_some(),
        "user layer files did not become the user's"
    );
    assert_eq!(
        fs::metadata(fx.mnt.join("system/bin/myid")).unwrap().uid(),
        0
    );
    assert_eq!(euid_of(&fx, "user/bin/myid"), "65534");
    // A system layer others can write loses its setuid bits.
    fs::set_permissions(
        fx.root.join("system/packages"),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    fs::rename(
        fx.root.join("system/packages/sysid.hpkg"),
        fx.root.join("system/packages/sysid2.hpkg"),
    )
    .unwrap();
    assert!(
        within(
            || fs::metadata(fx.mnt.join("system/bin/myid")).is_ok_and(|m| m.mode() & 0o4000 == 0)
        )
        .is_some(),
        "a world-writable system layer still serves setuid bits"
    );
    assert_eq!(euid_of(&fx, "system/bin/myid"), "65534");
    m.unmount().unwrap();
}

#[test]
fn any_timestamp_is_served_and_never_kills_the_mount() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let case = exos_hostile::cases()
        .into_iter()
        .find(|c| c.name == "mtime-max")
        .unwrap();
    fs::write(fx.root.join("system/packages/t.hpkg"), &case.bytes).unwrap();
    let m = fx.mount();
    let max = std::time::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64);
    for name in ["max", "two63", "d"] {
        let meta = fs::symlink_metadata(fx.mnt.join("system").join(name)).unwrap();
        let mtime = meta.modified().unwrap();
        assert!(mtime == max || name == "two63", "{name}: {mtime:?}");
    }
    // `ls -l` of everything, twice: the mount is still serving.
    for _ in 0..2 {
        let o = std::process::Command::new("ls")
            .arg("-lR")
            .arg(&fx.mnt)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    }
    assert_eq!(fs::read(fx.mnt.join("system/max")).unwrap(), b"a");
    m.unmount().unwrap();
}

#[test]
fn packages_cannot_spoof_or_hide_package_metadata() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    fx.add(
        "system",
        "victim.hpkg",
        r#"{"name":"victim","version":"1.0","summary":"the real one"}"#,
        &[("bin/v", "v\n")],
    );
    for case in exos_hostile::cases()
        .into_iter()
        .filter(|c| c.name.starts_with("reserved-"))
    {
        fs::write(
            fx.root.join("system/packages").join(case.file_name()),
            &case.bytes,
        )
        .unwrap();
    }
    let m = fx.mount();
    let manifest =
        fs::read_to_string(fx.mnt.join("system/.packages/victim/manifest.json")).unwrap();
    assert!(manifest.contains("the real one"), "{manifest}");
    let listed: Vec<String> = fs::read_dir(fx.mnt.join("merged/.packages"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, ["victim"]);
    let st = fx.status();
    let refused = st["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{refused:?}");
    for r in refused {
        assert!(r["reason"].as_str().unwrap().contains("reserves"), "{r:?}");
    }
    m.unmount().unwrap();
}

#[test]
fn a_directory_that_wins_over_a_file_keeps_all_its_entries() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    // In one layer: A has X/f (mtime 1000), B a file X (2000), C X/{f,g} (3000).
    let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
    let mk = |name: &str, files: &[(&str, &str)], secs: u64| {
        let src = source(
            &fx.work,
            &format!(r#"{{"name":"{name}","version":"1.0"}}"#),
            files,
        );
        for (p, _) in files {
            let f = fs::File::options().write(true).open(src.join(p)).unwrap();
            f.set_modified(at(secs)).unwrap();
        }
        let x = src.join("X");
        fs::File::open(&x).unwrap().set_modified(at(secs)).unwrap();
        build(
            &src,
            &fx.root.join("system/packages").join(format!("{name}.hpkg")),
        );
    };
    mk("a", &[("X/f", "a\n")], 1000);
    mk("b", &[("X", "b\n")], 2000);
    mk("c", &[("X/f", "c\n"), ("X/g", "g\n")], 3000);
    let m = fx.mount();
    for view in ["system", "merged"] {
        let mut names: Vec<String> = fs::read_dir(fx.mnt.join(view).join("X"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["f", "g"], "{view}");
        assert_eq!(
            fs::read_to_string(fx.mnt.join(view).join("X/f")).unwrap(),
            "c\n"
        );
    }
    let st = fx.status();
    let conflicts = st["conflicts"].as_array().unwrap();
    let xf = conflicts.iter().find(|c| c["path"] == "X/f").unwrap();
    assert_eq!(xf["winner"], "c.hpkg");
    assert_eq!(xf["layer"], "system");
    m.unmount().unwrap();
}

#[test]
fn a_mount_memory_budget_refuses_packages_past_it_lower_layers_first() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let files: Vec<(String, String)> = (0..400)
        .map(|i| (format!("f/{i}"), format!("{i}\n")))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    fx.add(
        "system",
        "s.hpkg",
        r#"{"name":"s","version":"1.0"}"#,
        &files,
    );
    fx.add("user", "u.hpkg", r#"{"name":"u","version":"1.0"}"#, &files);
    // Room for one of the two.
    let m = mount_with(&fx, |o| o.memory_budget = 120_000);
    let st = fx.status();
    assert_eq!(st["layers"]["system"].as_array().unwrap().len(), 1, "{st}");
    let refused = st["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{st}");
    assert_eq!(refused[0]["layer"], "user");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("memory budget"),
        "{refused:?}"
    );
    assert!(st["memory"]["used_bytes"].as_u64().unwrap() <= 120_000);
    assert!(fx.mnt.join("system/f/1").exists());
    m.unmount().unwrap();
}

#[test]
fn live_activation_survives_a_recreated_packages_dir_and_can_poll() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let pkg = fx.work.join("p.hpkg");
    let src = source(&fx.work, r#"{"name":"p","version":"1.0"}"#, &[("p", "p\n")]);
    build(&src, &pkg);
    // inotify: the user packages directory is replaced after mounting.
    let m = fx.mount();
    fs::remove_dir_all(fx.root.join("user/packages")).unwrap();
    fs::create_dir(fx.root.join("user/packages")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    fs::copy(&pkg, fx.root.join("user/packages/p.hpkg")).unwrap();
    assert!(
        within(|| fx.mnt.join("user/p").exists()).is_some(),
        "a package in a re-created packages directory was not activated"
    );
    assert_eq!(fx.status()["live"]["mode"], "inotify");
    m.unmount().unwrap();
    fs::remove_file(fx.root.join("user/packages/p.hpkg")).unwrap();
    // Polling, as on file systems without inotify.
    let m = mount_with(&fx, |o| {
        o.watch = exos_packagefs::WatchMode::Poll(Duration::from_millis(200))
    });
    assert_eq!(fx.status()["live"]["mode"], "polling");
    fs::copy(&pkg, fx.root.join("common/packages/p.hpkg")).unwrap();
    assert!(within(|| fx.mnt.join("common/p").exists()).is_some());
    m.unmount().unwrap();
}

#[test]
fn inode_numbers_are_keyed_per_mount_and_unique() {
    let fx = fixture();
    let files: Vec<(String, String)> = (0..300)
        .map(|i| (format!("d{}/f{i}", i % 7), format!("{i}\n")))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    fx.add(
        "system",
        "a.hpkg",
        r#"{"name":"a","version":"1.0"}"#,
        &files,
    );
    fx.add("user", "b.hpkg", r#"{"name":"b","version":"1.0"}"#, &files);
    let options = MountOptions::new(fx.root.clone(), fx.mnt.clone());
    let (v1, _) = exos_packagefs::build_view(&options);
    let (v2, _) = exos_packagefs::build_view(&options);
    let ino = |v: &exos_packagefs::view::View, p: &str| v.node(v.lookup_path(p).unwrap()).ino;
    // Another mount, another key: numbers cannot be predicted by a package.
    assert_ne!(ino(&v1, "merged/d1/f1"), ino(&v2, "merged/d1/f1"));
    // One number per content: a package entry keeps one inode wherever it
    // appears (its layer's tree and the merged ones: hard links, one copy
    // in the page cache); anything else never shares a number.
    use exos_packagefs::view::Source;
    let mut seen: std::collections::HashMap<u64, Source> = std::collections::HashMap::new();
    let mut stack = vec![0u32];
    while let Some(n) = stack.pop() {
        let node = v1.node(n);
        match seen.insert(node.ino, node.source) {
            None => assert_eq!(v1.lookup_ino(node.ino), Some(n)),
            Some(first) => {
                assert!(
                    matches!(node.source, Source::Entry { .. }),
                    "a directory shares a number"
                );
                assert_eq!(
                    first, node.source,
                    "different contents share an inode number"
                );
            }
        }
        stack.extend_from_slice(v1.children(n));
    }
    assert!(seen.len() > 600, "{}", seen.len());
    assert_eq!(ino(&v1, "merged/d1/f1"), ino(&v1, "user/d1/f1"));
    assert_eq!(ino(&v1, "merged-system/d1/f1"), ino(&v1, "system/d1/f1"));
    assert_ne!(ino(&v1, "system/d1/f1"), ino(&v1, "user/d1/f1"));
}

/// A package of `n` small files in a few directories, each file's content
/// naming it, so a file served with another's bytes is caught.
fn many_small_files(fx: &Fixture, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n)
        .map(|i| format!("share/d{}/f{:04}.txt", i % 7, i))
        .collect();
    let contents: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{name}\n").repeat(1 + i % 90))
        .collect();
    let files: Vec<(&str, &str)> = names
        .iter()
        .zip(&contents)
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    fx.add(
        "system",
        "many.hpkg",
        r#"{"name":"many","version":"1"}"#,
        &files,
    );
    names
}

fn expected(name: &str, i: usize) -> String {
    format!("{name}\n").repeat(1 + i % 90)
}

/// Read-ahead stores the files after those being read into the kernel's
/// page cache; every file must still read back as itself, whether the
/// reader walked the tree first (the kernel knows the inodes from the
/// listing) or opens paths from a list (it looks each one up), and in an
/// order that jumps around.
#[test]
fn files_pushed_ahead_of_sequential_readers_read_back_exactly() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let names = many_small_files(&fx, 600);
    let mut sorted: Vec<(usize, &String)> = names.iter().enumerate().collect();
    sorted.sort_by(|a, b| a.1.cmp(b.1));
    let check = |order: &[(usize, &String)]| {
        for &(i, name) in order {
            let got = fs::read_to_string(fx.mnt.join("system").join(name)).unwrap();
            assert_eq!(got, expected(name, i), "{name}");
        }
    };
    // Walked first, then read in order.
    let m = fx.mount();
    let walked = walk_count(&fx.mnt.join("system/share"));
    assert_eq!(walked, 600 + 7);
    check(&sorted);
    // The pushes are the read-ahead thread's: on a loaded machine it may
    // run only after the reader is through (what it stores then is still
    // counted). Wait for it instead of assuming it kept up.
    let pushed_enough = || m.pushed().0 > 100;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pushed_enough() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        pushed_enough(),
        "too few files were pushed ahead of an in-order reader: {:?}",
        m.push_counts()
    );
    m.unmount().unwrap();
    // Paths from a list, in order, without a walk.
    let m = fx.mount();
    check(&sorted);
    m.unmount().unwrap();
    // Jumping around: nothing to push, everything still right.
    let m = fx.mount();
    let mut shuffled = sorted.clone();
    let mut x = 12345u64;
    for i in (1..shuffled.len()).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        shuffled.swap(i, (x >> 33) as usize % (i + 1));
    }
    walk_count(&fx.mnt.join("system/share"));
    check(&shuffled);
    m.unmount().unwrap();
}

/// 3.5 MiB starting like an ELF file, hardly compressible (so a package
/// of it is not read whole by the read-ahead of a few chunks).
fn fake_program() -> String {
    let mut program = String::from("\x7fELF");
    let mut x = 88172645463325252u64;
    while program.len() < 7 << 19 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        program.push_str(&format!("{x:016x}\n"));
    }
    program
}

/// Reads `len` bytes of `path` at `at` through the daemon: the file's
/// pages are dropped from the kernel's cache first.
fn read_uncached(path: &Path, at: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(path).unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, at).unwrap();
    buf
}

/// With an exec cache, a program mapped once is kept decompressed; after
/// a remount its reads are answered from the cache (no decompression),
/// byte for byte the package's; a tampered entry is never served.
#[test]
fn programs_in_the_exec_cache_are_read_from_it_after_a_remount() {
    use std::os::unix::fs::FileExt;
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let program = fake_program();
    let size = program.len() as u64;
    // A program small enough to be read whole at once, never mapped in
    // pieces: kept too.
    let small = format!("\x7fELF{}", "small program\n".repeat(500));
    fx.add(
        "system",
        "prog.hpkg",
        r#"{"name":"prog","version":"1"}"#,
        &[("bin/prog", &program), ("bin/small", &small)],
    );
    let cache = fx.work.join("exec-cache");
    let mount = || {
        let m = fx.mount_with(|o| o.exec_cache = Some((cache.clone(), 64 << 20)));
        assert!(
            within(|| fx.status()["sharing"]["packages_digested"] == 1).is_some(),
            "the package was not digested"
        );
        m
    };
    let path = fx.mnt.join("system/bin/prog");
    let entries = || -> Vec<PathBuf> {
        // Not the temporary files entries are written to.
        fs::read_dir(&cache)
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| {
                        let name = p.file_name().unwrap().to_string_lossy();
                        !name.starts_with('.') && name != "CACHEDIR.TAG"
                    })
                    .collect()
            })
            .unwrap_or_default()
    };

    // First mount: mapped (header, then a later read), so decompressed
    // whole and kept.
    let m = mount();
    let file = fs::File::open(&path).unwrap();
    let mut buf = [0u8; 64];
    file.read_exact_at(&mut buf, 0).unwrap();
    file.read_exact_at(&mut buf, 3 << 20).unwrap();
    assert!(fs::read(fx.mnt.join("system/bin/small")).unwrap() == small.as_bytes());
    assert!(
        within(|| entries().len() == 2).is_some(),
        "not both programs were cached: {:?}",
        entries()
    );
    let mut kept: Vec<Vec<u8>> = entries().iter().map(|e| fs::read(e).unwrap()).collect();
    kept.sort_by_key(|k| k.len());
    assert!(
        kept[0] == small.as_bytes() && kept[1] == program.as_bytes(),
        "an entry differs"
    );
    assert_eq!(m.exec_read_bytes(), 0, "read from a cache that was empty");
    drop(file);
    m.unmount().unwrap();

    // Remounted: once the entry is verified, reads come from it.
    let m = mount();
    assert!(
        within(|| {
            read_uncached(&path, 1 << 20, 4096);
            m.exec_read_bytes() > 0
        })
        .is_some(),
        "no read was answered from the exec cache"
    );
    let before = m.exec_read_bytes();
    let whole = read_uncached(&path, 0, size as usize);
    assert!(
        whole == program.as_bytes(),
        "read from the cache: not the program"
    );
    assert!(
        m.exec_read_bytes() > before,
        "the whole read (pages the read-ahead did not store first) decompressed"
    );
    m.unmount().unwrap();

    // Tampered: never served; the next mount's verification removes it.
    let entry = entries()
        .into_iter()
        .max_by_key(|e| fs::metadata(e).unwrap().len())
        .unwrap();
    fs::set_permissions(&entry, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&entry).unwrap();
    bytes[1 << 20] ^= 0x55;
    fs::write(&entry, &bytes).unwrap();
    let m = mount();
    assert!(
        read_uncached(&path, 0, size as usize) == program.as_bytes(),
        "not the program"
    );
    // Removed (and perhaps made again, right, by the read just done).
    assert!(
        within(|| fs::read(&entry).map_or(true, |b| b == program.as_bytes())).is_some(),
        "the tampered entry stayed"
    );
    assert!(
        read_uncached(&path, 0, size as usize) == program.as_bytes(),
        "not the program"
    );
    m.unmount().unwrap();
}

/// A program is mapped after its header is read: after a header read and
/// a read past it, the whole file is stored into the page cache (last
/// megabyte first, see readahead.rs) and reads back as itself.
#[test]
fn a_program_read_past_its_header_is_stored_whole_and_reads_back_exactly() {
    use std::os::unix::fs::FileExt;
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    let program = fake_program();
    let package = fx.add(
        "system",
        "prog.hpkg",
        r#"{"name":"prog","version":"1"}"#,
        &[("bin/prog", &program)],
    );
    let m = fx.mount();
    let path = fx.mnt.join("system/bin/prog");
    let file = fs::File::open(&path).unwrap();
    // The header read starts reading the program's stored bytes from
    // the package file at once (not one page fault at a time). (After the
    // mount has digested the package, which reads all of it.)
    assert!(within(|| fx.status()["sharing"]["packages_digested"] == 1).is_some());
    let stored = fs::metadata(&package).unwrap().len();
    {
        let p = fs::File::open(&package).unwrap();
        p.sync_all().unwrap();
        rustix::fs::fadvise(&p, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0).unwrap();
    assert!(header.starts_with(b"\x7fELF"));
    assert!(
        within(|| resident(&package) >= stored * 9 / 10).is_some(),
        "{} of the package's {stored} bytes were read after the header",
        resident(&package)
    );
    let mut later = [0u8; 4096];
    file.read_exact_at(&mut later, 3 << 20).unwrap();
    let size = program.len() as u64;
    assert!(
        within(|| m.pushed().1 >= size).is_some(),
        "the program was not stored whole: {:?}",
        m.pushed()
    );
    // Every page is in the page cache: the pieces landed.
    assert_eq!(resident(&path), size.div_ceil(4096) * 4096);
    // And at the right offsets.
    assert!(
        fs::read(&path).unwrap() == program.as_bytes(),
        "not the program"
    );
    let mut piece = vec![0u8; 100];
    for at in [0u64, (1 << 20) - 50, 2 << 20, size - 100] {
        file.read_exact_at(&mut piece, at).unwrap();
        assert_eq!(
            &piece[..],
            &program.as_bytes()[at as usize..at as usize + 100]
        );
    }
    drop(file);
    m.unmount().unwrap();

    // Copied from its start (the read after the header continues it):
    // stored first piece first, and as right.
    let m = fx.mount();
    assert!(
        fs::read(&path).unwrap() == program.as_bytes(),
        "not the program"
    );
    assert!(
        within(|| m.pushed().1 >= size).is_some(),
        "the copied program was not stored whole: {:?}",
        m.pushed()
    );
    assert_eq!(resident(&path), size.div_ceil(4096) * 4096);
    assert!(
        fs::read(&path).unwrap() == program.as_bytes(),
        "not the program"
    );
    m.unmount().unwrap();
}

/// Bytes of `path` in the page cache (util-linux's `fincore`).
fn resident(path: &Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux-extra) runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("fincore {}: {out:?}", path.display()))
}

fn walk_count(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        n += 1;
        if e.file_type().unwrap().is_dir() {
            n += walk_count(&e.path());
        }
    }
    n
}

/// A name looked up while missing is cached as missing (programs probe
/// search paths), so a package that brings it must make it appear at once,
/// not after the cache time (a minute by default).
#[test]
fn names_that_appear_later_are_not_hidden_by_cached_misses() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    fx.add(
        "system",
        "a.hpkg",
        r#"{"name":"a","version":"1"}"#,
        &[("bin/a", "a\n")],
    );
    let m = fx.mount();
    let later = fx.mnt.join("merged/bin/later");
    for _ in 0..3 {
        assert!(fs::metadata(&later).is_err());
    }
    fx.add(
        "system",
        "later.hpkg",
        r#"{"name":"later","version":"1"}"#,
        &[("bin/later", "new\n")],
    );
    assert!(
        within(|| fs::read_to_string(&later).ok().as_deref() == Some("new\n")).is_some(),
        "bin/later did not appear within 2 s"
    );
    m.unmount().unwrap();
}

/// Without any file attributes in the mount, the kernel is told there are
/// none (it then stops asking); with `XattrPolicy::Always` the mount
/// answers each request (no such attribute).
#[test]
fn a_mount_without_file_attributes_says_so_once() {
    if !fuse_available() {
        return;
    }
    let fx = fixture();
    fx.add(
        "system",
        "a.hpkg",
        r#"{"name":"a","version":"1"}"#,
        &[("doc/a", "a\n")],
    );
    let p = fx.mnt.join("merged/doc/a");
    let m = fx.mount();
    let err = xattr_get(&p, "user.haiku.BEOS:TYPE").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::NOTSUP.raw_os_error()),
        "{err}"
    );
    m.unmount().unwrap();
    let m = mount_with(&fx, |o| o.xattrs = XattrPolicy::Always);
    let err = xattr_get(&p, "user.haiku.BEOS:TYPE").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::NODATA.raw_os_error()),
        "{err}"
    );
    m.unmount().unwrap();
}

/// Enough packages that activation reads them ahead on several threads
/// (no FUSE needed: the scan alone). Every listed package is activated,
/// in the state's file order; one whose bytes are not the state's is
/// refused for its checksum, and a file the state does not list is
/// refused as such.
#[test]
fn a_scan_of_many_packages_activates_exactly_what_the_state_lists() {
    use exos_packagefs::activate::{RefusalReason, Scanner};
    use exos_root::Sha256;
    let fx = fixture();
    let (tampered, unlisted) = (7, 42);
    let mut list = String::from("# exos state\n");
    for i in 0..150 {
        let name = format!("p{i:03}");
        let manifest = format!(r#"{{"name":"{name}","version":"1.0"}}"#);
        let file = format!("{name}.hpkg");
        let path = fx.add(
            "system",
            &file,
            &manifest,
            &[(&format!("share/{name}"), "x\n")],
        );
        let sha = match i {
            _ if i == tampered => Sha256::of_bytes(b"something else"),
            _ => Sha256::of_file(&path).unwrap(),
        };
        if i != unlisted {
            list += &format!("system {file} {sha}\n");
        }
    }
    let state = fx.work.join("state.list");
    fs::write(&state, list).unwrap();
    let cache = std::sync::Arc::new(exos_packagefs::cache::ChunkCache::new(8 << 20));
    let mut scanner = Scanner::new(fx.root.clone(), Vec::new(), cache);
    scanner.state_list = Some(state);
    let activation = scanner.scan(None);

    let active: Vec<String> = activation.all().map(|p| p.manifest.name.clone()).collect();
    let expected: Vec<String> = (0..150)
        .filter(|&i| i != tampered && i != unlisted)
        .map(|i| format!("p{i:03}"))
        .collect();
    assert_eq!(active, expected);
    let refused: Vec<(String, &RefusalReason)> = activation
        .refused
        .iter()
        .map(|r| {
            (
                r.path.file_name().unwrap().to_string_lossy().into_owned(),
                &r.reason,
            )
        })
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused
        .iter()
        .any(|(f, why)| f == "p042.hpkg" && matches!(why, RefusalReason::NotInState)));
    assert!(refused
        .iter()
        .any(|(f, why)| f == "p007.hpkg" && matches!(why, RefusalReason::Checksum { .. })));
}
