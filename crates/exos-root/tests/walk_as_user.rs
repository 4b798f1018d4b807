//! Directories a real non-root user controls, as root's daemon meets them:
//! the user (`nobody`, through `setpriv`) plants links and files; the walk
//! must not follow a link, must say who can write what it walked, and must
//! refuse a file its planter could not read. A cache directory the user
//! owns is refused to root and left as it was.
//!
//! Needs root (to act as another user); says so and passes otherwise
//! unless `CI=true`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use exos_root::walk::{open_beneath, NotAdmitted, Writers};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips (loudly) without root; fails instead under CI.
fn need_root() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "these tests need root (to act as a real non-root user)"
    );
    eprintln!("SKIPPED: not root, cannot act as another user");
    false
}

/// Runs a shell command as `nobody`.
fn as_nobody(script: &str) {
    let status = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .expect("setpriv runs");
    assert!(status.success(), "as nobody: {script}");
}

/// A directory tree `base/layer` where `layer` belongs to nobody.
fn users_layer(tmp: &Path) -> std::path::PathBuf {
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).unwrap();
    let layer = tmp.join("layer");
    fs::create_dir(&layer).unwrap();
    std::os::unix::fs::chown(&layer, Some(NOBODY), Some(NOBODY)).unwrap();
    layer
}

#[test]
fn a_users_directory_is_walked_without_following_what_they_plant() {
    if !need_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layer = users_layer(tmp.path());
    let secret = tmp.path().join("secret");
    fs::write(&secret, b"root only").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let l = layer.display();
    as_nobody(&format!(
        "echo mine > {l}/own.hpkg && chmod 600 {l}/own.hpkg && ln -s {} {l}/link.hpkg && mkdir {l}/real && ln -s real {l}/sub",
        secret.display()
    ));
    // What root finds there: a directory nobody can change.
    let dir = open_beneath(tmp.path(), &["layer"]).unwrap();
    assert_eq!(dir.writers, Writers::RootAnd(NOBODY));
    assert_eq!(
        dir.names().unwrap(),
        ["link.hpkg", "own.hpkg", "real", "sub"]
    );
    // Their own file, even one only they can read: theirs to show.
    let own = dir.open_file("own.hpkg").unwrap();
    assert_eq!(own.stat.st_uid, NOBODY);
    dir.writers.admits(&own.stat).unwrap();
    // A link to root's secret is not followed.
    let err = dir.open_file("link.hpkg").unwrap_err();
    assert!(err.to_string().contains("a symbolic link"), "{err}");
    // Nor is a link to a directory, by either way of walking.
    assert!(dir.open_dir("sub").is_err());
    let err = open_beneath(tmp.path(), &["layer", "sub"]).unwrap_err();
    assert!(err.to_string().contains("link"), "{err}");
    assert!(open_beneath(tmp.path(), &["layer", "real"]).is_ok());
    // A file of root's that only root may read, found in their directory
    // (what a hard link would plant), is refused, naming why.
    let planted = layer.join("planted.hpkg");
    fs::write(&planted, b"root only").unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o600)).unwrap();
    let opened = dir.open_file("planted.hpkg").unwrap();
    assert_eq!(
        dir.writers.admits(&opened.stat),
        Err(NotAdmitted::Unreadable {
            owner: 0,
            mode: 0o600,
            writers: Writers::RootAnd(NOBODY),
        })
    );
    // A FIFO they made does not block the opener and is not a file.
    as_nobody(&format!("mkfifo {l}/fifo.hpkg"));
    let fifo = dir.open_file("fifo.hpkg").unwrap();
    assert_eq!(
        dir.writers.admits(&fifo.stat),
        Err(NotAdmitted::NotARegularFile)
    );
}

#[test]
fn a_cache_directory_another_user_owns_is_refused_and_left_alone() {
    if !need_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layer = users_layer(tmp.path());
    as_nobody(&format!(
        "mkdir -m 0755 {0}/cache && echo theirs > {0}/cache/file",
        layer.display()
    ));
    let cache = layer.join("cache");
    let before = fs::metadata(&cache).unwrap();
    let err = exos_root::cache_dir::open_cache_dir(&cache, "test", &|_| true).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    let after = fs::metadata(&cache).unwrap();
    assert_eq!(
        (after.uid(), after.mode()),
        (before.uid(), before.mode()),
        "the directory was changed"
    );
    assert_eq!(fs::read(cache.join("file")).unwrap(), b"theirs\n");
    assert!(!cache.join(exos_root::cache_dir::TAG_FILE).exists());
    // A cache path through their directory is refused too: they could
    // swap what follows.
    let err =
        exos_root::cache_dir::open_cache_dir(&layer.join("mine"), "test", &|_| true).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(!layer.join("mine").exists());
}
