//! Attacks by an ordinary user on root's mount, each input made here by
//! code and each attack carried out as the real user `nobody`: a sealed
//! system package copied into the user's own layer (the mount's key must
//! not decrypt it there), symbolic and hard links in a user's layer to a
//! package only root may read, a layer directory swapped for a link, and
//! the same for a shared layer others can write. Real FUSE mounts (fail
//! instead of skipping with CI=true and no /dev/fuse).

mod support;
use support::*;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const NOBODY: u32 = 65534;

fn chown(p: &Path, uid: u32) {
    rustix::fs::chown(
        p,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(uid)),
    )
    .unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A package holding `share/NAME/secret` with `content`, mode 0600 (only
/// its owner in the view may read it), built into `dir`.
fn secret_package(work: &Path, dir: &Path, name: &str, content: &str) -> PathBuf {
    let src = work.join(format!("src-{name}"));
    fs::create_dir_all(src.join("share").join(name)).unwrap();
    fs::write(
        src.join("manifest.json"),
        complete(&format!(r#"{{"name":"{name}","version":"1"}}"#)),
    )
    .unwrap();
    let file = src.join("share").join(name).join("secret");
    fs::write(&file, content).unwrap();
    chmod(&file, 0o600);
    fs::create_dir_all(dir).unwrap();
    let out = dir.join(format!("{name}-1.hpkg"));
    ok(&["build", "-q", s(&src), "-o", s(&out)]);
    out
}

struct World {
    _tmp: tempfile::TempDir,
    w: PathBuf,
    root: PathBuf,
    mnt: PathBuf,
    pid: PathBuf,
}

impl World {
    /// A root (world-traversable, so `nobody` can reach it) with an empty
    /// layer of nobody's own at users/nobody/packages.
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let w = tmp.path().to_path_buf();
        chmod(&w, 0o755);
        let root = w.join("root");
        ok(&["init", "-q", s(&root)]);
        let mine = root.join("users/nobody/packages");
        fs::create_dir_all(&mine).unwrap();
        chmod(&root.join("users"), 0o755);
        chown(&root.join("users/nobody"), NOBODY);
        chown(&mine, NOBODY);
        let mnt = w.join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        let pid = w.join("pid");
        World {
            _tmp: tmp,
            w,
            root,
            mnt,
            pid,
        }
    }

    fn mine(&self) -> PathBuf {
        self.root.join("users/nobody/packages")
    }

    fn mount(&self, extra: &[&str]) {
        let mut a = vec![
            "mount",
            s(&self.root),
            s(&self.mnt),
            "--daemon",
            "--pid-file",
            s(&self.pid),
            "--no-exec-cache",
        ];
        a.extend_from_slice(extra);
        ok(&a);
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&ok(&["status", "--json", s(&self.mnt)])).unwrap()
    }

    /// The reason the mount gives for refusing the file whose path ends
    /// with `file`.
    fn refused(&self, file: &str) -> Option<String> {
        let st = self.status();
        st["refused"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["file"].as_str().is_some_and(|p| p.ends_with(file)))
            .map(|r| r["reason"].as_str().unwrap().to_string())
    }

    /// Runs `sh -c SCRIPT` as nobody; its standard output.
    fn as_nobody(&self, script: &str) -> (bool, String, String) {
        let o = as_nobody("sh", &["-c", script]);
        (o.status.success(), text(&o.stdout), text(&o.stderr))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if mounted(&self.mnt) {
            let _ = exos(&["unmount", s(&self.mnt)]);
        }
    }
}

/// A key given to a mount decrypts the system layer's sealed package for
/// those who may read its files — never a copy of the same ciphertext that
/// a user dropped into their own layer, nor a package of a shared layer
/// anyone but root can add files to, nor one of a layer the key was not
/// given for.
#[test]
fn a_mounts_key_never_decrypts_a_copy_in_a_layer_others_can_write() {
    if !fuse_available() {
        return;
    }
    let world = World::new();
    let w = &world.w;
    let plain = secret_package(w, &w.join("plain"), "vault", "TOP SECRET\n");
    ok(&["key", "generate", "k", "--encryption", "-d", s(w), "-q"]);
    let key = w.join("k.pkey");
    let sealed = w.join("vault-1.hpkg");
    ok(&[
        "encrypt",
        "-q",
        s(&plain),
        "-o",
        s(&sealed),
        "--key",
        s(&key),
    ]);
    ok(&[
        "install",
        "-q",
        "-r",
        s(&world.root),
        s(&sealed),
        "--key",
        s(&key),
    ]);
    let installed = world.root.join("system/packages/vault-1.hpkg");
    // The sealed file is readable by everybody: it holds only ciphertext.
    chmod(&installed, 0o644);
    // nobody copies it into their own layer.
    let (copied, _, err) = world.as_nobody(&format!(
        "cp {} {}/vault-copy.hpkg",
        s(&installed),
        s(&world.mine())
    ));
    assert!(copied, "{err}");
    world.mount(&["--key", s(&key)]);
    // Root reads the system package's file; nobody may not.
    let system_secret = world.mnt.join("system/share/vault/secret");
    assert_eq!(fs::read_to_string(&system_secret).unwrap(), "TOP SECRET\n");
    let (read, out, _) = world.as_nobody(&format!("cat {}", s(&system_secret)));
    assert!(
        !read && out.is_empty(),
        "nobody read a 0600 system file: {out}"
    );
    // The copy is refused, saying why; nothing of it is served.
    let why = world
        .refused("vault-copy.hpkg")
        .expect("the copy is refused");
    assert!(
        why.contains("never decrypts a package of a user's own layer"),
        "{why}"
    );
    let copy_secret = world.mnt.join("users/nobody/share/vault/secret");
    assert!(!copy_secret.exists());
    let (read, out, _) = world.as_nobody(&format!(
        "cat {} {}/merged-users/nobody/share/vault/secret 2>/dev/null; find {} -name secret -exec cat {{}} +",
        s(&copy_secret),
        s(&world.mnt),
        s(&world.mnt)
    ));
    assert!(
        !out.contains("TOP SECRET"),
        "nobody read the plaintext through their own layer (success {read}): {out}"
    );
    let status = ok(&["status", s(&world.mnt)]);
    assert!(status.contains("vault-copy.hpkg"), "{status}");
    ok(&["unmount", s(&world.mnt)]);

    // A common layer whose packages directory nobody may write: nobody
    // plants the ciphertext there; the key is withheld. (Without a state
    // list, as a root made by hand mounts: with one, a planted file is
    // refused before anything else, not being part of the state.)
    fs::remove_file(world.mine().join("vault-copy.hpkg")).unwrap();
    fs::remove_file(world.root.join("system/state/active.list")).unwrap();
    let common = world.root.join("common/packages");
    chown(&common, NOBODY);
    let (copied, _, err) = world.as_nobody(&format!(
        "cp {} {}/vault-common.hpkg",
        s(&installed),
        s(&common)
    ));
    assert!(copied, "{err}");
    world.mount(&["--key", s(&key)]);
    let why = world
        .refused("vault-common.hpkg")
        .expect("refused in common");
    assert!(why.contains("can be changed by uid 65534"), "{why}");
    assert!(!world.mnt.join("common/share/vault/secret").exists());
    assert_eq!(fs::read_to_string(&system_secret).unwrap(), "TOP SECRET\n");
    ok(&["unmount", s(&world.mnt)]);
    chown(&common, 0);
    fs::remove_file(common.join("vault-common.hpkg")).unwrap();

    // The shared user layer (root's) is not a key layer unless asked.
    let user = world.root.join("user/packages");
    fs::copy(&installed, user.join("vault-user.hpkg")).unwrap();
    world.mount(&["--key", s(&key)]);
    let why = world.refused("vault-user.hpkg").expect("refused in user");
    assert!(why.contains("--key-layers"), "{why}");
    let st = world.status();
    assert_eq!(st["security"]["keys"]["count"], 1);
    assert_eq!(
        st["security"]["keys"]["layers"],
        serde_json::json!(["system", "common"])
    );
    ok(&["unmount", s(&world.mnt)]);
    world.mount(&["--key", s(&key), "--key-layers", "system,common,user"]);
    assert!(world.refused("vault-user.hpkg").is_none());
    assert_eq!(
        fs::read_to_string(world.mnt.join("user/share/vault/secret")).unwrap(),
        "TOP SECRET\n"
    );
    ok(&["unmount", s(&world.mnt)]);
}

/// root's daemon opens a user's package files without following links and
/// serves only what that user could read: a symbolic link to a package in
/// a root-only directory, a hard link to a root-only (0600) package, and
/// the user's whole packages directory swapped for a link are refused with
/// the reason in `exos status`; the user's own package and a hard link to
/// a package everybody may read are served.
#[test]
fn a_users_layer_serves_only_what_its_owner_could_read() {
    if !fuse_available() {
        return;
    }
    let world = World::new();
    let w = &world.w;
    // Root's private packages: a 0700 directory, a 0600 file.
    let private = w.join("private");
    let hidden = secret_package(w, &private, "rootonly", "ROOT ONLY\n");
    chmod(&private, 0o700);
    chmod(&hidden, 0o600);
    // A package anybody may read, in a place anybody may reach.
    let public = secret_package(w, &w.join("public"), "public", "public\n");
    chmod(&public, 0o644);
    // nobody's own package, made by nobody.
    let own = secret_package(w, &w.join("own"), "own", "mine\n");
    chmod(&own, 0o644);
    let mine = world.mine();
    let (done, _, err) = world.as_nobody(&format!(
        "cp {own} {mine}/own.hpkg && ln -s {hidden} {mine}/link.hpkg",
        own = s(&own),
        mine = s(&mine),
        hidden = s(&hidden),
    ));
    assert!(done, "{err}");
    // Hard links: nobody cannot make one to a file they cannot read on a
    // system with protected_hardlinks; one made where that is off (or
    // before a chmod) is simulated by root.
    fs::hard_link(&hidden, mine.join("hard.hpkg")).unwrap();
    fs::hard_link(&public, mine.join("hard-public.hpkg")).unwrap();
    // A package anybody may rewrite (root's, mode 0666): whoever rewrote
    // it would choose what nobody's view serves.
    let open = secret_package(w, &w.join("open"), "open", "anyone's\n");
    fs::copy(&open, mine.join("open.hpkg")).unwrap();
    chmod(&mine.join("open.hpkg"), 0o666);
    world.mount(&[]);
    let why = world
        .refused("open.hpkg")
        .expect("a world-writable package is refused");
    assert!(why.contains("writable by others"), "{why}");
    let why = world
        .refused("link.hpkg")
        .expect("the symbolic link is refused");
    assert!(why.contains("symbolic link"), "{why}");
    // The refusal names the file once: its reason does not repeat it.
    assert!(!why.contains("link.hpkg"), "{why}");
    let why = world
        .refused("hard.hpkg")
        .expect("the hard link is refused");
    assert!(
        why.contains("owned by uid 0 with mode 600") && why.contains("uid 65534"),
        "{why}"
    );
    assert!(world.refused("own.hpkg").is_none());
    assert!(world.refused("hard-public.hpkg").is_none());
    let view = world.mnt.join("users/nobody/share");
    assert!(view.join("own/secret").exists());
    assert!(view.join("public/secret").exists());
    assert!(!view.join("rootonly").exists());
    let (_, out, _) = world.as_nobody(&format!(
        "find {} -name secret -exec cat {{}} + 2>/dev/null",
        s(&world.mnt)
    ));
    assert!(
        !out.contains("ROOT ONLY") && out.contains("mine"),
        "what nobody reads: {out}"
    );
    let status = ok(&["status", s(&world.mnt)]);
    assert!(
        status.contains("link.hpkg") && status.contains("hard.hpkg"),
        "{status}"
    );
    ok(&["unmount", s(&world.mnt)]);

    // The packages directory swapped for a link to root's directory.
    let (done, _, err) = world.as_nobody(&format!(
        "mv {mine} {mine}.old && ln -s {private} {mine}",
        mine = s(&mine),
        private = s(&private),
    ));
    assert!(done, "{err}");
    world.mount(&[]);
    let st = world.status();
    let why = st["refused"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["file"]
                .as_str()
                .unwrap()
                .ends_with("users/nobody/packages")
        })
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .expect("the swapped directory is refused");
    assert!(why.contains("not activated"), "{why}");
    assert!(!world.mnt.join("users/nobody").exists());
    ok(&["unmount", s(&world.mnt)]);
}

/// A shared layer whose packages directory others can write is held to
/// the same rule: a link planted there is never followed, a file only
/// root may read is refused.
#[test]
fn a_shared_layer_others_can_write_serves_only_what_anybody_could_read() {
    if !fuse_available() {
        return;
    }
    let world = World::new();
    let w = &world.w;
    let private = w.join("private");
    let hidden = secret_package(w, &private, "rootonly", "ROOT ONLY\n");
    chmod(&private, 0o700);
    chmod(&hidden, 0o600);
    // No state list: common's files are whatever its directory holds.
    fs::remove_file(world.root.join("system/state/active.list")).unwrap();
    let common = world.root.join("common/packages");
    chmod(&common, 0o1777);
    let (done, _, err) = world.as_nobody(&format!("ln -s {} {}/link.hpkg", s(&hidden), s(&common)));
    assert!(done, "{err}");
    fs::hard_link(&hidden, common.join("hard.hpkg")).unwrap();
    world.mount(&[]);
    let why = world
        .refused("common/packages/link.hpkg")
        .expect("link refused");
    assert!(why.contains("symbolic link"), "{why}");
    let why = world
        .refused("common/packages/hard.hpkg")
        .expect("hard link refused");
    assert!(why.contains("other users can add files"), "{why}");
    assert!(!world.mnt.join("common/share/rootonly").exists());
    ok(&["unmount", s(&world.mnt)]);
}

/// A cache path planted by another user — a symbolic link at its end or on
/// its way, or a directory of theirs — is refused, never followed: nothing
/// it leads to is chmodded or deleted (before, the target was made 0700 and
/// every file in it not named like a cache entry was deleted). An explicit
/// `--exec-cache` is refused with the reason; the default (from
/// `$EXOS_EXEC_CACHE`) is skipped with a warning and the mount goes on; a
/// directory that is not an exos cache is never emptied.
#[test]
fn cache_paths_another_user_planted_are_never_followed_or_emptied() {
    if !fuse_available() {
        return;
    }
    let world = World::new();
    let w = &world.w;
    // The victim: root's directory, with a key file and a file named like
    // an exec cache entry.
    let victim = w.join("victim");
    fs::create_dir(&victim).unwrap();
    chmod(&victim, 0o750);
    fs::write(victim.join("authorized_keys"), "ssh-ed25519 AAAA victim\n").unwrap();
    let entry_like = format!("{}-4", "0".repeat(32));
    fs::write(victim.join(&entry_like), "junk").unwrap();
    let intact = || {
        fs::read_to_string(victim.join("authorized_keys")).is_ok_and(|t| t.contains("victim"))
            && victim.join(&entry_like).exists()
            && fs::metadata(&victim).unwrap().permissions().mode() & 0o7777 == 0o750
            && !victim.join("CACHEDIR.TAG").exists()
    };
    // The attacker: links to the victim in a sticky directory everybody may
    // write (like /tmp), and a directory of nobody's own.
    let sticky = w.join("tmp");
    fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    let attacker = w.join("attacker");
    fs::create_dir(&attacker).unwrap();
    chown(&attacker, NOBODY);
    let (done, _, err) = world.as_nobody(&format!(
        "ln -s {v} {t}/exec && ln -s {v} {t}/blocks && ln -s {v} {a}/exec && mkdir {a}/own && chmod 700 {a}/own",
        v = s(&victim),
        t = s(&sticky),
        a = s(&attacker)
    ));
    assert!(done, "{err}");
    let mount = |extra: &[&str], env: &[(&str, &str)]| {
        let mut a = vec![
            "mount",
            s(&world.root),
            s(&world.mnt),
            "--daemon",
            "--pid-file",
            s(&world.pid),
        ];
        a.extend_from_slice(extra);
        exos_env(&a, env)
    };
    for (dir, rule) in [
        (sticky.join("exec"), "symbolic link"),
        (sticky.join("exec/sub"), "symbolic link"),
        (attacker.join("exec"), "owned by uid 65534"),
        (attacker.join("own"), "owned by uid 65534"),
        (victim.clone(), "not an exos exec cache"),
    ] {
        let o = mount(&["--exec-cache", s(&dir)], &[]);
        assert!(!o.status.success(), "{} was taken", dir.display());
        assert!(
            text(&o.stderr).contains(rule),
            "{}: {}",
            dir.display(),
            text(&o.stderr)
        );
        assert!(!mounted(&world.mnt));
        assert!(intact(), "{}: the victim's files changed", dir.display());
    }
    // The default, from the environment: skipped with a warning.
    let o = mount(&[], &[("EXOS_EXEC_CACHE", s(&sticky.join("exec")))]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no exec cache"),
        "{}",
        text(&o.stderr)
    );
    assert!(world.status()["exec_cache"].is_null());
    ok(&["unmount", s(&world.mnt)]);
    assert!(intact());
    // The block cache: the same rules.
    for dir in [sticky.join("blocks"), attacker.join("exec"), victim.clone()] {
        let o = exos(&["fetch", "-r", s(&world.root), "--block-cache", s(&dir)]);
        assert!(!o.status.success(), "{} was taken", dir.display());
        assert!(intact(), "{}: the victim's files changed", dir.display());
    }
    // nobody without a home has no default block cache (no shared /tmp
    // fallback), and is told so.
    let o = as_nobody(
        "env",
        &[
            "-u",
            "HOME",
            "-u",
            "XDG_CACHE_HOME",
            "-u",
            "EXOS_BLOCK_CACHE",
            env!("CARGO_BIN_EXE_exos"),
            "fetch",
            "-r",
            s(&world.root),
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("EXOS_BLOCK_CACHE"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        !Path::new("/tmp/exos/blocks").exists()
            || fs::metadata("/tmp/exos/blocks").unwrap().uid() != NOBODY
    );
}
