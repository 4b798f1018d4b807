//! The daily loop of a package manager, as a user types it: what is
//! installed and why, its files, which package holds a path, the history,
//! holds, automatic packages and autoremove, "did you mean".

mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};

/// A root with app (requires lib) installed by name from a directory of
/// packages, lib pulled in, and other installed from its file.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    pk: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let pk = work.join("pk");
    package(work, &pk, r#"{"name":"lib","version":"1.0"}"#, "lib");
    package(
        work,
        &pk,
        r#"{"name":"app","version":"1.0","requires":["lib>=1.0"]}"#,
        "app",
    );
    package(work, &pk, r#"{"name":"other","version":"1.0"}"#, "other");
    let newer = work.join("newer");
    package(
        work,
        &newer,
        r#"{"name":"other","version":"2.0"}"#,
        "other 2",
    );
    let root = work.join("root");
    ok(&["init", "-q", s(&root)]);
    ok(&["install", "-q", "app", "-a", s(&pk), "-r", s(&root)]);
    ok(&[
        "install",
        "-q",
        s(&pk.join("other-1.0.hpkg")),
        "-r",
        s(&root),
    ]);
    Fixture {
        _tmp: tmp,
        root,
        pk,
    }
}

impl Fixture {
    /// The root mounted in the background at `mnt` beside it (no exec
    /// cache): (mount point, pid file).
    fn mount(&self) -> (PathBuf, PathBuf) {
        let w = self.root.parent().unwrap();
        let mnt = w.join("mnt");
        fs::create_dir(&mnt).unwrap();
        let pid = w.join("m.pid");
        ok(&[
            "mount",
            s(&self.root),
            s(&mnt),
            "--daemon",
            "--pid-file",
            s(&pid),
            "--no-exec-cache",
        ]);
        (mnt, pid)
    }
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(&all)).unwrap()
}

/// The packages `list --installed --json` shows.
fn listed_json(root: &Path) -> Vec<serde_json::Value> {
    json(&["list", "--installed", "-r", s(root)])["packages"]
        .as_array()
        .unwrap()
        .clone()
}

fn installed(root: &Path) -> Vec<(String, bool, bool)> {
    listed_json(root)
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["automatic"].as_bool().unwrap(),
                p.get("held").is_some(),
            )
        })
        .collect()
}

#[test]
fn what_is_installed_why_and_what_it_holds() {
    let f = fixture();
    let r = s(&f.root);
    assert_eq!(
        installed(&f.root),
        [
            ("app".to_string(), false, false),
            ("lib".to_string(), true, false),
            ("other".to_string(), false, false)
        ]
    );
    let text = ok(&["list", "--installed", "-r", r]);
    assert!(
        text.contains("lib 1.0  [local, ") && text.contains("automatic]"),
        "{text}"
    );
    // why: lib was pulled in by app's requirement.
    let why = json(&["why", "lib", "-r", r]);
    assert_eq!(why["installed"], "automatic");
    assert_eq!(why["required_by"][0]["package"], "app");
    assert_eq!(why["required_by"][0]["requirement"], "lib >=1.0");
    // info of an installed package by name.
    let info = json(&["info", "lib", "-r", r]);
    assert_eq!(info["kind"], "installed");
    assert_eq!(info["layer"], "system");
    assert_eq!(info["required_by"][0]["package"], "app");
    // files, like dpkg -L: metadata under .packages/NAME/.
    let files = ok(&["files", "app", "-r", r]);
    assert!(files.lines().any(|l| l == "/share/app"), "{files}");
    assert!(
        files.lines().any(|l| l == "/.packages/app/manifest.json"),
        "{files}"
    );
    // owner, like dpkg -S.
    let owner = json(&["owner", "/share/lib", "-r", r]);
    assert_eq!(owner["owners"][0]["package"], "lib");
    let o = exos(&["owner", "/share/nothing", "-r", r]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text_of(&o).contains("no installed package holds it"));
    // history names each state's change and files.
    let h = json(&["history", "-r", r]);
    let last = h.as_array().unwrap().last().unwrap();
    assert_eq!(last["current"], true);
    assert!(last["change"]
        .as_str()
        .unwrap()
        .starts_with("install other"));
    assert_eq!(last["added"][0], "system/other-1.0.hpkg");
}

fn text_of(o: &std::process::Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

#[test]
fn a_misspelled_name_gets_a_suggestion_and_never_force() {
    let f = fixture();
    let r = s(&f.root);
    for args in [
        vec!["info", "aap", "-r", r],
        vec!["why", "aap", "-r", r],
        vec!["files", "aap", "-r", r],
    ] {
        let o = exos(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let t = text_of(&o);
        assert!(
            t.contains("no package named aap; did you mean app?"),
            "{args:?}: {t}"
        );
    }
    let pk = s(&f.pk);
    for args in [
        vec!["install", "aap", "-a", pk, "-r", r],
        vec!["remove", "aap", "-r", r],
    ] {
        let o = exos(&args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        let t = text_of(&o);
        assert!(t.contains("did you mean app?"), "{args:?}: {t}");
        assert!(!t.contains("--force"), "{args:?}: {t}");
    }
}

#[test]
fn autoremove_removes_what_only_removed_packages_needed_after_asking() {
    let f = fixture();
    let r = s(&f.root);
    let out = ok(&["remove", "app", "-r", r]);
    assert!(
        out.contains("No longer needed (installed as dependencies): lib"),
        "{out}"
    );
    // Without a terminal and without --yes, autoremove asks and so
    // refuses, as a removal of what was not named does.
    let o = exos(&["autoremove", "-r", r]);
    assert_eq!(o.status.code(), Some(1), "{}", text_of(&o));
    assert!(text_of(&o).contains("--yes"), "{}", text_of(&o));
    let plan = json(&["autoremove", "--dry-run", "-r", r]);
    assert_eq!(
        plan["plan"]["resolution"]["changes"][0]["reason"],
        "no longer needed"
    );
    ok(&["autoremove", "-y", "-r", r]);
    assert_eq!(installed(&f.root), [("other".to_string(), false, false)]);
    // Installing an automatic package by name makes it manual.
    ok(&["install", "-q", "app", "-a", s(&f.pk), "-r", r]);
    ok(&["install", "-q", "lib", "-a", s(&f.pk), "-r", r]);
    assert!(installed(&f.root).contains(&("lib".to_string(), false, false)));
}

#[test]
fn a_held_package_is_neither_upgraded_nor_removed_and_the_hold_survives_rollback() {
    let f = fixture();
    let r = s(&f.root);
    let newer = f.pk.parent().unwrap().join("newer");
    ok(&["hold", "other", "-r", r]);
    assert!(installed(&f.root).contains(&("other".to_string(), false, true)));
    let plan = json(&["upgrade", "-a", s(&newer), "-r", r]);
    assert!(
        plan["plan"]["notes"][0]
            .as_str()
            .unwrap()
            .contains("other is held"),
        "{plan}"
    );
    assert!(plan["state"].is_null(), "{plan}");
    let o = exos(&["remove", "other", "-r", r]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text_of(&o).contains("`exos unhold other` first"),
        "{}",
        text_of(&o)
    );
    // A rollback does not lift it.
    ok(&["rollback", "-q", "-r", r]);
    ok(&["rollback", "-q", "2", "-r", r]);
    assert_eq!(json(&["hold", "-r", r])["holds"]["other"], "");
    // A hold with a range lets upgrades within it through.
    ok(&["hold", "other<3", "-r", r]);
    ok(&["upgrade", "-q", "-a", s(&newer), "-r", r]);
    let info = json(&["info", "other", "-r", r]);
    assert_eq!(info["version"], "2.0");
    assert_eq!(info["held"], "<3");
    ok(&["unhold", "other", "-r", r]);
    ok(&["remove", "-q", "other", "-r", r]);
    let o = exos(&["unhold", "other", "-r", r]);
    assert!(text_of(&o).contains("not held"));
}

#[test]
fn a_missing_root_says_how_to_give_one() {
    let o = exos_env(&["list", "--installed"], &[]);
    let t = text_of(&o);
    if std::env::var_os("EXOS_ROOT").is_none() {
        assert!(t.contains("give -r ROOT or set $EXOS_ROOT"), "{t}");
    }
}

#[test]
fn the_owner_of_a_mounted_file_is_read_from_the_mount() {
    if !fuse_available() {
        return;
    }
    let f = fixture();
    let mnt = f.root.parent().unwrap().join("mnt");
    fs::create_dir(&mnt).unwrap();
    for xattrs in [false, true] {
        let pid = f.root.parent().unwrap().join("m.pid");
        let mut args = vec![
            "mount",
            s(&f.root),
            s(&mnt),
            "--daemon",
            "--pid-file",
            s(&pid),
        ];
        if xattrs {
            args.push("--xattrs");
        }
        ok(&args);
        // `exos status -r ROOT` finds where the root is mounted.
        let by_root = json(&["status", "-r", s(&f.root)]);
        let by_mountpoint = json(&["status", s(&mnt)]);
        assert_eq!(by_root["active"], by_mountpoint["active"], "{by_root}");
        let file = mnt.join("merged/share/lib");
        let said = json(&["owner", s(&file)]);
        assert_eq!(
            said["owners"][0]["package"], "lib",
            "xattrs {xattrs}: {said}"
        );
        assert_eq!(said["owners"][0]["path"], "/share/lib");
        if xattrs {
            // Tools ask the file system directly (getfattr is in attr,
            // which scripts/setup.sh installs).
            let v = std::process::Command::new("getfattr")
                .args(["--only-values", "-n", "user.exos.package", s(&file)])
                .output()
                .expect("getfattr runs");
            assert!(v.status.success(), "{}", text(&v.stderr));
            assert_eq!(text(&v.stdout), "lib 1.0 system /share/lib");
        }
        ok(&["unmount", s(&mnt)]);
        assert!(wait_until(|| !pid.exists()));
    }
}

#[test]
fn mistakes_are_answered_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let said = |args: &[&str]| {
        let o = exos(args);
        assert!(!o.status.success(), "exos {args:?} succeeded");
        text(&o.stderr)
    };
    let missing = w.join("nonexist");
    let e = said(&["build", s(&missing)]);
    assert!(
        e.contains("no such directory") && !e.contains("manifest.json: missing"),
        "{e}"
    );
    let e = said(&["key", "generate", "k", "-d", s(&w.join("missing/"))]);
    assert!(e.contains("no such directory (make it first"), "{e}");
    ok(&["key", "generate", "-q", "k", "-d", s(w)]);
    let root = w.join("root");
    ok(&["init", "-q", s(&root)]);
    let e = said(&[
        "repo",
        "add",
        "main",
        "example.com/repo",
        "-k",
        s(&w.join("k.pub")),
        "-r",
        s(&root),
    ]);
    assert!(
        e.contains("not a directory, nor a URL") && e.contains("https://"),
        "{e}"
    );
    let e = said(&[
        "repo",
        "add",
        "main",
        s(w),
        "-k",
        s(&w.join("k.key")),
        "-r",
        s(&root),
    ]);
    assert!(e.contains("a secret key") && e.contains(".pub"), "{e}");
    let e = said(&[
        "repo",
        "add",
        "main",
        s(w),
        "-k",
        s(&w.join("nope.pub")),
        "-r",
        s(&root),
    ]);
    assert!(e.contains("no such file"), "{e}");
    let e = said(&["install", s(&w.join("x.deb")), "-r", s(&root)]);
    assert!(e.contains("exos import-deb"), "{e}");
    let e = said(&[
        "import-deb",
        s(&w.join("nosuch.deb")),
        "-o",
        s(&w.join("out")),
    ]);
    assert_eq!(e.matches("nosuch.deb").count(), 1, "said once: {e}");
    let e = said(&["status"]);
    if std::env::var_os("EXOS_ROOT").is_none() {
        assert!(e.contains("$EXOS_ROOT"), "{e}");
    }
}

#[test]
fn a_mount_whose_daemon_died_says_how_to_clean_up() {
    if !fuse_available() {
        return;
    }
    let f = fixture();
    let (mnt, pid) = f.mount();
    let daemon = fs::read_to_string(&pid).unwrap().trim().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &daemon])
        .status()
        .unwrap();
    assert!(killed.success());
    // statfs reaches the daemon every time (a stat of the mount point may
    // be answered from the kernel's attribute cache for a minute).
    assert!(wait_until(|| rustix::fs::statfs(&mnt).is_err()));
    for args in [
        vec![
            "mount",
            s(&f.root),
            s(&mnt),
            "--daemon",
            "--pid-file",
            s(&pid),
        ],
        vec!["status", s(&mnt)],
        vec!["run", "-r", s(&f.root), "-m", s(&mnt), "--", "true"],
    ] {
        let o = exos(&args);
        let e = text(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            e.contains("a mount whose daemon is gone") && e.contains("exos unmount"),
            "{args:?}: {e}"
        );
    }
    ok(&["unmount", s(&mnt)]);
    assert!(mnt.is_dir() && !mounted(&mnt));
}

#[test]
fn bytes_copied_count_only_what_is_copied() {
    let f = fixture();
    let work = f.root.parent().unwrap();
    // A second app needing lib, offered beside lib again: lib is installed
    // already, so only the new app is copied.
    let more = package(
        work,
        &f.pk,
        r#"{"name":"app2","version":"1.0","requires":["lib>=1.0"]}"#,
        "app2",
    );
    let size = fs::metadata(&more).unwrap().len();
    let done = json(&["install", "app2", "-a", s(&f.pk), "-r", s(&f.root)]);
    assert_eq!(done["plan"]["bytes_copied"], size, "{done}");
}

#[test]
fn refused_packages_and_failed_background_mounts_are_explained() {
    if !fuse_available() {
        return;
    }
    let f = fixture();
    let w = f.root.parent().unwrap();
    // A package whose system API nobody provides: installed (the host
    // said it had the API), refused by the mount.
    let gpu = package(
        w,
        &w.join("gpu"),
        r#"{"name":"gpuapp","version":"1","uses":["system.gpu >=1"]}"#,
        "gpu",
    );
    ok(&[
        "install",
        "-q",
        s(&gpu),
        "--host-api",
        "system.gpu=1",
        "-r",
        s(&f.root),
    ]);
    let mnt = w.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let pid = w.join("m.pid");
    let mount = |extra: &[&str]| {
        let mut a = vec![
            "mount",
            s(&f.root),
            s(&mnt),
            "--daemon",
            "--pid-file",
            s(&pid),
            "--no-exec-cache",
        ];
        a.extend_from_slice(extra);
        exos(&a)
    };
    let o = mount(&[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let said = text(&o.stderr);
    assert!(
        said.contains("refused") && said.contains("gpuapp") && said.contains("system.gpu"),
        "{said}"
    );
    let o = exos(&["run", "-r", s(&f.root), "--", "gpuapp"]);
    let said = text(&o.stderr);
    ok(&["unmount", s(&mnt)]);
    assert_eq!(o.status.code(), Some(127), "{said}");
    assert!(
        said.contains("holds share/gpuapp but the mount refused it: uses system API system.gpu"),
        "{said}"
    );

    // A daemon that fails at start: its own words, not "see its log".
    let o = mount(&["--state", "99"]);
    let said = text(&o.stderr);
    assert!(!o.status.success());
    assert!(said.contains("no state 99"), "{said}");
    // /dev/fuse that is not the device (in a mount namespace of this
    // test's own): named, with its mode.
    let fake = w.join("fake-fuse");
    fs::write(&fake, "").unwrap();
    let script = format!(
        "mount --bind {} /dev/fuse && exec {} mount {} {} --daemon --pid-file {}",
        s(&fake),
        env!("CARGO_BIN_EXE_exos"),
        s(&f.root),
        s(&mnt),
        s(&pid)
    );
    let o = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let said = text(&o.stderr);
    assert!(!o.status.success(), "{said}");
    assert!(
        said.contains("/dev/fuse is not a character device, mode"),
        "{said}"
    );
    assert!(!mounted(&mnt));
}

#[test]
fn help_lists_what_a_command_uses() {
    let remove = ok(&["remove", "--help"]);
    for unused in ["--key", "--age-identity", "--lazy", "--refresh", "--from"] {
        assert!(!remove.contains(unused), "remove --help shows {unused}");
    }
    let install = ok(&["install", "--help"]);
    assert!(install.contains("--key") && install.contains("--user"));
    assert!(
        install.contains("16 KiB") && !install.contains("64 KiB"),
        "{install}"
    );
}

#[test]
fn shells_complete_package_names() {
    let f = fixture();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_exos"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = f.root.parent().unwrap();
    let script = |shell: &str| {
        let p = dir.join(format!("exos.{shell}"));
        fs::write(&p, ok(&["completions", shell])).unwrap();
        p
    };
    let run = |program: &str, args: &[&str]| {
        let o = std::process::Command::new(program)
            .args(args)
            .env("PATH", &path)
            .env_remove("EXOS_ROOT")
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup.sh installs it)"));
        assert!(o.status.success(), "{program}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    // bash: installed names for remove, options still from clap's script.
    let bash = script("bash");
    let said = run(
        "bash",
        &[
            "-c",
            &format!(
                ". {}; COMP_WORDS=(exos remove -r {} ''); COMP_CWORD=4; _exos_names exos '' {}; printf '%s\\n' \"${{COMPREPLY[@]}}\"; \
                 COMP_WORDS=(exos remove --dry); COMP_CWORD=2; COMP_LINE='exos remove --dry'; COMP_POINT=17; _exos_names exos --dry remove; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                s(&bash),
                s(&f.root),
                s(&f.root)
            ),
        ],
    );
    assert_eq!(said, "app\nlib\nother\n--dry-run\n");
    // fish: the same, read by fish's own completion machinery.
    let fish = script("fish");
    let said = run(
        "fish",
        &[
            "-c",
            &format!(
                "source {}; complete -C 'exos info -r {} '",
                s(&fish),
                s(&f.root)
            ),
        ],
    );
    assert_eq!(said, "app\nlib\nother\n");
    // zsh: the script parses, registers itself, and its wrapper, run by
    // zsh with the completion system's builtins captured, offers installed
    // names for remove and leaves options to clap's `_exos`.
    let zsh = script("zsh");
    run("zsh", &["-n", s(&zsh)]);
    assert!(fs::read_to_string(&zsh)
        .unwrap()
        .contains("compdef _exos_names exos"));
    let driver = dir.join("drive.zsh");
    fs::write(
        &driver,
        r#"compdef() { print -r -- "compdef $*" }
source $1
_exos() { print -r -- "clap:${words[CURRENT]}" }
compadd() { [[ $1 == -a ]] && print -rl -- ${(P)2} }
words=(exos remove -r $2 '') CURRENT=5 _exos_names
words=(exos remove --dry) CURRENT=3 _exos_names
words=(exos install -r $2 '') CURRENT=5 _exos_names
"#,
    )
    .unwrap();
    let said = run("zsh", &["-f", s(&driver), s(&zsh), s(&f.root)]);
    assert_eq!(
        said, "compdef _exos_names exos\napp\nlib\nother\nclap:--dry\napp\nlib\nother\n",
        "installed names for remove, options from clap's completion, available names for install"
    );
}

#[test]
fn exos_shell_starts_the_callers_shell() {
    if !fuse_available() {
        return;
    }
    let f = fixture();
    let (mnt, _) = f.mount();
    // $SHELL (here env(1), which shows it ran in the view), not the
    // account's login shell.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(["shell", "-r", s(&f.root)])
        .env("SHELL", "/usr/bin/env")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    ok(&["unmount", s(&mnt)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("EXOS_VIEW=user"),
        "{}",
        text(&o.stdout)
    );
}

/// `list --installed --json` with each package's version and size.
fn listed(root: &Path) -> Vec<(String, String, u64)> {
    listed_json(root)
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_installed_package_index_only_spares_reading_packages() {
    let f = fixture();
    let index = f.root.join("system/state/installed.index");
    let lines = |path: &Path| -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    // Every installed package is in it, by its SHA-256, readable by all.
    let text = lines(&index);
    assert_eq!(text[0], "exos-installed-index 1");
    assert_eq!(text.len(), 4, "{text:?}");
    let state = fs::read_to_string(f.root.join("system/state/active.list")).unwrap();
    for l in &text[1..] {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(
            state.contains(v["sha256"].as_str().unwrap()),
            "{l}\n{state}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&index).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let truth = listed(&f.root);
    assert_eq!(truth.len(), 3);
    assert!(truth.iter().all(|(_, _, size)| *size > 0), "{truth:?}");
    // Missing, broken or lacking a package: the same answers, read from
    // the packages.
    fs::remove_file(&index).unwrap();
    assert_eq!(listed(&f.root), truth);
    fs::write(&index, "exos-installed-index 1\n{\"sha256\": 1}\n").unwrap();
    assert_eq!(listed(&f.root), truth);
    let partial = format!("{}\n{}\n", text[0], text[1]);
    fs::write(&index, &partial).unwrap();
    assert_eq!(listed(&f.root), truth);
    // The next change writes it whole again, for the new state.
    ok(&["remove", "-q", "-y", "other", "-r", s(&f.root)]);
    let after = lines(&index);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        after.iter().all(|l| !l.contains("\"name\":\"other\"")),
        "{after:?}"
    );
    let now = listed(&f.root);
    assert_eq!(now, truth[..2]);
}
