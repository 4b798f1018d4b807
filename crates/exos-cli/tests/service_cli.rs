//! Running under a service manager: systemd's unit (checked by
//! `systemd-analyze verify`) and its readiness protocol, as exos-mountd
//! speaks it to a real `$NOTIFY_SOCKET`.

mod support;
use support::*;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_unit_file_is_valid_for_systemd() {
    let tmp = tempfile::tempdir().unwrap();
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/systemd/exos-mount@.service"
    );
    let text = fs::read_to_string(unit).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_exos"))
        .parent()
        .unwrap();
    let local = text.replace("/usr/local/bin/", &format!("{}/", bin.display()));
    fs::write(tmp.path().join("exos-mount@.service"), local).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "./exos-mount@exos.service"])
        .current_dir(tmp.path())
        .output()
        .expect("systemd-analyze (systemd) is installed");
    let said = text_of(&o);
    assert!(o.status.success() && said.trim().is_empty(), "{said}");
    assert!(
        text.contains("Type=notify")
            && text.contains("ExecStart=/usr/local/bin/exos-mountd %f /run/exos/%i")
    );
}

fn text_of(o: &std::process::Output) -> String {
    text(&o.stdout) + &text(&o.stderr)
}

#[test]
fn the_daemon_tells_the_service_manager_when_it_serves_and_when_it_stops() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let pk = w.join("pk");
    let hello = package(w, &pk, r#"{"name":"hello","version":"1.0"}"#, "hi");
    let root = w.join("root");
    ok(&["init", "-q", s(&root)]);
    ok(&["install", "-q", s(&hello), "-r", s(&root)]);
    let mnt = w.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let socket = w.join("notify");
    let manager = UnixDatagram::bind(&socket).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // In the foreground, as a unit's ExecStart runs it.
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(["mount", s(&root), s(&mnt), "--no-exec-cache"])
        .env("NOTIFY_SOCKET", &socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = manager.recv(&mut buf).expect("READY=1 within 20 s");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    // Ready means served: the package's file is there already.
    let served = mnt.join("merged/share/hello").is_file();
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let n = manager.recv(&mut buf).expect("STOPPING=1");
    let stopping = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status = daemon.wait().unwrap();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", daemon.id())),
        "{ready}"
    );
    assert!(ready.contains("STATUS=serving 1 packages"), "{ready}");
    assert!(served, "READY=1 came before the files were served");
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    assert!(status.success(), "{status}");
    assert!(!mounted(&mnt));
}
