//! Runtime overlays (`exos overlay`) on a real FUSE mount: a directory
//! shown over one package's files, live, never part of a numbered state,
//! surviving a remount, gone at once when removed; refused where the layer
//! requires signatures (unless forced) and when another user could change
//! its files. Needs /dev/fuse (fails instead of skipping when CI=true).

mod support;
use support::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, format!("#!/bin/sh\necho {text}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn build(w: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let src = w.join(format!("src-{name}"));
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("manifest.json"),
        complete(&format!(r#"{{"name":"{name}","version":"1.0"}}"#)),
    )
    .unwrap();
    for (path, text) in files {
        script(&src.join(path), text, 0o755);
    }
    let out = w.join(format!("{name}.hpkg"));
    ok(&["build", "-q", s(&src), "-o", s(&out)]);
    out
}

fn run(p: &Path) -> String {
    Command::new(p)
        .output()
        .map(|o| text(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn mount(root: &Path, mnt: &Path, w: &Path) {
    ok(&[
        "mount",
        s(root),
        s(mnt),
        "--daemon",
        "--pid-file",
        s(&w.join("pid")),
        "--log-file",
        s(&w.join("log")),
    ]);
}

#[test]
fn overlays_show_over_one_package_live_and_leave_no_trace() {
    if !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    // Overlay files must be writable by their owner only; the tempdir is.
    fs::set_permissions(w, fs::Permissions::from_mode(0o755)).unwrap();
    let tool = build(
        w,
        "tool",
        &[("bin/tool", "original"), ("share/tool/data", "data")],
    );
    let other = build(w, "other", &[("bin/other", "other")]);
    let root = w.join("root");
    ok(&["init", "-q", s(&root)]);
    ok(&["install", "-q", "-r", s(&root), s(&tool), s(&other)]);
    let states = ok(&["state", "list", "-r", s(&root)]);
    let active = fs::read(root.join("system/state/active.list")).unwrap();

    let d = w.join("fix");
    script(&d.join("bin/tool"), "patched", 0o4755); // setuid: never served
    script(&d.join("share/tool/extra"), "extra", 0o644);
    script(&d.join("bin/other"), "not other", 0o755); // another package's path
    let mnt = w.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    mount(&root, &mnt, w);
    let merged = mnt.join("merged");
    assert_eq!(run(&merged.join("bin/tool")), "original");

    let said = ok(&["overlay", "add", "tool", s(&d), "-r", s(&root)]);
    assert!(said.contains("Overlay added: tool (system)"), "{said}");
    assert!(
        wait_until(|| run(&merged.join("bin/tool")) == "patched"),
        "the overlay is not shown"
    );
    for tree in ["system", "merged-system"] {
        assert_eq!(run(&mnt.join(tree).join("bin/tool")), "patched", "{tree}");
    }
    assert!(merged.join("share/tool/extra").exists());
    assert!(
        merged.join("share/tool/data").exists(),
        "the package's other files stay"
    );
    assert_eq!(
        run(&merged.join("bin/other")),
        "other",
        "another package's file was covered"
    );
    let mode = fs::metadata(merged.join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "setuid bit served from an overlay");

    // Live: a changed file, a new file.
    script(&d.join("share/tool/extra"), "changed", 0o644);
    assert!(
        wait_until(|| fs::read_to_string(merged.join("share/tool/extra"))
            .is_ok_and(|t| t.contains("changed"))),
        "a changed overlay file is not shown"
    );
    fs::write(d.join("share/tool/new"), "new\n").unwrap();
    assert!(wait_until(|| merged.join("share/tool/new").exists()));

    let status = ok(&["status", s(&mnt)]);
    assert!(
        status.contains("overlays: 1") && status.contains(s(&d)),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--json", s(&mnt)])).unwrap();
    assert_eq!(json["overlays"][0]["package"], "tool");
    assert_eq!(json["overlays"][0]["layer"], "system");

    // Never part of a numbered state.
    assert_eq!(ok(&["state", "list", "-r", s(&root)]), states);
    assert_eq!(
        fs::read(root.join("system/state/active.list")).unwrap(),
        active
    );
    let listed = ok(&["overlay", "list", "-r", s(&root)]);
    assert!(
        listed.contains("tool (system)") && listed.contains(s(&d)),
        "{listed}"
    );

    // Survives a remount.
    ok(&["unmount", s(&mnt)]);
    mount(&root, &mnt, w);
    assert_eq!(run(&merged.join("bin/tool")), "patched");

    // Nobody else may change it.
    let o = exos_as_nobody(&["overlay", "remove", "tool", "-r", s(&root)]);
    assert!(!o.status.success(), "nobody removed an overlay");

    // Files another user could change are refused; the package stays.
    fs::set_permissions(
        d.join("share/tool/extra"),
        fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    assert!(
        wait_until(|| run(&merged.join("bin/tool")) == "original"),
        "an overlay with a world-writable file is shown"
    );
    let status = ok(&["status", s(&mnt)]);
    assert!(status.contains("writable by no one else"), "{status}");
    fs::set_permissions(
        d.join("share/tool/extra"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(wait_until(|| run(&merged.join("bin/tool")) == "patched"));

    // Removed: the package's own files at once.
    ok(&["overlay", "remove", "-q", "tool", "-r", s(&root)]);
    assert!(wait_until(|| run(&merged.join("bin/tool")) == "original"));
    assert!(!merged.join("share/tool/extra").exists());
    assert_eq!(ok(&["overlay", "list", "-r", s(&root)]), "No overlays.\n");
    ok(&["unmount", s(&mnt)]);

    // A layer that requires signatures refuses overlays unless forced.
    ok(&["key", "generate", "-q", "k", "-d", s(w)]);
    ok(&["trust", "add", "-q", s(&w.join("k.pub")), "-r", s(&root)]);
    ok(&["trust", "policy", "-q", "system", "signed", "-r", s(&root)]);
    let o = exos(&["overlay", "add", "tool", s(&d), "-r", s(&root)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("accepts only signed packages"),
        "{}",
        text(&o.stderr)
    );
    let forced = ok(&["overlay", "add", "tool", s(&d), "--force", "-r", s(&root)]);
    assert!(forced.contains("forced"), "{forced}");
    assert!(ok(&["overlay", "list", "-r", s(&root)]).contains("[forced]"));
    // Errors: no such package, not a directory.
    let o = exos(&["overlay", "add", "nope", s(&d), "-r", s(&root)]);
    assert!(
        text(&o.stderr).contains("no package of that name"),
        "{}",
        text(&o.stderr)
    );
    // A directory the mount would refuse (others may write in it) is
    // refused when it is added, with the mount's reason.
    let open = w.join("open-overlay");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let o = exos(&[
        "overlay",
        "add",
        "tool",
        s(&open),
        "--force",
        "-r",
        s(&root),
    ]);
    assert!(!o.status.success());
    let said = text(&o.stderr);
    assert!(
        said.contains("a mount would refuse this overlay")
            && said.contains("writable by no one else"),
        "{said}"
    );
}

#[test]
fn a_crafted_overlays_file_is_refused_naming_it_and_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    ok(&["init", "-q", s(&root)]);
    let f = root.join("system/state/overlays.json");
    for (bytes, rule) in [
        (
            &br#"{"overlays":[{"package":"a","layer":"system","dir":"x","added":1}]}"#[..],
            "absolute",
        ),
        (&br#"{"overlays":[], "more": true}"#[..], "unknown field"),
        (&b"\xff\xfe"[..], "overlays.json"),
    ] {
        fs::write(&f, bytes).unwrap();
        let o = exos(&["overlay", "list", "-r", s(&root)]);
        assert!(!o.status.success());
        let err = text(&o.stderr);
        assert!(err.contains("overlays.json") && err.contains(rule), "{err}");
    }
}
