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
        let mut o = MountOptions::new(self.root.clone(), self.mnt.clone());
        o.allow_other = false;
        o.cache_bytes = 8 << 20;
        Mount::start(o).expect("mount")
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.mnt.join(".exos/status.json")).unwrap()).unwrap()
    }
}

/// Polls `f` for up to two seconds; returns how long it took.
fn within(f: impl Fn() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
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
    assert_eq!(c["path"], "system/bin/x");
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
/// mode, size, symlink target and mtime match the source.
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
    let m = fx.mount();
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
