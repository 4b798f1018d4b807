//! `exos mount --daemon`, `exos status`, SIGTERM and `exos unmount`, for real
//! (needs /dev/fuse; fails instead of skipping when CI=true).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn exos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(args)
        .output()
        .expect("run exos")
}

fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("/dev/fuse is missing, and CI=true: FUSE tests must not be skipped");
    }
    eprintln!("\n!!!!!!!! /dev/fuse is missing: exos mount tests NOT RUN !!!!!!!!\n");
    false
}

fn mounted(p: &Path) -> bool {
    let p = p.canonicalize().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

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

fn wait_until(f: impl Fn() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
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
