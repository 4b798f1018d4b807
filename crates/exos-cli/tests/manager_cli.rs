//! The package manager end to end: init, install, remove, upgrade, states,
//! rollback, gc — and crash safety, by killing `exos` at every step of a
//! change and at random moments, then checking the root.

mod support;
use support::*;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use exos_packagefs::MountOptions;

struct Pkgs {
    lib10: PathBuf,
    lib11: PathBuf,
    app: PathBuf,
    tool: PathBuf,
}

fn packages(work: &Path) -> Pkgs {
    let d = work.join("pkgs");
    Pkgs {
        lib10: package(
            work,
            &d,
            r#"{"name":"lib","version":"1.0","provides":[{"api":"libapi","version":"1.0"}]}"#,
            "lib 1.0\n",
        ),
        lib11: package(
            work,
            &d.join("new"),
            r#"{"name":"lib","version":"1.1","provides":[{"api":"libapi","version":"1.1","compatible":"1.0"}]}"#,
            "lib 1.1\n",
        ),
        app: package(
            work,
            &d,
            r#"{"name":"app","version":"1.0","requires":["libapi >=1.0"]}"#,
            "app\n",
        ),
        tool: package(work, &d, r#"{"name":"tool","version":"2.0"}"#, "tool\n"),
    }
}

/// The block cache the crash test's commands use (`EXOS_BLOCK_CACHE`),
/// for the mounts it makes in this process: libraries read no environment.
fn test_block_cache() -> Option<(PathBuf, u64)> {
    std::env::var_os("EXOS_BLOCK_CACHE").map(|d| (PathBuf::from(d), 1 << 30))
}

/// The root is consistent and its current state is exactly what a mount shows.
fn assert_consistent(root: &Path) {
    assert_consistent_keyed(root, &Default::default())
}

/// [`assert_consistent`] for a root holding packages sealed with `keys`.
fn assert_consistent_keyed(root: &Path, keys: &exos_hpkg::crypt::KeyRing) {
    let o = exos(&["check", "-r", s(root)]);
    assert!(
        o.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let list = fs::read_to_string(root.join("system/state/active.list")).unwrap();
    let listed = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    let mut options = MountOptions::new(root.to_path_buf(), root.join("unused"));
    options.keys.ring = keys.clone();
    options.block_cache = test_block_cache();
    let (_, report) = exos_packagefs::build_view(&options);
    // A leftover file the state does not list (a crash before tidying) is
    // reported, not mounted; anything else refused is a failure.
    let bad: Vec<_> = report
        .refused
        .iter()
        .filter(|(_, why)| !matches!(why, exos_packagefs::activate::RefusalReason::NotInState))
        .collect();
    assert!(bad.is_empty(), "mount would refuse: {bad:?}");
    assert_eq!(
        report.active, listed,
        "mount activates {} of {listed}",
        report.active
    );
}

#[test]
fn install_remove_upgrade_rollback_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let p = packages(tmp.path());
    let root = tmp.path().join("root");
    ok(&["init", s(&root)]);
    for d in [
        "system/packages",
        "common/packages",
        "user/packages",
        "system/state",
        "data",
    ] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    // A missing dependency refuses the change and names it.
    let o = exos(&["install", "-r", s(&root), s(&p.app)]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("libapi"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        fs::read_dir(root.join("system/packages")).unwrap().count(),
        0
    );
    // Dry run changes nothing.
    let out = ok(&[
        "install",
        "-r",
        s(&root),
        "--dry-run",
        s(&p.app),
        s(&p.lib10),
    ]);
    assert!(out.contains("Dry run"), "{out}");
    assert_eq!(
        fs::read_dir(root.join("system/packages")).unwrap().count(),
        0
    );
    // Install both: one new state.
    let out = ok(&["install", "-r", s(&root), s(&p.app), s(&p.lib10)]);
    assert!(
        out.contains("install   app 1.0") && out.contains("State 1"),
        "{out}"
    );
    assert!(root.join("system/packages/app-1.0.hpkg").is_file());
    assert_consistent(&root);
    ok(&["install", "-r", s(&root), "-l", "user", s(&p.tool)]);
    assert!(root.join("user/packages/tool-2.0.hpkg").is_file());
    // Upgrade lib from -a: the old file is moved to the store, not deleted.
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "upgrade",
        "-r",
        s(&root),
        "-a",
        s(p.lib11.parent().unwrap()),
        "--json",
        "lib",
    ]))
    .unwrap();
    assert_eq!(v["state"], 3);
    assert_eq!(v["plan"]["resolution"]["changes"][0]["action"], "upgrade");
    assert_eq!(v["dry_run"], false);
    assert!(root.join("system/packages/lib-1.1.hpkg").is_file());
    assert!(!root.join("system/packages/lib-1.0.hpkg").exists());
    assert_consistent(&root);
    // Remove lib: app goes with it, with the reason.
    // Without --yes (and no terminal to ask on), a cascade is refused.
    let o = exos(&["remove", "-r", s(&root), "lib"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("would also remove app 1.0"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = ok(&["remove", "-r", s(&root), "--yes", "lib"]);
    assert!(
        out.contains("remove    app 1.0") && out.contains("libapi"),
        "{out}"
    );
    assert_consistent(&root);
    // States are kept; diff and show.
    let list = ok(&["state", "list", "-r", s(&root)]);
    assert_eq!(list.lines().count(), 5, "{list}");
    assert!(list.lines().last().unwrap().starts_with('*'), "{list}");
    let d = ok(&["state", "diff", "-r", s(&root), "3"]);
    assert!(
        d.contains("- system/app-1.0.hpkg") && d.contains("- system/lib-1.1.hpkg"),
        "{d}"
    );
    // Rollback: renames only — the file comes back with its inode.
    let stored: Vec<(String, u64)> = fs::read_dir(root.join("system/state/store"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().ino(),
            )
        })
        .collect();
    let out = ok(&["rollback", "-r", s(&root)]);
    assert!(out.contains("rolled back to state 3"), "{out}");
    let app_ino = fs::metadata(root.join("system/packages/app-1.0.hpkg"))
        .unwrap()
        .ino();
    assert!(
        stored.iter().any(|(_, ino)| *ino == app_ino),
        "app was copied, not renamed"
    );
    assert_consistent(&root);
    // Roll back further, to state 1.
    ok(&["rollback", "-r", s(&root), "1"]);
    assert!(root.join("system/packages/lib-1.0.hpkg").is_file());
    assert!(!root.join("user/packages/tool-2.0.hpkg").exists());
    assert_consistent(&root);
    // gc keeps the newest states and what they use.
    let before = fs::read_dir(root.join("system/state/store"))
        .unwrap()
        .count();
    let out = ok(&["gc", "-r", s(&root), "--keep", "1"]);
    assert!(out.contains("Removed"), "{out}");
    let after = fs::read_dir(root.join("system/state/store"))
        .unwrap()
        .count();
    assert!(after < before, "{before} -> {after}");
    assert_consistent(&root);
    // --force bypasses the dependency check.
    ok(&["remove", "-r", s(&root), "--force", "lib"]);
    assert!(root.join("system/packages/app-1.0.hpkg").is_file());
    assert!(!root.join("system/packages/lib-1.0.hpkg").exists());
    let o = exos(&["remove", "-r", s(&root), "nothere"]);
    assert_eq!(o.status.code(), Some(1));
}

#[cfg(feature = "crash-points")]
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Runs `args` with the process killed at its `k`-th crash point; returns
/// whether it ran to the end instead.
#[cfg(feature = "crash-points")]
fn run_crashing(args: &[&str], k: u64) -> bool {
    let o = Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(args)
        .env("EXOS_CRASH_AT", k.to_string())
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    match o.status.signal() {
        Some(9) => false,
        Some(sig) => panic!("exos died of signal {sig}"),
        None => {
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            true
        }
    }
}

/// Mounts the root for real and reads every file of the merged view.
#[cfg(feature = "crash-points")]
fn mount_and_read(root: &Path, mnt: &Path, keys: &exos_hpkg::crypt::KeyRing) {
    if !Path::new("/dev/fuse").exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("/dev/fuse is missing, and CI=true");
        }
        return;
    }
    fs::create_dir_all(mnt).unwrap();
    let mut o = MountOptions::new(root.to_path_buf(), mnt.to_path_buf());
    o.allow_other = false;
    o.keys.ring = keys.clone();
    o.block_cache = test_block_cache();
    let m = exos_packagefs::Mount::start(o).expect("the mount comes up");
    let mut stack = vec![mnt.join("merged")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                fs::read(&p).unwrap();
            }
        }
    }
    m.unmount().unwrap();
}

fn state_numbers(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("system/state/states"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The crash test needs the binary built with crash points.
#[cfg(not(feature = "crash-points"))]
#[test]
fn crash_points_are_compiled_in() {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true: run the tests with --features exos-cli/crash-points (scripts/test.sh does)"
        );
    }
    eprintln!("\n!!!!!!!! built without crash points: crash-safety test NOT RUN (--features exos-cli/crash-points) !!!!!!!!\n");
}

#[cfg(feature = "crash-points")]
#[test]
fn killed_at_every_step_and_at_random_the_root_stays_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    // Lazy installs and the mounts below keep blocks here (every command
    // this test runs inherits it).
    std::env::set_var("EXOS_BLOCK_CACHE", tmp.path().join("blocks"));
    let p = packages(tmp.path());
    let template = tmp.path().join("template");
    ok(&["init", s(&template)]);
    ok(&["install", "-r", s(&template), s(&p.app), s(&p.lib10)]);
    ok(&["install", "-r", s(&template), "-l", "user", s(&p.tool)]);
    let new_dir = p.lib11.parent().unwrap().to_path_buf();
    // A repository (file://) with one more package, for install by name:
    // downloads are renamed from the cache into the store.
    let pubdir = tmp.path().join("pub");
    package(
        tmp.path(),
        &pubdir,
        r#"{"name":"extra","version":"1"}"#,
        "extra\n",
    );
    ok(&["key", "generate", "repo", "-d", s(tmp.path()), "-q"]);
    ok(&[
        "repo",
        "index",
        "-q",
        s(&pubdir),
        "-k",
        s(&tmp.path().join("repo.key")),
    ]);
    ok(&[
        "repo",
        "add",
        "-q",
        "main",
        s(&pubdir),
        "-k",
        s(&tmp.path().join("repo.pub")),
        "-r",
        s(&template),
    ]);
    // An encrypted package: its manifest is remembered before the state
    // that names it. The key is registered here too, for the views this
    // test builds in its own process.
    let vault = package(
        tmp.path(),
        &tmp.path().join("vault"),
        r#"{"name":"vault","version":"1"}"#,
        "vault\n",
    );
    ok(&[
        "key",
        "generate",
        "-q",
        "vault",
        "--encryption",
        "-d",
        s(tmp.path()),
    ]);
    let vault_key = tmp.path().join("vault.pkey");
    let sealed = tmp.path().join("vault.enc.hpkg");
    ok(&[
        "encrypt",
        "-q",
        s(&vault),
        "-o",
        s(&sealed),
        "--key",
        s(&vault_key),
    ]);
    let keys =
        exos_hpkg::crypt::KeyRing::new([exos_hpkg::crypt::PackageKey::read(&vault_key).unwrap()]);
    let ops: Vec<(&str, Vec<String>)> = vec![
        ("install-by-name", vec!["install".into(), "extra".into()]),
        (
            "install-sealed",
            vec![
                "install".into(),
                s(&sealed).into(),
                "--key".into(),
                s(&vault_key).into(),
            ],
        ),
        // Records written before the state that names them.
        (
            "install-lazy",
            vec!["install".into(), "--lazy".into(), "extra".into()],
        ),
        (
            "upgrade",
            vec![
                "upgrade".into(),
                "-a".into(),
                s(&new_dir).into(),
                "lib".into(),
            ],
        ),
        (
            "remove",
            vec!["remove".into(), "--yes".into(), "lib".into()],
        ),
        (
            "install",
            vec![
                "install".into(),
                "-l".into(),
                "common".into(),
                s(&p.lib11).into(),
            ],
        ),
        ("rollback", vec!["rollback".into(), "0".into()]),
    ];
    let mut trials = 0;
    for (name, op) in &ops {
        let mut k = 1;
        loop {
            let root = tmp.path().join(format!("t-{name}-{k}"));
            copy_tree(&template, &root);
            let mut args: Vec<&str> = op.iter().map(String::as_str).collect();
            args.extend(["-r", s(&root)]);
            let finished = run_crashing(&args, k);
            trials += 1;
            assert_consistent_keyed(&root, &keys);
            mount_and_read(&root, &tmp.path().join("mnt"), &keys);
            // Recovery (any changing command runs it; gc keeping everything
            // changes nothing else) leaves no state that was never current:
            // one new state if the crash came after the commit, else none.
            ok(&["gc", "--keep", "1000", "-r", s(&root)]);
            let committed = fs::read(root.join("system/state/active.list")).unwrap()
                != fs::read(template.join("system/state/active.list")).unwrap();
            assert_eq!(
                state_numbers(&root).len(),
                state_numbers(&template).len() + committed as usize,
                "{name} after crash at {k}: {:?}",
                state_numbers(&root)
            );
            let list = ok(&["state", "list", "-r", s(&root)]);
            assert!(
                list.lines().last().unwrap().starts_with('*'),
                "{name} after crash at {k}: the newest state is not the current one:\n{list}"
            );
            // The next command recovers and the change can be made.
            let o = exos(&args);
            assert!(
                o.status.success() || o.status.code() == Some(1),
                "{name} after crash at {k}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_consistent_keyed(&root, &keys);
            fs::remove_dir_all(&root).unwrap();
            if finished {
                break;
            }
            k += 1;
            assert!(k < 200, "{name}: never finishes");
        }
        assert!(k > 3, "{name}: only {k} crash points");
    }
    // SIGKILL at random moments, from outside.
    let started = Instant::now();
    let mut seed = 0x9E37_79B9u64;
    let mut random_trials = 0;
    while random_trials < 200 && started.elapsed() < Duration::from_secs(60) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (_, op) = &ops[(seed % ops.len() as u64) as usize];
        let root = tmp.path().join(format!("r-{random_trials}"));
        copy_tree(&template, &root);
        let mut child = Command::new(env!("CARGO_BIN_EXE_exos"))
            .args(op)
            .args(["-r", s(&root)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros((seed >> 20) % 40_000));
        let _ = child.kill();
        let _ = child.wait();
        assert_consistent_keyed(&root, &keys);
        fs::remove_dir_all(&root).unwrap();
        random_trials += 1;
    }
    eprintln!("{trials} crash-point trials, {random_trials} random SIGKILL trials");
    assert!(trials + random_trials >= 100);
}

#[test]
fn mounts_follow_changes_and_older_states_boot() {
    if !Path::new("/dev/fuse").exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("/dev/fuse is missing, and CI=true");
        }
        eprintln!("\n!!!!!!!! /dev/fuse is missing: manager mount test NOT RUN !!!!!!!!\n");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = packages(tmp.path());
    let root = tmp.path().join("root");
    let mnt = tmp.path().join("mnt");
    let old = tmp.path().join("old");
    fs::create_dir_all(&mnt).unwrap();
    fs::create_dir_all(&old).unwrap();
    ok(&["init", s(&root)]);
    ok(&["install", "-r", s(&root), s(&p.tool)]);
    let pid = tmp.path().join("pid");
    ok(&[
        "mount",
        "--daemon",
        "--pid-file",
        s(&pid),
        s(&root),
        s(&mnt),
    ]);
    assert_eq!(
        fs::read_to_string(mnt.join("merged/share/tool")).unwrap(),
        "tool\n"
    );
    // A running mount picks up an install.
    ok(&["install", "-r", s(&root), s(&p.app), s(&p.lib10)]);
    let t = Instant::now();
    while !mnt.join("merged/share/app").exists() && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        mnt.join("merged/share/app").exists(),
        "install not visible in the mount"
    );
    // Boot state 1 (tool only) beside it, without changing the current state.
    let pid2 = tmp.path().join("pid2");
    ok(&[
        "mount",
        "--daemon",
        "--state",
        "1",
        "--pid-file",
        s(&pid2),
        s(&root),
        s(&old),
    ]);
    assert!(old.join("merged/share/tool").exists());
    assert!(!old.join("merged/share/app").exists());
    assert!(mnt.join("merged/share/app").exists());
    // Remove in the current state; the old-state mount still reads tool.
    ok(&["remove", "-r", s(&root), "tool"]);
    assert_eq!(
        fs::read_to_string(old.join("merged/share/tool")).unwrap(),
        "tool\n"
    );
    ok(&["unmount", s(&old)]);
    ok(&["unmount", s(&mnt)]);
}

#[test]
fn concurrent_writers_take_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    ok(&["init", s(&root)]);
    let pkgs: Vec<PathBuf> = (0..6)
        .map(|i| {
            package(
                tmp.path(),
                &tmp.path().join("pkgs"),
                &format!(r#"{{"name":"p{i}","version":"1.0"}}"#),
                "x\n",
            )
        })
        .collect();
    let children: Vec<_> = pkgs
        .iter()
        .map(|p| {
            Command::new(env!("CARGO_BIN_EXE_exos"))
                .args(["install", "-q", "-r", s(&root), s(p)])
                .output()
        })
        .collect::<Vec<_>>();
    // Then six writers at once: the lock makes them take turns.
    let handles: Vec<_> = pkgs
        .iter()
        .map(|p| {
            let (root, p) = (root.clone(), p.clone());
            std::thread::spawn(move || {
                Command::new(env!("CARGO_BIN_EXE_exos"))
                    .args(["remove", "-q", "-r", s(&root)])
                    .arg(
                        p.file_stem()
                            .unwrap()
                            .to_str()
                            .unwrap()
                            .split('-')
                            .next()
                            .unwrap(),
                    )
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for c in children {
        assert!(c.unwrap().status.success());
    }
    for h in handles {
        let o = h.join().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // 1 init + 6 installs + 6 removes, each its own state, none lost.
    let list = ok(&["state", "list", "-r", s(&root)]);
    assert_eq!(list.lines().count(), 13, "{list}");
    assert_consistent(&root);
    assert_eq!(
        fs::read_dir(root.join("system/packages")).unwrap().count(),
        0
    );
}

/// Unmounts a tmpfs when dropped.
struct TmpfsGuard(PathBuf);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_cleanly_names_the_target_and_leaves_nothing_behind() {
    if !rustix::process::geteuid().is_root() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true: this test mounts a tmpfs and must run as root");
        }
        eprintln!("\n!!!!!!!! not root: full-disk test NOT RUN !!!!!!!!\n");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    fs::create_dir(&disk).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _guard = TmpfsGuard(disk.clone());
    let root = disk.join("root");
    ok(&["init", s(&root)]);
    // 3 MiB of incompressible data: more than the disk holds.
    let big_src = tmp.path().join("big");
    fs::create_dir_all(&big_src).unwrap();
    fs::write(
        big_src.join("manifest.json"),
        r#"{"name":"big","version":"1.0","summary":"big","license":"MIT","copyright":"2026 EXOS"}"#,
    )
    .unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(big_src.join("noise"), noise).unwrap();
    let big = tmp.path().join("big.hpkg");
    ok(&["build", "-q", s(&big_src), "-o", s(&big)]);
    let before = state_numbers(&root);
    let o = exos(&["install", "-r", s(&root), s(&big)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(s(&root)),
        "the error must name the target: {err}"
    );
    // Nothing left behind: no partial copy, no new state.
    let leftovers: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".exos-new-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(state_numbers(&root), before);
    assert_consistent(&root);
    // The disk has room again for a small change.
    let p = packages(tmp.path());
    ok(&["install", "-r", s(&root), s(&p.lib10)]);
    assert_consistent(&root);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Runs `exos ARGS` on a real terminal (util-linux `script` gives it a
/// pty) answering `answer` to any question; returns the exit code and what
/// the terminal showed.
fn on_terminal(args: &[&str], answer: &str) -> (Option<i32>, String) {
    let command = std::iter::once(env!("CARGO_BIN_EXE_exos"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn essential_packages_and_cascades_are_protected() {
    let tmp = tempfile::tempdir().unwrap();
    let p = packages(tmp.path());
    let d = tmp.path().join("ess");
    let core = package(
        tmp.path(),
        &d,
        r#"{"name":"core","version":"1.0","essential":true}"#,
        "core\n",
    );
    let root = tmp.path().join("root");
    ok(&["init", s(&root)]);
    ok(&["install", "-r", s(&root), s(&p.app), s(&p.lib10), s(&core)]);
    // An essential package: refused, even with --yes; --force does it.
    for extra in [None, Some("--yes")] {
        let mut args = vec!["remove", "-r", s(&root)];
        args.extend(extra);
        args.push("core");
        let o = exos(&args);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("essential") && err.contains("core 1.0"),
            "{err}"
        );
    }
    let o = exos(&["remove", "--json", "-r", s(&root), "core"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "essential");
    assert!(root.join("system/packages/core-1.0.hpkg").exists());
    // A cascade asks on a terminal: "n" keeps everything, "y" goes ahead.
    let (code, screen) = on_terminal(&["remove", "-r", s(&root), "lib"], "n\n");
    assert_eq!(code, Some(1), "{screen}");
    assert!(
        screen.contains("Do you want to continue? [y/N]"),
        "{screen}"
    );
    assert!(root.join("system/packages/app-1.0.hpkg").exists());
    let (code, screen) = on_terminal(&["remove", "-r", s(&root), "lib"], "y\n");
    assert_eq!(code, Some(0), "{screen}");
    assert!(!root.join("system/packages/app-1.0.hpkg").exists());
    ok(&["remove", "-r", s(&root), "--force", "core"]);
    assert!(!root.join("system/packages/core-1.0.hpkg").exists());
    assert_consistent(&root);
}

#[test]
fn an_installed_package_is_0644_whatever_its_source_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let p = packages(tmp.path());
    fs::set_permissions(&p.tool, fs::Permissions::from_mode(0o666)).unwrap();
    let root = tmp.path().join("root");
    ok(&["init", "-q", s(&root)]);
    ok(&["install", "-q", s(&p.tool), "-r", s(&root)]);
    let installed = root
        .join("system/packages")
        .join(p.tool.file_name().unwrap());
    assert_eq!(fs::metadata(&installed).unwrap().mode() & 0o7777, 0o644);
}
