//! Per-user installs (`--user`), run as the real user `nobody`: their own
//! layer and numbered states, resolved against the root's shared layers,
//! without root — and beside root's own changes at the same time.

mod support;
use support::*;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

const NOBODY: u32 = 65534;

struct World {
    _tmp: tempfile::TempDir,
    w: PathBuf,
    root: PathBuf,
    pkgs: PathBuf,
}

/// A root with `lib` (provides `libapi`) in its system layer and a layer
/// for nobody; `app` (needs `libapi`) and `tool` in a directory nobody
/// can read.
fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().to_path_buf();
    fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
    let pkgs = w.join("pkgs");
    package(
        &w,
        &pkgs,
        r#"{"name":"lib","version":"1.0","provides":[{"api":"libapi","version":"1.0"}]}"#,
        "lib\n",
    );
    package(
        &w,
        &pkgs,
        r#"{"name":"app","version":"2.0","requires":["libapi>=1.0"]}"#,
        "app\n",
    );
    package(&w, &pkgs, r#"{"name":"tool","version":"1.0"}"#, "tool\n");
    let root = w.join("root");
    ok(&["init", "-q", s(&root)]);
    ok(&[
        "install",
        "-q",
        s(&pkgs.join("lib-1.0.hpkg")),
        "-r",
        s(&root),
    ]);
    let made = ok(&["user", "add", "nobody", "-r", s(&root)]);
    assert!(made.contains("3 made"), "{made}");
    World {
        _tmp: tmp,
        w,
        root,
        pkgs,
    }
}

/// `exos ARGS -r ROOT` as nobody; (success, stdout, stderr).
fn nobody(world: &World, args: &[&str]) -> (bool, String, String) {
    let mut a = args.to_vec();
    a.extend(["-r", s(&world.root)]);
    let o = exos_as_nobody(&a);
    (o.status.success(), text(&o.stdout), text(&o.stderr))
}

fn mine(world: &World) -> PathBuf {
    world.root.join("users/nobody/packages")
}

#[test]
fn a_user_installs_upgrades_and_rolls_back_their_own_layer_without_root() {
    let world = world();
    let pkgs = s(&world.pkgs);
    let root_state = ok(&["state", "show", "-r", s(&world.root)]);
    // The user's own layer and states, theirs; `users/nobody` root's.
    let home = fs::symlink_metadata(world.root.join("users/nobody")).unwrap();
    assert_eq!(home.uid(), 0);
    let state = fs::symlink_metadata(world.root.join("users/nobody/state")).unwrap();
    assert_eq!((state.uid(), state.mode() & 0o777), (NOBODY, 0o700));

    // By name, its dependency met by the shared system layer.
    let (done, out, err) = nobody(&world, &["install", "--user", "app", "-a", pkgs]);
    assert!(done, "{err}");
    assert!(out.contains("State 1: install app"), "{out}");
    let app = mine(&world).join("app-2.0.hpkg");
    assert_eq!(fs::metadata(&app).unwrap().uid(), NOBODY);
    // A file, into the user's layer whatever -l says.
    let tool = world.pkgs.join("tool-1.0.hpkg");
    let (done, _, err) = nobody(&world, &["install", "-q", "--user", s(&tool)]);
    assert!(done, "{err}");
    assert!(mine(&world).join("tool-1.0.hpkg").is_file());
    let (_, listed, _) = nobody(&world, &["list", "--installed", "--user", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "tool"]);
    let (_, history, _) = nobody(&world, &["history", "--user"]);
    assert!(
        history.contains("install app") && history.contains("install tool"),
        "{history}"
    );
    // Their own rollback; root's states never moved.
    let (done, _, err) = nobody(&world, &["rollback", "-q", "--user"]);
    assert!(done, "{err}");
    assert!(!mine(&world).join("tool-1.0.hpkg").exists());
    assert!(app.is_file());
    let (_, states, _) = nobody(&world, &["state", "list", "--user"]);
    assert_eq!(states.lines().count(), 4, "{states}");
    assert_eq!(ok(&["state", "show", "-r", s(&world.root)]), root_state);
    assert_eq!(
        ok(&["state", "list", "-r", s(&world.root)]).lines().count(),
        2
    );

    // The shared layers are root's: a user's change never alters them.
    let (done, _, err) = nobody(&world, &["remove", "--user", "lib"]);
    assert!(!done && err.contains("shared system layer"), "{err}");
    let (done, _, err) = nobody(&world, &["install", "-q", s(&tool)]);
    assert!(
        !done && err.contains("--user changes your own layer"),
        "{err}"
    );
    // Removing what needs a shared package works; the shared one stays.
    let (done, _, err) = nobody(&world, &["remove", "-q", "--user", "app"]);
    assert!(done, "{err}");
    assert!(!app.exists());
    assert_eq!(ok(&["state", "show", "-r", s(&world.root)]), root_state);
    // Upgrades of their own packages, from files they offer.
    let newer = world.w.join("newer");
    package(
        &world.w,
        &newer,
        r#"{"name":"app","version":"2.1","requires":["libapi>=1.0"]}"#,
        "app 2.1\n",
    );
    let (done, _, err) = nobody(&world, &["install", "-q", "--user", "app", "-a", pkgs]);
    assert!(done, "{err}");
    // Their own holds, files and reasons.
    let (_, files, _) = nobody(&world, &["files", "--user", "app"]);
    assert!(files.contains("/share/app"), "{files}");
    let (done, _, err) = nobody(&world, &["hold", "-q", "--user", "app"]);
    assert!(done, "{err}");
    let (_, out, _) = nobody(&world, &["upgrade", "--user", "-a", s(&newer)]);
    assert!(out.contains("Nothing to do"), "{out}");
    assert!(mine(&world).join("app-2.0.hpkg").is_file());
    let (done, _, err) = nobody(&world, &["unhold", "-q", "--user", "app"]);
    assert!(done, "{err}");
    let (_, why, _) = nobody(&world, &["why", "--user", "app"]);
    assert!(why.contains("app"), "{why}");
    let (done, out, err) = nobody(&world, &["upgrade", "--user", "-a", s(&newer)]);
    assert!(done, "{err}");
    assert!(
        out.contains("app 2.0 -> 2.1") || out.contains("2.1"),
        "{out}"
    );
    assert!(mine(&world).join("app-2.1.hpkg").is_file());
    assert_eq!(ok(&["state", "show", "-r", s(&world.root)]), root_state);
    // Lazy installs are the root's.
    let (done, _, err) = nobody(&world, &["install", "--user", "--lazy", "app"]);
    assert!(!done, "{err}");
    ok(&["check", "-q", "-r", s(&world.root)]);
}

#[test]
fn root_and_a_user_change_the_same_root_at_once() {
    let world = world();
    let pkgs = s(&world.pkgs);
    // Root's side: packages of its own, installed and removed in turn.
    let extra: Vec<PathBuf> = (0..4)
        .map(|i| {
            package(
                &world.w,
                &world.w.join("extra"),
                &format!(r#"{{"name":"extra{i}","version":"1.0"}}"#),
                "x\n",
            )
        })
        .collect();
    let rounds = 20;
    std::thread::scope(|scope| {
        let root = scope.spawn(|| {
            for round in 0..rounds {
                let p = &extra[round % extra.len()];
                ok(&["install", "-q", s(p), "-r", s(&world.root)]);
                let name = format!("extra{}", round % extra.len());
                ok(&["remove", "-q", &name, "-r", s(&world.root)]);
            }
        });
        let user = scope.spawn(|| {
            for _ in 0..rounds {
                let (done, _, err) =
                    nobody(&world, &["install", "-q", "--user", "app", "-a", pkgs]);
                assert!(done, "{err}");
                let (done, _, err) = nobody(&world, &["remove", "-q", "--user", "app"]);
                assert!(done, "{err}");
            }
        });
        root.join().unwrap();
        user.join().unwrap();
    });
    // Every change of each is a state of its own, and both are consistent.
    let (_, states, _) = nobody(&world, &["state", "list", "--user"]);
    assert_eq!(states.lines().count(), 1 + 2 * rounds, "{states}");
    assert_eq!(
        ok(&["state", "list", "-r", s(&world.root)]).lines().count(),
        2 + 2 * rounds
    );
    ok(&["check", "-q", "-r", s(&world.root)]);
    assert!(fs::read_dir(mine(&world)).unwrap().next().is_none());
}

#[test]
fn a_mount_serves_what_a_user_installed_in_their_own_view() {
    if !fuse_available() {
        return;
    }
    let world = world();
    let (done, _, err) = nobody(
        &world,
        &["install", "-q", "--user", "app", "-a", s(&world.pkgs)],
    );
    assert!(done, "{err}");
    let mnt = world.w.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    ok(&[
        "mount",
        s(&world.root),
        s(&mnt),
        "--daemon",
        "--pid-file",
        s(&world.w.join("pid")),
        "--no-exec-cache",
    ]);
    let mine = mnt.join("merged-users/nobody/share/app");
    let shared = mnt.join("merged-users/nobody/share/lib");
    let seen = wait_until(|| mine.is_file() && shared.is_file());
    let others = mnt.join("system/share/app").exists();
    ok(&["unmount", s(&mnt)]);
    assert!(seen, "the user's package is not in their view");
    assert!(!others, "a user's package is in the shared layer");
}
