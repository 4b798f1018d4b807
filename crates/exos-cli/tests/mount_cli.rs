//! `exos mount --daemon`, `exos status`, SIGTERM and `exos unmount`, for real
//! (needs /dev/fuse; fails instead of skipping when CI=true).

mod support;
use support::*;

use std::fs;
use std::path::Path;
use std::process::Command;

fn setup(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = tmp.join("root");
    let mnt = tmp.join("mnt");
    fs::create_dir_all(root.join("system/packages")).unwrap();
    fs::create_dir_all(root.join("user/packages")).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    let src = tmp.join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(
        src.join("manifest.json"),
        r#"{"name":"hi","version":"1.0","summary":"hi","license":"MIT","copyright":"2026 EXOS"}"#,
    )
    .unwrap();
    fs::write(src.join("bin/hi"), "#!/bin/sh\necho hi from the mount\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("bin/hi"), fs::Permissions::from_mode(0o755)).unwrap();
    let o = exos(&[
        "build",
        "-q",
        src.to_str().unwrap(),
        "-o",
        root.join("system/packages/hi.hpkg").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::write(root.join("user/packages/junk.hpkg"), "not a package").unwrap();
    (root, mnt)
}

#[test]
fn daemon_status_and_signals() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (root, mnt) = setup(tmp.path());
    let pid_file = tmp.path().join("exos.pid");
    let log = tmp.path().join("exos.log");
    let o = exos(&[
        "mount",
        "--daemon",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
        root.to_str().unwrap(),
        mnt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(mounted(&mnt));
    let out = Command::new(mnt.join("merged/bin/hi")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from the mount\n");
    // Status names what is active and what was refused, and why.
    let o = exos(&["status", mnt.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("hi 1.0") && text.contains("junk.hpkg"),
        "{text}"
    );
    let o = exos(&["status", "--json", mnt.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers"]["system"][0]["name"], "hi");
    assert!(v["refused"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("junk.hpkg"));
    // A second mount on the same point is refused.
    let o = exos(&["mount", root.to_str().unwrap(), mnt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    // SIGTERM: clean unmount, pid file removed.
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(wait_until(|| !mounted(&mnt)), "still mounted after SIGTERM");
    assert!(wait_until(|| !pid_file.exists()), "pid file left behind");
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("unmounting") && log_text.contains("refused"),
        "{log_text}"
    );
}

#[test]
fn exos_unmount_ends_the_daemon() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (root, mnt) = setup(tmp.path());
    let pid_file = tmp.path().join("exos.pid");
    let o = exos(&[
        "mount",
        "--daemon",
        "--pid-file",
        pid_file.to_str().unwrap(),
        root.to_str().unwrap(),
        mnt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = exos(&["unmount", mnt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!mounted(&mnt));
    assert!(wait_until(|| !pid_file.exists()), "daemon did not exit");
    let o = exos(&["unmount", mnt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not mounted"));
    // Foreground mount ended by SIGINT.
    let mut child = Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(["mount", root.to_str().unwrap(), mnt.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(|| mounted(&mnt)));
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!mounted(&mnt));
}

/// A daemon whose mount was taken away from outside tears down without
/// touching the mount point: a new mount made there meanwhile stays. (The
/// old daemon is held stopped while the mount point is unmounted and
/// mounted again, then let go; fuser's teardown used to unmount the path
/// whatever was mounted there by then.)
#[test]
fn a_daemon_tearing_down_late_leaves_the_next_mount_alone() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (root, mnt) = setup(tmp.path());
    let daemon = |pid_file: &Path| {
        let o = exos(&[
            "mount",
            "--daemon",
            "--pid-file",
            pid_file.to_str().unwrap(),
            root.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        fs::read_to_string(pid_file).unwrap().trim().to_string()
    };
    let signal = |sig: &str, pid: &str| {
        assert!(Command::new("kill")
            .args([sig, pid])
            .status()
            .unwrap()
            .success());
    };
    let first = daemon(&tmp.path().join("first.pid"));
    signal("-STOP", &first);
    let o = exos(&["unmount", mnt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second = daemon(&tmp.path().join("second.pid"));
    signal("-CONT", &first);
    let gone = Path::new("/proc").join(&first);
    assert!(
        wait_until(|| !gone.exists()),
        "the first daemon did not exit"
    );
    assert!(
        mounted(&mnt),
        "the first daemon's teardown unmounted the second mount"
    );
    assert!(Path::new("/proc").join(&second).exists());
    let out = Command::new(mnt.join("merged/bin/hi")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from the mount\n");
    let o = exos(&["unmount", mnt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn relative_paths_work_with_daemon_and_the_log_stays_quiet() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_, _) = setup(tmp.path());
    // Every path relative to the current directory, as a newcomer types them.
    let o = exos_in(
        tmp.path(),
        &[
            "mount",
            "root",
            "mnt",
            "--daemon",
            "--pid-file",
            "p",
            "--log-file",
            "l",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pid: u32 = fs::read_to_string(tmp.path().join("p"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The daemon works from / (it must not keep a directory busy).
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/")
    );
    let mnt = tmp.path().join("mnt");
    // isatty() on a file of the mount asks the daemon for TCGETS: ENOTTY,
    // without a word in the log.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "[ -t 0 ] < {}",
            mnt.join("merged/bin/hi").display()
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let o = exos_in(tmp.path(), &["unmount", "mnt"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(wait_until(|| !tmp.path().join("p").exists()));
    let log = fs::read_to_string(tmp.path().join("l")).unwrap();
    assert!(log.contains("unmounted"), "{log}");
    for noise in [
        "Not Implemented",
        "ioctl",
        "Failed to umount",
        "Invalid argument",
    ] {
        assert!(!log.contains(noise), "{noise:?} in the log:\n{log}");
    }
}

#[test]
fn a_busy_unmount_says_what_holds_the_mount() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (root, mnt) = setup(tmp.path());
    let pid_file = tmp.path().join("exos.pid");
    let o = exos(&[
        "mount",
        "--daemon",
        "--pid-file",
        pid_file.to_str().unwrap(),
        root.to_str().unwrap(),
        mnt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A process working in the mount.
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .current_dir(mnt.join("merged/bin"))
        .spawn()
        .unwrap();
    let o = exos(&["unmount", mnt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {} (sleep)", sleeper.id())),
        "{err}"
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // Another file system mounted below.
    let below = mnt.join("merged/bin");
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&below)
        .status()
        .unwrap()
        .success());
    let o = exos(&["unmount", mnt.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("mounted below") && err.contains("merged/bin"),
        "{err}"
    );
    assert!(Command::new("umount")
        .arg(&below)
        .status()
        .unwrap()
        .success());
    let o = exos(&["unmount", mnt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn unreadable_data_is_eio_and_the_log_names_package_and_entry() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (root, mnt) = setup(tmp.path());
    let case = exos_hostile::cases()
        .into_iter()
        .find(|c| c.name == "data-chunk-flipped")
        .unwrap();
    fs::write(root.join("user/packages/flipped.hpkg"), &case.bytes).unwrap();
    let pid_file = tmp.path().join("exos.pid");
    let log = tmp.path().join("exos.log");
    let o = exos(&[
        "mount",
        "--daemon",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
        root.to_str().unwrap(),
        mnt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read(mnt.join("user/a-ok")).unwrap(), b"fine");
    let err = fs::read(mnt.join("user/f")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "{err}");
    assert!(exos(&["unmount", mnt.to_str().unwrap()]).status.success());
    assert!(wait_until(|| !pid_file.exists()));
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("flipped.hpkg") && text.contains(": f: ") && text.contains("heap chunk 0"),
        "{text}"
    );
}

/// Builds a package NAME with `share/NAME/common.txt` (the same bytes in
/// every package) and `share/NAME/own` (its own).
fn sharing_package(tmp: &Path, name: &str, common: &str) -> std::path::PathBuf {
    let src = tmp.join(format!("src-{name}"));
    fs::create_dir_all(src.join("share").join(name)).unwrap();
    fs::write(
        src.join("manifest.json"),
        complete(&format!(r#"{{"name": "{name}", "version": "1"}}"#)),
    )
    .unwrap();
    let file = src.join("share").join(name).join("common.txt");
    fs::write(&file, common).unwrap();
    // Each package's copy has its own time (a later release, say).
    let stamp = format!("2001-01-0{} 00:00", 1 + name.as_bytes()[0] % 8);
    assert!(Command::new("touch")
        .args(["-d", &stamp])
        .arg(&file)
        .status()
        .unwrap()
        .success());
    fs::write(src.join("share").join(name).join("own"), name).unwrap();
    let out = tmp.join(format!("{name}.hpkg"));
    ok(&["build", "-q", s(&src), "-o", s(&out)]);
    out
}

#[test]
fn identical_files_of_different_packages_share_one_inode() {
    if !fuse_available() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let common = "the same bytes\n".repeat(1000);
    let a = sharing_package(tmp.path(), "a", &common);
    let b = sharing_package(tmp.path(), "b", &common);
    let c = sharing_package(tmp.path(), "c", "different bytes\n");
    ok(&["init", s(&root)]);
    ok(&["install", "-q", "-r", s(&root), s(&a), s(&b), s(&c)]);
    // nobody's own layer holds the same bytes too: served as nobody's, so
    // never the same inode as root's.
    let theirs = root.join("users/nobody/packages");
    fs::create_dir_all(&theirs).unwrap();
    for d in [root.join("users/nobody"), theirs.clone()] {
        rustix::fs::chown(
            &d,
            Some(rustix::fs::Uid::from_raw(65534)),
            Some(rustix::fs::Gid::from_raw(65534)),
        )
        .unwrap();
    }
    let d = sharing_package(tmp.path(), "d", &common);
    fs::copy(&d, theirs.join("d.hpkg")).unwrap();
    let mount = |extra: &[&str]| {
        let mut args = vec!["mount", s(&root), s(&mnt), "--daemon", "--pid-file"];
        let pid = tmp.path().join("pid");
        args.push(s(&pid));
        args.extend_from_slice(extra);
        ok(&args);
    };
    mount(&[]);
    let ino = |p: &str| fs::metadata(mnt.join(p)).unwrap().ino();
    assert!(
        wait_until(|| ino("merged/share/a/common.txt") == ino("merged/share/b/common.txt")),
        "identical files never shared an inode"
    );
    assert_eq!(
        ino("system/share/a/common.txt"),
        ino("merged/share/b/common.txt")
    );
    assert_ne!(
        ino("merged/share/a/common.txt"),
        ino("merged/share/c/common.txt")
    );
    assert_ne!(ino("merged/share/a/own"), ino("merged/share/b/own"));
    assert_ne!(
        ino("merged/share/a/common.txt"),
        ino("users/nobody/share/d/common.txt")
    );
    for p in ["a", "b"] {
        assert_eq!(
            fs::read_to_string(mnt.join(format!("merged/share/{p}/common.txt"))).unwrap(),
            common
        );
        assert_eq!(
            fs::read_to_string(mnt.join(format!("merged/share/{p}/own"))).unwrap(),
            p
        );
    }
    assert_eq!(
        fs::read_to_string(mnt.join("merged/share/c/common.txt")).unwrap(),
        "different bytes\n"
    );
    // Remembered by SHA-256 for the next mount; gc drops what no state holds.
    let digests = || {
        fs::read_dir(root.join("system/state/digests"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(digests(), 3);
    ok(&["unmount", s(&mnt)]);
    // --no-share: every package's file is its own inode.
    mount(&["--no-share"]);
    assert_ne!(
        ino("merged/share/a/common.txt"),
        ino("merged/share/b/common.txt")
    );
    ok(&["unmount", s(&mnt)]);
    ok(&["remove", "-q", "-r", s(&root), "--yes", "c"]);
    ok(&["gc", "-q", "-r", s(&root), "--keep", "1"]);
    assert_eq!(digests(), 2);
}

#[test]
fn the_exec_cache_keeps_programs_verified_and_serves_them_after_a_remount() {
    if !fuse_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mnt = tmp.path().join("mnt");
    let cache = tmp.path().join("exec");
    fs::create_dir(&mnt).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::copy("/usr/bin/echo", src.join("bin/myecho")).unwrap();
    fs::write(
        src.join("manifest.json"),
        complete(r#"{"name": "myecho", "version": "1"}"#),
    )
    .unwrap();
    let pkg = tmp.path().join("myecho.hpkg");
    ok(&["build", "-q", s(&src), "-o", s(&pkg)]);
    ok(&["init", s(&root)]);
    ok(&["install", "-q", "-r", s(&root), s(&pkg)]);
    // Reads answered from the cache (the default), then FUSE passthrough.
    for extra in [&[][..], &["--exec-cache-passthrough"][..]] {
        let _ = fs::remove_dir_all(&cache);
        let log = tmp.path().join("log");
        let mount = || {
            let o = exos(
                &[
                    "mount",
                    s(&root),
                    s(&mnt),
                    "--daemon",
                    "--pid-file",
                    s(&tmp.path().join("pid")),
                    "--log-file",
                    s(&log),
                    "--exec-cache",
                    s(&cache),
                ]
                .iter()
                .chain(extra)
                .copied()
                .collect::<Vec<_>>(),
            );
            assert!(
                o.status.success(),
                "{}{}",
                text(&o.stderr),
                fs::read_to_string(&log).unwrap_or_default()
            );
            assert!(wait_until(
                || ok(&["status", s(&mnt)]).contains("(1 of 1 packages digested)")
            ));
        };
        let run = || {
            let o = Command::new(mnt.join("merged/bin/myecho"))
                .arg("from the mount")
                .output()
                .unwrap();
            assert!(o.status.success());
            text(&o.stdout)
        };
        mount();
        assert_eq!(run(), "from the mount\n");
        // Running it decompressed it whole: kept, named by content and size.
        let size = fs::metadata(src.join("bin/myecho")).unwrap().len();
        let entries = || -> Vec<std::path::PathBuf> {
            fs::read_dir(&cache)
                .unwrap()
                .map(|e| e.unwrap().path())
                // Not the tag, nor an entry still being written (a
                // temporary file, renamed into place when whole).
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy();
                    name != "CACHEDIR.TAG" && !name.starts_with('.')
                })
                .collect()
        };
        assert!(
            wait_until(|| entries().len() == 1),
            "nothing cached\n{}\n{}",
            ok(&["status", s(&mnt)]),
            fs::read_to_string(&log).unwrap_or_default()
        );
        let entry = entries().remove(0);
        assert!(
            entry.to_string_lossy().ends_with(&format!("-{size}")),
            "{}",
            entry.display()
        );
        assert_eq!(
            fs::read(&entry).unwrap(),
            fs::read(src.join("bin/myecho")).unwrap()
        );
        ok(&["unmount", s(&mnt)]);
        // After a remount it is served from the cache (passthrough), unchanged.
        mount();
        assert_eq!(run(), "from the mount\n");
        assert_eq!(run(), "from the mount\n");
        ok(&["unmount", s(&mnt)]);
        // A tampered entry is found out, removed, and the package serves the
        // program again.
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = fs::read(&entry).unwrap();
        bytes[100] ^= 0xff;
        fs::write(&entry, bytes).unwrap();
        mount();
        assert_eq!(run(), "from the mount\n");
        // The entries are verified on a background thread after the mount
        // starts (the unverified entry is never served meanwhile, as the
        // run above shows): the tampered one goes once it is reached.
        let original = fs::read(src.join("bin/myecho")).unwrap();
        assert!(
            wait_until(|| fs::read(&entry).map_or(true, |now| now == original)),
            "the tampered entry is still there"
        );
        ok(&["unmount", s(&mnt)]);
    }
    // A cache directory others may write is refused.
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
    let o = exos(&[
        "mount",
        s(&root),
        s(&mnt),
        "--daemon",
        "--pid-file",
        s(&tmp.path().join("pid")),
        "--exec-cache",
        s(&cache),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("writable by no one else"),
        "{}",
        text(&o.stderr)
    );
}

/// FUSE over io_uring needs the fuse module's `enable_uring`, which
/// scripts/setup.sh turns on. Without it these checks say so loudly and
/// pass, unless CI=true, where they fail.
fn fuse_io_uring_available() -> bool {
    let knob = Path::new("/sys/module/fuse/parameters/enable_uring");
    if fs::read_to_string(knob).is_ok_and(|v| v.trim() == "Y") {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing or off (scripts/setup.sh turns it on), and CI=true: FUSE-over-io_uring tests must not be skipped",
            knob.display()
        );
    }
    eprintln!("\n!!!!!!!! FUSE over io_uring is off: its tests NOT RUN !!!!!!!!\n");
    false
}

/// Unmounts (lazily) on the way out if a failed assertion left the mount
/// up; a no-op after `exos unmount`.
struct LazyUnmount<'a>(&'a Path);

impl Drop for LazyUnmount<'_> {
    fn drop(&mut self) {
        if mounted(self.0) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
}

/// Names and voluntary context switches of a process's FUSE-over-io_uring
/// queue threads (`fuser-ring-N`).
fn ring_threads(pid: &str) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim().to_string();
        if !comm.starts_with("fuser-ring-") {
            continue;
        }
        let status = fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        v.push((comm, switches));
    }
    v.sort();
    v
}

/// Runs `script` in `dir` on one CPU; its output.
fn on_cpu(dir: &Path, cpu: usize, script: &str) -> String {
    let o = Command::new("taskset")
        .args(["-c", &cpu.to_string(), "sh", "-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// `sha256sum` of `files` (relative to `dir`), run on one CPU.
fn hashes_on_cpu(dir: &Path, cpu: usize, files: &[String]) -> String {
    let o = Command::new("taskset")
        .args(["-c", &cpu.to_string(), "sha256sum", "--"])
        .args(files)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The regular files under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                v.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    v.sort();
    v
}
/// Names, sizes, modes, link counts and times of every entry (not `.` and
/// `..`, nor `.packages`: the mount's own directories carry the time it was
/// mounted).
const LISTING: &str = "ls -lRA -I .packages --time-style=+%s .";

#[test]
fn io_uring_and_dev_fuse_serve_the_same_bytes_from_every_cpu() {
    if !fuse_available() || !fuse_io_uring_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (root, mnt) = (tmp.path().join("root"), tmp.path().join("mnt"));
    fs::create_dir_all(root.join("system/packages")).unwrap();
    fs::create_dir_all(&mnt).unwrap();
    // Many small files (a real header tree), a symlink, and files larger
    // than one request (1 MiB), which cross the queue entries' buffers.
    let src = tmp.path().join("tree");
    fs::create_dir_all(&src).unwrap();
    let o = Command::new("cp")
        .args(["-a", "/usr/include/linux"])
        .arg(src.join("include"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::write(src.join("big"), noise(3 << 20, 7)).unwrap();
    fs::write(src.join("odd"), noise((1 << 20) + 4093, 9)).unwrap();
    std::os::unix::fs::symlink("include/stddef.h", src.join("link")).unwrap();
    fs::write(
        src.join("manifest.json"),
        r#"{"name":"tree","version":"1.0","summary":"t","license":"MIT","copyright":"2026 EXOS"}"#,
    )
    .unwrap();
    let o = exos(&[
        "build",
        "-q",
        s(&src),
        "-o",
        s(&root.join("system/packages/tree.hpkg")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::remove_file(src.join("manifest.json")).unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    let files = files_under(&src);
    assert!(files.len() > 700, "{files:?}");
    let want = hashes_on_cpu(&src, 0, &files);
    let mut listing: Option<String> = None;

    let pid_file = tmp.path().join("exos.pid");
    for (mode, kind) in [
        ("always", "io_uring"),
        ("never", "dev_fuse"),
        ("auto", "io_uring"),
    ] {
        // A fresh mount per CPU, so that each CPU's reader finds nothing
        // cached and every one of its requests goes to its CPU's queue.
        for cpu in 0..cpus {
            let o = exos(&[
                "mount",
                "--daemon",
                "--io-uring",
                mode,
                // Link counts change when content digests arrive.
                "--no-share",
                "--pid-file",
                s(&pid_file),
                s(&root),
                s(&mnt),
            ]);
            assert!(o.status.success(), "{mode}: {}", text(&o.stderr));
            let _unmount = LazyUnmount(&mnt);
            let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
            let o = exos(&["status", "--json", s(&mnt)]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(v["transport"]["kind"], kind, "{mode}: {v}");
            let human = ok(&["status", s(&mnt)]);
            let before = ring_threads(&pid);
            if kind == "io_uring" {
                assert!(human.contains("transport:   FUSE over io_uring"), "{human}");
                // A queue, and its thread, per possible CPU.
                let queues = v["transport"]["queues"].as_u64().unwrap() as usize;
                assert!(queues >= cpus, "{v}");
                assert_eq!(before.len(), queues, "{before:?}");
            } else {
                assert!(human.contains("transport:   /dev/fuse"), "{human}");
                assert!(before.is_empty(), "{before:?}");
            }
            // The tree's bytes, and the same listing, whichever CPU reads
            // and whichever way requests come.
            let got = hashes_on_cpu(&mnt.join("system"), cpu, &files);
            assert!(
                got == want,
                "{mode}, cpu {cpu}: the mount's bytes differ from the tree"
            );
            let got = on_cpu(&mnt.join("system"), cpu, LISTING);
            assert!(got.lines().count() > 800, "{got}");
            let first = listing.get_or_insert_with(|| got.clone());
            let diff = first.lines().zip(got.lines()).find(|(a, b)| a != b);
            assert!(
                *first == got,
                "{mode}, cpu {cpu}: the listing differs: {diff:?}"
            );
            if kind == "io_uring" {
                // Served by the reader's CPU's queue thread.
                let after = ring_threads(&pid);
                let name = format!("fuser-ring-{cpu}");
                let was = before.iter().find(|t| t.0 == name).map_or(0, |t| t.1);
                let now = after.iter().find(|t| t.0 == name).map_or(0, |t| t.1);
                assert!(
                    now > was + 100,
                    "{name} served nothing: {before:?} → {after:?}"
                );
            }
            let o = exos(&["unmount", s(&mnt)]);
            assert!(o.status.success(), "{mode}: {}", text(&o.stderr));
            assert!(
                wait_until(|| !pid_file.exists()),
                "{mode}: the daemon did not exit"
            );
        }
    }

    // With the kernel's switch off: `always` refuses and says how to turn
    // it on, `auto` mounts through /dev/fuse and says why.
    struct KnobBack;
    impl Drop for KnobBack {
        fn drop(&mut self) {
            let _ = fs::write("/sys/module/fuse/parameters/enable_uring", "1");
        }
    }
    let _back = KnobBack;
    fs::write("/sys/module/fuse/parameters/enable_uring", "0").unwrap();
    let o = exos(&["mount", "--io-uring", "always", s(&root), s(&mnt)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--io-uring always: FUSE over io_uring is off in the kernel")
            && text(&o.stderr).contains("enable_uring"),
        "{}",
        text(&o.stderr)
    );
    assert!(!mounted(&mnt));
    let o = exos(&[
        "mount",
        "--daemon",
        "--pid-file",
        s(&pid_file),
        s(&root),
        s(&mnt),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let _unmount = LazyUnmount(&mnt);
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let o = exos(&["status", "--json", s(&mnt)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["transport"]["kind"], "dev_fuse", "{v}");
    assert!(
        v["transport"]["reason"]
            .as_str()
            .unwrap()
            .contains("enable_uring"),
        "{v}"
    );
    assert!(ring_threads(&pid).is_empty());
    assert_eq!(hashes_on_cpu(&mnt.join("system"), 0, &files), want);
    let o = exos(&["unmount", s(&mnt)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(wait_until(|| !pid_file.exists()));
}

/// Puts back /dev/fuse's mode when dropped (also when a check fails).
struct DevFuseMode(u32);

impl Drop for DevFuseMode {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(self.0));
    }
}

/// A user mounts a root they can read (through the setuid fusermount3,
/// with nosuid and nodev), reads from it, and unmounts it with `exos
/// unmount`; they cannot unmount a mount that is not theirs.
#[test]
fn a_user_mounts_and_unmounts_their_own_view_but_not_roots() {
    if !fuse_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    // Users may use FUSE where /dev/fuse is open to all (0666, as Debian's
    // udev rules make it); on these machines it is 0600 (no udev), which
    // fusermount3 honours. Opened for this test, put back after.
    let mode = fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o7777;
    let _restore = DevFuseMode(mode);
    fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o666)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (root, mnt) = setup(tmp.path());
    fs::remove_file(root.join("user/packages/junk.hpkg")).unwrap();
    let theirs = tmp.path().join("nobody");
    fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&mnt, Some(65534), Some(65534)).unwrap();
    let log = theirs.join("log");
    let _unmount = LazyUnmount(&mnt);
    let o = exos_as_nobody(&[
        "mount",
        s(&root),
        s(&mnt),
        "--private",
        "--daemon",
        "--pid-file",
        s(&theirs.join("pid")),
        "--log-file",
        s(&log),
    ]);
    assert!(
        o.status.success(),
        "{}{}",
        text(&o.stderr),
        fs::read_to_string(&log).unwrap_or_default()
    );
    // The kernel's own record: mounted for nobody, without privileges.
    let line = fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(s(&mnt)))
        .map(str::to_string)
        .expect("mounted");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    assert!(line.contains("user_id=65534"), "{line}");
    let out = as_nobody(mnt.join("system/bin/hi"), &[]);
    assert_eq!(text(&out.stdout), "hi from the mount\n", "{out:?}");

    // Theirs to unmount, with the same command root uses.
    let o = exos_as_nobody(&["unmount", s(&mnt)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!mounted(&mnt));
    assert!(
        wait_until(|| !theirs.join("pid").exists()),
        "the daemon stayed"
    );

    // Root's mount is not theirs: refused, saying why, and still mounted.
    let o = exos(&[
        "mount",
        s(&root),
        s(&mnt),
        "--daemon",
        "--pid-file",
        s(&tmp.path().join("pid")),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = exos_as_nobody(&["unmount", s(&mnt)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("fusermount3"),
        "{}",
        text(&o.stderr)
    );
    assert!(mounted(&mnt));
    ok(&["unmount", s(&mnt)]);
}

/// The exec cache is on unless `--no-exec-cache`: in `$EXOS_EXEC_CACHE`
/// (else /var/cache/exos/exec for root); a default directory that is not
/// private is not used, said, and the mount goes on without one.
#[test]
fn the_exec_cache_is_on_by_default_and_a_bad_default_is_skipped() {
    if !fuse_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (root, mnt) = setup(tmp.path());
    let cache = tmp.path().join("exec");
    let _unmount = LazyUnmount(&mnt);
    let pid = tmp.path().join("pid");
    let mount = |extra: &[&str]| {
        let mut args = vec![
            "mount",
            s(&root),
            s(&mnt),
            "--daemon",
            "--pid-file",
            s(&pid),
        ];
        args.extend_from_slice(extra);
        let o = exos_env(&args, &[("EXOS_EXEC_CACHE", s(&cache))]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stderr)
    };
    let status = || -> serde_json::Value {
        serde_json::from_str(&ok(&["status", "--json", s(&mnt)])).unwrap()
    };

    mount(&[]);
    let st = status();
    assert_eq!(st["exec_cache"]["dir"], s(&cache), "{st}");
    assert_eq!(st["exec_cache"]["serve"], "reads");
    assert_eq!(st["exec_cache"]["max_bytes"], 1u64 << 30);
    assert!(ok(&["status", s(&mnt)]).contains(&format!("exec cache:  {}", s(&cache))));
    let mode = fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the default directory is made private");
    ok(&["unmount", s(&mnt)]);

    mount(&["--no-exec-cache"]);
    assert!(status()["exec_cache"].is_null());
    ok(&["unmount", s(&mnt)]);

    mount(&["--exec-cache-passthrough"]);
    assert_eq!(status()["exec_cache"]["serve"], "passthrough");
    ok(&["unmount", s(&mnt)]);

    // Others may write the default directory: not used, and said so.
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
    let said = mount(&[]);
    assert!(said.contains("no exec cache"), "{said}");
    assert!(status()["exec_cache"].is_null());
    ok(&["unmount", s(&mnt)]);
}

#[test]
fn names_that_are_not_utf8_are_served_as_bytes() {
    if !fuse_available() {
        return;
    }
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let at = |dir: &Path, name: &[u8]| dir.join(OsStr::from_bytes(name));
    // A tree with Latin-1 names, built as Haiku's `package create` would.
    let src = tmp.path().join("src");
    fs::create_dir_all(at(&src, b"r\xe9p")).unwrap();
    fs::write(at(&src, b"caf\xe9"), "latin-1").unwrap();
    fs::write(at(&at(&src, b"r\xe9p"), b"caf\xe9"), "inner").unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"caf\xe9"), src.join("link")).unwrap();
    fs::write(
        src.join("manifest.json"),
        complete(r#"{"name": "latin1", "version": "1"}"#),
    )
    .unwrap();
    let pkg = tmp.path().join("latin1.hpkg");
    ok(&["build", "-q", s(&src), "-o", s(&pkg)]);
    let root = tmp.path().join("root");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    ok(&["init", s(&root)]);
    ok(&["install", "-q", "-r", s(&root), s(&pkg)]);
    let _unmount = LazyUnmount(&mnt);
    ok(&[
        "mount",
        s(&root),
        s(&mnt),
        "--daemon",
        "--pid-file",
        s(&tmp.path().join("pid")),
    ]);
    let merged = mnt.join("merged");
    // Listed with their bytes, looked up and read by them.
    let mut names: Vec<Vec<u8>> = fs::read_dir(&merged)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    for name in [&b"caf\xe9"[..], b"link", b"r\xe9p"] {
        assert!(names.iter().any(|n| n == name), "{name:?} not in {names:?}");
    }
    assert_eq!(fs::read(at(&merged, b"caf\xe9")).unwrap(), b"latin-1");
    let inner = at(&at(&merged, b"r\xe9p"), b"caf\xe9");
    assert_eq!(fs::read(&inner).unwrap(), b"inner");
    assert_eq!(
        fs::read_link(merged.join("link"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"caf\xe9"
    );
    assert_eq!(fs::read(merged.join("link")).unwrap(), b"latin-1");
    // The UTF-8 spelling of the name is another name: not found.
    assert!(!merged.join("café").exists());
    // `exos files` shows them escaped, and says so in JSON.
    let files = ok(&["files", "-r", s(&root), "latin1"]);
    assert!(files.contains("/r\\351p/caf\\351\n"), "{files}");
    assert!(files.contains("/link -> caf\\351\n"), "{files}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["files", "--json", "-r", s(&root), "latin1"])).unwrap();
    let cafe = v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "/caf\\351")
        .cloned()
        .expect("listed");
    assert_eq!(cafe["escaped"], true);
    ok(&["unmount", s(&mnt)]);
}
