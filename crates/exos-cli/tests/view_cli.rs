//! `exos run` / `exos shell` for real: a real packagefs mount, real mount,
//! user and network namespaces, the real unprivileged user `nobody`, a real
//! nginx on loopback for the network, and apps embedding libraries built
//! here with the C compiler.

mod support;
use support::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Fixture {
    tmp: tempfile::TempDir,
    root: PathBuf,
    mnt: PathBuf,
}

impl Fixture {
    /// A root with hello + greetings in `system` and `userthing` in
    /// `user`, mounted. The directory is world-readable so `nobody` can
    /// reach the mount.
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("root");
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let hello = tmp.path().join("hello.hpkg");
        let greetings = tmp.path().join("greetings.hpkg");
        ok(&["build", "-q", s(&examples.join("hello")), "-o", s(&hello)]);
        ok(&[
            "build",
            "-q",
            s(&examples.join("greetings")),
            "-o",
            s(&greetings),
        ]);
        let thing = package(
            tmp.path(),
            &tmp.path().join("pkgs"),
            r#"{"name": "userthing", "version": "1"}"#,
            "mine\n",
        );
        ok(&["init", s(&root)]);
        ok(&["install", "-q", "-r", s(&root), s(&hello), s(&greetings)]);
        ok(&["install", "-q", "-r", s(&root), "-l", "user", s(&thing)]);
        let f = Fixture { tmp, root, mnt };
        f.mount();
        f
    }

    fn mount(&self) {
        ok(&[
            "mount",
            s(&self.root),
            s(&self.mnt),
            "--daemon",
            "--pid-file",
            s(&self.tmp.path().join("pid")),
            "--log-file",
            s(&self.tmp.path().join("log")),
        ]);
    }

    /// `exos run -r ROOT EXTRA... -- sh -c SCRIPT`.
    fn run(&self, extra: &[&str], script: &str) -> Output {
        let mut args = vec!["run", "-r", s(&self.root)];
        args.extend_from_slice(extra);
        args.extend(["--", "sh", "-c", script]);
        exos(&args)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn out(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

#[test]
fn views_show_the_layers_by_audience_and_leave_the_host_alone() {
    if !fuse_available() {
        return;
    }
    let fx = Fixture::new();
    let user = out(&fx.run(
        &[],
        "ls /; hello; cat /user/share/userthing; echo $EXOS_VIEW",
    ));
    let lines: Vec<&str> = user.lines().collect();
    for name in ["common", "data", "system", "user", "usr", "proc", "tmp"] {
        assert!(lines.contains(&name), "{name} missing from {user}");
    }
    assert!(
        user.contains("Hello from a package!\nmine\nuser\n"),
        "{user}"
    );
    // A system view has no user layer at all.
    let system = out(&fx.run(
        &["--system"],
        "ls /; test -e /user || echo no-user; echo $EXOS_VIEW",
    ));
    assert!(!system.lines().any(|l| l == "user"), "{system}");
    assert!(system.ends_with("no-user\nsystem\n"), "{system}");
    // Children inherit the view; /data is the root's data, writable.
    out(&fx.run(&[], "sh -c 'echo kept > /data/note'"));
    assert_eq!(
        fs::read_to_string(fx.root.join("data/note")).unwrap(),
        "kept\n"
    );
    // The packages are read-only, the root directory too.
    let o = fx.run(&[], "touch /system/x || touch /newfile || echo refused");
    assert!(out(&o).ends_with("refused\n"));
    // One file, one inode, wherever the mount shows it.
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| fs::metadata(fx.mnt.join(p)).unwrap().ino();
    assert_eq!(ino("system/bin/hello"), ino("merged/bin/hello"));
    assert_eq!(ino("system/bin/hello"), ino("merged-system/bin/hello"));
    assert_ne!(ino("system/bin/hello"), ino("merged/share/hello/README"));
    // The host's namespace is untouched.
    assert!(!Path::new("/system").exists() && !Path::new("/common").exists());
    // (Other tests mount in parallel: look for the view's own mounts, not
    // at the count.)
    for m in exos_root::mountinfo::read() {
        let at = m.mount_point.to_string_lossy();
        let view_mount = [
            "/system", "/common", "/user", "/data", "/usr", "/newroot", "/oldroot",
        ]
        .contains(&at.as_ref())
            || at.starts_with("/tmp/newroot")
            || at.starts_with("/tmp/oldroot");
        assert!(!view_mount, "a view's mount leaked into the host: {m:?}");
    }
    // The exit status is the command's.
    assert_eq!(fx.run(&[], "exit 7").status.code(), Some(7));
    let o = exos(&["run", "-r", s(&fx.root), "--", "no-such-program"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o.stderr));
}

#[test]
fn exos_shell_starts_the_users_shell_in_the_view() {
    if !fuse_available() {
        return;
    }
    let fx = Fixture::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(["shell", "-r", s(&fx.root), "--system"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"id -un; echo $EXOS_VIEW; hello; exit 3\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(text(&o.stdout), "root\nsystem\nHello from a package!\n");
}

#[test]
fn a_view_needs_a_mount_and_names_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    ok(&["init", s(&root)]);
    let o = exos(&["run", "-r", s(&root), "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("not mounted (start the mount first: exos mount"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn root_runs_views_as_other_users_and_users_get_their_own() {
    if !fuse_available() {
        return;
    }
    let fx = Fixture::new();
    let o = fx.run(
        &["--user", "nobody"],
        "id -u; echo $HOME; touch /data/x 2>/dev/null || echo no-write; hello",
    );
    assert_eq!(
        out(&o),
        "65534\n/nonexistent\nno-write\nHello from a package!\n"
    );
    // nobody itself: an unprivileged user namespace, same view.
    let o = exos_as_nobody(&[
        "run",
        "-r",
        s(&fx.root),
        "--",
        "sh",
        "-c",
        "id -u; ls /user/share; hello",
    ]);
    assert_eq!(out(&o), "65534\nuserthing\nHello from a package!\n");
    // …and never as somebody else.
    let o = exos_as_nobody(&["run", "-r", s(&fx.root), "--user", "root", "--", "true"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("only root can run a view as another user"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_sandbox_writes_only_its_data_sees_no_home_and_has_no_network() {
    if !fuse_available() || !nginx_available() {
        return;
    }
    let fx = Fixture::new();
    let www = fx.tmp.path().join("www");
    fs::create_dir(&www).unwrap();
    fs::write(www.join("index.html"), "served\n").unwrap();
    let nginx = Nginx::serve(&www);
    let url = nginx.url();
    let marker = fx.tmp.path().join("host-secret");
    fs::write(&marker, "secret").unwrap();
    // A host process of the same user the sandbox must not reach.
    let mut host = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
            "sleep",
            "60",
        ])
        .spawn()
        .unwrap();
    let hp = host.id();
    let script = format!(
        "id -u; echo $HOME; pwd; echo data > /data/app/file && echo wrote-data; \
         touch /tmp/t && echo wrote-tmp; \
         for d in /system /usr /etc /newfile /data/other; do touch $d/x 2>/dev/null && echo WROTE $d; done; \
         test -e /home || echo no-home; test -e /root || echo no-root; \
         test -e {marker} || echo no-host-files; \
         cat /proc/{hp}/environ >/dev/null 2>&1 || echo no-environ; \
         ls /proc/{hp}/root/ >/dev/null 2>&1 || echo no-proc-root; \
         kill -0 {hp} 2>/dev/null || echo no-signal; \
         python3 -c 'import os\ntry: os.pidfd_open({hp})\nexcept OSError as e: print(\"pidfd\", e.strerror)'; \
         test -e /proc/{hp} || echo host-pid-hidden; echo pid $$; \
         python3 -c 'import socket\nfor f in (socket.AF_NETLINK, 40):\n  try: socket.socket(f, socket.SOCK_RAW if f == socket.AF_NETLINK else socket.SOCK_STREAM, 0)\n  except OSError as e: print(f, e.strerror)'; \
         setarch -R true 2>/dev/null || echo no-addr-no-randomize; setarch x86_64 true && echo personality-linux-ok; \
         unshare -U true 2>/dev/null || echo no-user-namespace; \
         python3 -c 'import fcntl, termios, errno\ntry: fcntl.ioctl(0, termios.TIOCSTI, b\"x\")\nexcept OSError as e: print(\"tiocsti\", errno.errorcode[e.errno])'; \
         python3 -c 'import threading; t = threading.Thread(target=print, args=(\"threads\",)); t.start(); t.join()'; \
         curl -s -m 5 {url}/ || echo no-network; hello",
        marker = marker.display()
    );
    let o = fx.run(&["--sandbox", "--data", "app"], &script);
    assert_eq!(
        out(&o),
        "65534\n/data/app\n/data/app\nwrote-data\nwrote-tmp\nno-home\nno-root\nno-host-files\nno-environ\nno-proc-root\nno-signal\npidfd No such process\nhost-pid-hidden\npid 2\n16 Operation not permitted\n40 Operation not permitted\nno-addr-no-randomize\npersonality-linux-ok\nno-user-namespace\ntiocsti EPERM\nthreads\nno-network\nHello from a package!\n"
    );
    let _ = host.kill();
    let _ = host.wait();
    // The command's exit status comes back through the init; a SIGTERM to
    // `exos run` reaches the command (an init passes it on; a command run
    // as PID 1 would ignore it).
    let o = fx.run(&["--sandbox", "--data", "app"], "exit 7");
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_exos"))
        .args([
            "run",
            "-r",
            s(&fx.root),
            "--sandbox",
            "--data",
            "app",
            "--",
            "sleep",
            "60",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "SIGTERM never reached the command"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(128 + 15));
    let kept = fx.root.join("data/users/nobody/app/file");
    assert_eq!(fs::read_to_string(&kept).unwrap(), "data\n");
    // --net keeps the host's network.
    let o = fx.run(
        &["--sandbox", "--net", "--data", "app"],
        &format!("curl -s -m 5 {url}/"),
    );
    assert_eq!(out(&o), "served\n");
    // nobody can start its own sandbox (its data directory exists now).
    let o = exos_as_nobody(&[
        "run",
        "-r",
        s(&fx.root),
        "--sandbox",
        "--data",
        "app",
        "--",
        "sh",
        "-c",
        "cat /data/app/file; id -u",
    ]);
    assert_eq!(out(&o), "data\n65534\n");
    // Never as root.
    let o = fx.run(&["--sandbox", "--user", "root"], "true");
    assert!(
        text(&o.stderr).contains("a sandbox never runs as root"),
        "{}",
        text(&o.stderr)
    );
    // A data directory owned by someone else is refused.
    fs::create_dir_all(fx.root.join("data/users/daemon")).unwrap();
    let o = fx.run(&["--sandbox", "--user", "daemon", "--data", "x"], "true");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("not a directory owned by daemon"),
        "{}",
        text(&o.stderr)
    );
}

/// Builds `libfoo.so.1` printing `word`, and an app linked against it, into
/// a package NAME with the library private.
fn app_package(tmp: &Path, name: &str, word: &str) -> PathBuf {
    let src = tmp.join(format!("src-{name}"));
    fs::create_dir_all(src.join("lib")).unwrap();
    fs::create_dir_all(src.join("bin")).unwrap();
    let c = tmp.join(format!("{name}-foo.c"));
    fs::write(
        &c,
        format!("#include <stdio.h>\nvoid foo(void) {{ puts(\"{word}\"); }}\n"),
    )
    .unwrap();
    let lib = src.join("lib/libfoo.so.1");
    let cc = |args: &[&str]| {
        let o = Command::new("cc").args(args).output().unwrap();
        assert!(o.status.success(), "cc {args:?}: {}", text(&o.stderr));
    };
    cc(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libfoo.so.1",
        "-o",
        s(&lib),
        s(&c),
    ]);
    fs::create_dir_all(tmp.join(format!("link-{name}"))).unwrap();
    std::os::unix::fs::symlink(&lib, tmp.join(format!("link-{name}/libfoo.so"))).unwrap();
    let main = tmp.join(format!("{name}-main.c"));
    fs::write(
        &main,
        "void foo(void);\nint main(void) { foo(); return 0; }\n",
    )
    .unwrap();
    let linkdir = format!("-L{}", tmp.join(format!("link-{name}")).display());
    cc(&[
        "-o",
        s(&src.join(format!("bin/{name}"))),
        s(&main),
        &linkdir,
        "-lfoo",
    ]);
    fs::write(
        src.join("manifest.json"),
        complete(&format!(
            r#"{{"name": "{name}", "version": "1", "private": ["lib"]}}"#
        )),
    )
    .unwrap();
    let out = tmp.join(format!("{name}.hpkg"));
    ok(&["build", "-q", s(&src), "-o", s(&out)]);
    out
}

#[test]
fn apps_embedding_the_same_library_each_run_with_their_own() {
    if !fuse_available() {
        return;
    }
    let fx = Fixture::new();
    let a = app_package(fx.tmp.path(), "app_a", "foo built for A");
    let b = app_package(fx.tmp.path(), "app_b", "foo built for B");
    ok(&["install", "-q", "-r", s(&fx.root), s(&a), s(&b)]);
    assert!(wait_until(|| fx
        .mnt
        .join("system/.packages/app_b")
        .exists()));
    assert_eq!(
        out(&exos(&["run", "-r", s(&fx.root), "app_a"])),
        "foo built for A\n"
    );
    assert_eq!(
        out(&exos(&["run", "-r", s(&fx.root), "app_b"])),
        "foo built for B\n"
    );
    // Side by side, from one mount, at the same time.
    let start = |app: &str| {
        Command::new(env!("CARGO_BIN_EXE_exos"))
            .args(["run", "-r", s(&fx.root), app])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (start("app_a"), start("app_b"));
    assert_eq!(
        text(&pa.wait_with_output().unwrap().stdout),
        "foo built for A\n"
    );
    assert_eq!(
        text(&pb.wait_with_output().unwrap().stdout),
        "foo built for B\n"
    );
    // The libraries are in neither union: only under each package's own directory.
    for tree in ["system", "merged", "merged-system"] {
        assert!(!fx.mnt.join(tree).join("lib").exists(), "{tree}/lib exists");
    }
    assert!(fx
        .mnt
        .join("system/.packages/app_a/lib/libfoo.so.1")
        .is_file());
    // The exported program alone does not find its library.
    let o = fx.run(&[], "/system/bin/app_a 2>&1 || echo missing-library");
    assert!(out(&o).ends_with("missing-library\n"));
    // An unknown app is named.
    let o = exos(&["run", "-r", s(&fx.root), "no-app"]);
    assert!(
        text(&o.stderr).contains("no active package no-app"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn each_user_sees_their_own_layer_dropped_in_by_themselves() {
    if !fuse_available() {
        return;
    }
    let fx = Fixture::new();
    // nobody's own layer: a directory root makes once, nobody fills.
    let mine = fx.root.join("users/nobody/packages");
    fs::create_dir_all(&mine).unwrap();
    fs::set_permissions(fx.root.join("users"), fs::Permissions::from_mode(0o755)).unwrap();
    let chown = |p: &Path| {
        rustix::fs::chown(
            p,
            Some(rustix::fs::Uid::from_raw(65534)),
            Some(rustix::fs::Gid::from_raw(65534)),
        )
        .unwrap();
    };
    chown(&fx.root.join("users/nobody"));
    chown(&mine);
    // A package whose one file is setuid: never served so from a user's layer.
    let src = fx.tmp.path().join("src-nobodys");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(
        src.join("manifest.json"),
        complete(r#"{"name": "nobodys", "version": "1"}"#),
    )
    .unwrap();
    fs::write(src.join("bin/nobodys"), "#!/bin/sh\necho nobody tool\n").unwrap();
    fs::set_permissions(src.join("bin/nobodys"), fs::Permissions::from_mode(0o4755)).unwrap();
    let built = fx.tmp.path().join("nobodys-1.hpkg");
    ok(&["build", "-q", s(&src), "-o", s(&built)]);
    fs::set_permissions(&built, fs::Permissions::from_mode(0o644)).unwrap();
    // nobody drops it in (write under a temporary name, then rename).
    let script = format!(
        "cp {} {}/.new && mv {}/.new {}/nobodys-1.hpkg",
        s(&built),
        s(&mine),
        s(&mine),
        s(&mine)
    );
    let o = as_nobody("sh", &["-c", &script]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let served = fx.mnt.join("users/nobody/bin/nobodys");
    assert!(
        wait_until(|| served.exists()),
        "the user's layer did not appear"
    );
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(&served).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (65534, 0o755));
    // Only in nobody's views: not in the shared layers, not in root's.
    assert!(!fx.mnt.join("merged/bin/nobodys").exists());
    assert!(!fx.mnt.join("user/bin/nobodys").exists());
    let o = fx.run(
        &["--user", "nobody"],
        "ls /user; nobodys; hello; test -e /user/share/userthing || echo no-shared-user-layer",
    );
    assert_eq!(
        out(&o),
        "bin\nnobody tool\nHello from a package!\nno-shared-user-layer\n"
    );
    let o = exos_as_nobody(&["run", "-r", s(&fx.root), "--", "sh", "-c", "nobodys"]);
    assert_eq!(out(&o), "nobody tool\n");
    let o = fx.run(
        &[],
        "nobodys 2>/dev/null || echo not-for-root; cat /user/share/userthing",
    );
    assert_eq!(out(&o), "not-for-root\nmine\n");
    let o = fx.run(
        &["--user", "daemon"],
        "nobodys 2>/dev/null || echo not-for-daemon",
    );
    assert_eq!(out(&o), "not-for-daemon\n");
    let status = ok(&["status", s(&fx.mnt)]);
    assert!(
        status.contains("user nobody: 1 active\n  nobodys 1"),
        "{status}"
    );
    // Removing the file removes it from the view.
    fs::remove_file(mine.join("nobodys-1.hpkg")).unwrap();
    assert!(wait_until(|| !served.exists()));
    // A layer someone else controls is never activated: nobody cannot fill
    // daemon's layer.
    let theirs = fx.root.join("users/daemon/packages");
    fs::create_dir_all(&theirs).unwrap();
    chown(&theirs);
    fs::copy(&built, theirs.join("planted.hpkg")).unwrap();
    assert!(wait_until(
        || ok(&["status", s(&fx.mnt)]).contains("daemon's layer is not activated")
    ));
    assert!(!fx.mnt.join("users/daemon").exists());
    let o = fx.run(
        &["--user", "daemon"],
        "nobodys 2>/dev/null || echo not-planted",
    );
    assert_eq!(out(&o), "not-planted\n");
}
