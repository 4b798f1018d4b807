//! Encrypted packages from the command line: a package key, `exos encrypt`,
//! `--key` for reading, installing and mounting (a real FUSE mount; fails
//! instead of skipping when CI=true without /dev/fuse), and the errors for
//! a missing or wrong key.

mod support;
use support::*;

use std::fs;
use std::process::Command;

#[test]
fn encrypted_packages_install_and_mount_with_their_key_only() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let src = w.join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(
        src.join("manifest.json"),
        complete(r#"{"name":"secret","version":"1.0"}"#),
    )
    .unwrap();
    fs::write(
        src.join("bin/secret"),
        "#!/bin/sh\necho only with the key\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("bin/secret"), fs::Permissions::from_mode(0o755)).unwrap();
    // A program (ELF) too: the exec cache must never hold a sealed one.
    fs::copy("/usr/bin/true", src.join("bin/sealed-true")).unwrap();
    let plain = w.join("secret.hpkg");
    ok(&["build", "-q", s(&src), "-o", s(&plain)]);

    let said = ok(&["key", "generate", "k", "--encryption", "-d", s(w)]);
    let key = w.join("k.pkey");
    assert!(said.contains("package key "), "{said}");
    let mode = fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let sealed = w.join("secret.enc.hpkg");
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "encrypt",
        "--json",
        s(&plain),
        "-o",
        s(&sealed),
        "--key",
        s(&key),
    ]))
    .unwrap();
    let id = json["key"].as_str().unwrap().to_string();
    assert_eq!(
        json["size"].as_u64().unwrap(),
        fs::metadata(&sealed).unwrap().len()
    );
    let o = exos(&["encrypt", s(&plain), "-o", s(&w.join("x.hpkg"))]);
    assert!(
        text(&o.stderr).contains("exactly one --key"),
        "{}",
        text(&o.stderr)
    );

    // Without the key: the key it needs is named.
    let o = exos(&["list", s(&sealed)]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains(&id) && err.contains("--key"), "{err}");
    // With another key: refused.
    ok(&["key", "generate", "-q", "other", "--encryption", "-d", s(w)]);
    let o = exos(&["list", s(&sealed), "--key", s(&w.join("other.pkey"))]);
    assert!(text(&o.stderr).contains(&id), "{}", text(&o.stderr));
    // With it: the same listing as the plain package.
    let listed = ok(&["list", s(&sealed), "--key", s(&key)]);
    assert_eq!(listed, ok(&["list", s(&plain)]));

    let root = w.join("root");
    ok(&["init", "-q", s(&root)]);
    let o = exos(&["install", "-q", "-r", s(&root), s(&sealed)]);
    assert!(!o.status.success(), "installed without its key");
    ok(&[
        "install",
        "-q",
        "-r",
        s(&root),
        s(&sealed),
        "--key",
        s(&key),
    ]);
    ok(&["check", "-q", "-r", s(&root), "--key", s(&key)]);

    if !fuse_available() {
        return;
    }
    let mnt = w.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let pid = w.join("pid");
    let mount = |extra: &[&str]| {
        let mut a = vec![
            "mount",
            s(&root),
            s(&mnt),
            "--daemon",
            "--pid-file",
            s(&pid),
        ];
        a.extend_from_slice(extra);
        ok(&a);
    };
    // A relative key path works with the daemon (which runs from /).
    let rel = Command::new(env!("CARGO_BIN_EXE_exos"))
        .current_dir(w)
        .args([
            "mount",
            s(&root),
            s(&mnt),
            "--daemon",
            "--pid-file",
            "pid",
            "--key",
            "k.pkey",
        ])
        .output()
        .unwrap();
    assert!(rel.status.success(), "{}", text(&rel.stderr));
    let out = Command::new(mnt.join("merged/bin/secret"))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "only with the key\n");
    ok(&["unmount", s(&mnt)]);
    // With an exec cache: a plain package's program is kept there, the
    // sealed package's never (the cache holds plain files).
    let psrc = w.join("psrc");
    fs::create_dir_all(psrc.join("bin")).unwrap();
    fs::write(
        psrc.join("manifest.json"),
        complete(r#"{"name":"plainbin","version":"1.0"}"#),
    )
    .unwrap();
    fs::copy("/usr/bin/false", psrc.join("bin/plain-false")).unwrap();
    let pbin = w.join("plainbin.hpkg");
    ok(&["build", "-q", s(&psrc), "-o", s(&pbin)]);
    // Changing the root needs no key: the sealed package's manifest was
    // remembered when it was installed.
    ok(&["install", "-q", "-r", s(&root), s(&pbin)]);
    let cache = w.join("exec-cache");
    fs::create_dir_all(&cache).unwrap();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o700)).unwrap();
    mount(&["--key", s(&key), "--exec-cache", s(&cache)]);
    // Entries are named by content digest: programs started before the
    // mount has its digests are not kept (until a later mount).
    assert!(wait_until(|| {
        let st: serde_json::Value =
            serde_json::from_str(&ok(&["status", "--json", s(&mnt)])).unwrap();
        st["sharing"]["packages_digested"] == st["sharing"]["packages"]
    }));
    let cached = |program: &str| {
        let want = fs::read(program).unwrap();
        walk_files(&cache)
            .iter()
            .any(|f| fs::read(f).is_ok_and(|b| b == want))
    };
    assert!(
        mnt.join("merged/bin/sealed-true").exists(),
        "{}",
        ok(&["status", s(&mnt)])
    );
    for _ in 0..3 {
        let _ = Command::new(mnt.join("merged/bin/plain-false")).status();
        let _ = Command::new(mnt.join("merged/bin/sealed-true"))
            .status()
            .unwrap();
    }
    assert!(
        wait_until(|| cached("/usr/bin/false")),
        "the plain program never reached the exec cache"
    );
    assert!(
        !cached("/usr/bin/true"),
        "a sealed package's program was written to the exec cache"
    );
    ok(&["unmount", s(&mnt)]);
    // Without the key: refused with the reason, the mount still up.
    mount(&[]);
    assert!(!mnt.join("merged/bin/secret").exists());
    let status = ok(&["status", s(&mnt)]);
    assert!(
        status.contains("refused: 1") && status.contains(&id),
        "{status}"
    );
    ok(&["unmount", s(&mnt)]);
}

/// A package named `name` whose one file, share/NAME, holds NAME 1000
/// times (support's `package`, built under `w/pkgs`).
fn small_package(w: &std::path::Path, name: &str) -> std::path::PathBuf {
    package(
        w,
        &w.join("pkgs"),
        &format!(r#"{{"name":"{name}","version":"1.0"}}"#),
        &name.repeat(1000),
    )
}

/// `exos encrypt --json PLAIN -o SEALED --key KEY`; the key id it reports.
fn encrypt(plain: &std::path::Path, sealed: &std::path::Path, key: &std::path::Path) -> String {
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "encrypt",
        "--json",
        s(plain),
        "-o",
        s(sealed),
        "--key",
        s(key),
    ]))
    .unwrap();
    json["key"].as_str().unwrap().to_string()
}

#[test]
fn roots_holding_sealed_packages_change_without_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let plain = small_package(w, "vault");
    let other = small_package(w, "other");
    ok(&["key", "generate", "-q", "k", "--encryption", "-d", s(w)]);
    let key = w.join("k.pkey");
    let sealed = w.join("vault.enc.hpkg");
    let id = encrypt(&plain, &sealed, &key);
    let root = w.join("root");
    ok(&["init", "-q", s(&root)]);
    ok(&[
        "install",
        "-q",
        "-r",
        s(&root),
        s(&sealed),
        "--key",
        s(&key),
    ]);
    let manifests = root.join("system/state/manifests");
    let remembered = || -> Vec<std::path::PathBuf> {
        fs::read_dir(&manifests)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    assert_eq!(remembered().len(), 1, "{:?}", remembered());
    // Readable by the root's owner only (the path to it is open to all, so
    // a refusal is the directory's doing).
    use std::os::unix::fs::PermissionsExt;
    for dir in [
        w.to_path_buf(),
        root.clone(),
        root.join("system"),
        root.join("system/state"),
    ] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let state = as_nobody("ls", &[s(&root.join("system/state"))]);
    assert!(state.status.success(), "{}", text(&state.stderr));
    let cat = as_nobody("cat", &[s(&remembered()[0])]);
    assert!(
        !cat.status.success(),
        "nobody read a sealed package's manifest"
    );
    assert!(
        text(&cat.stderr).contains("Permission denied"),
        "{}",
        text(&cat.stderr)
    );

    // Install, list, check and remove, none with the key.
    ok(&["install", "-q", "-r", s(&root), s(&other)]);
    assert_eq!(remembered().len(), 1, "a plain package's manifest was kept");
    let listed = ok(&["state", "show", "-r", s(&root)]);
    assert!(
        listed.contains("vault") && listed.contains("other"),
        "{listed}"
    );
    let checked = ok(&["check", "-r", s(&root)]);
    assert!(
        checked.contains("consistent") && checked.contains("system/vault.enc.hpkg"),
        "{checked}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["check", "--json", "-r", s(&root)])).unwrap();
    assert_eq!(json["sealed_unchecked"][0], "system/vault.enc.hpkg");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["check", "--json", "-r", s(&root), "--key", s(&key)])).unwrap();
    assert_eq!(json["sealed_unchecked"].as_array().unwrap().len(), 0);
    ok(&["remove", "-q", "-r", s(&root), "other"]);

    // A crafted remembered manifest: named with the rule it breaks.
    let file = remembered().pop().unwrap();
    let good = fs::read(&file).unwrap();
    fs::write(&file, br#"{"name": 7}"#).unwrap();
    let o = exos(&["check", "-r", s(&root)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains(file.file_name().unwrap().to_str().unwrap()),
        "{}",
        text(&o.stderr)
    );
    let o = exos(&["install", "-q", "-r", s(&root), s(&other)]);
    assert!(
        !o.status.success() && text(&o.stderr).contains("manifests/"),
        "{}",
        text(&o.stderr)
    );
    fs::write(&file, vec![b' '; 2 << 20]).unwrap();
    let o = exos(&["check", "-r", s(&root)]);
    assert!(
        text(&o.stderr).contains("larger than a manifest may be"),
        "{}",
        text(&o.stderr)
    );
    fs::write(&file, &good).unwrap();

    // A root from before manifests were remembered: the key is asked for.
    fs::remove_file(&file).unwrap();
    let o = exos(&["install", "-q", "-r", s(&root), s(&other)]);
    assert!(
        !o.status.success(),
        "installed without reading the manifest"
    );
    assert!(
        text(&o.stderr).contains(&id) && text(&o.stderr).contains("--key"),
        "{}",
        text(&o.stderr)
    );
    fs::write(&file, &good).unwrap();

    // Removed and collected: the remembered manifest goes with the package.
    ok(&["remove", "-q", "-r", s(&root), "vault"]);
    assert_eq!(
        remembered().len(),
        1,
        "kept while a state names the package"
    );
    ok(&["gc", "-q", "-r", s(&root), "--keep", "1"]);
    assert!(remembered().is_empty(), "{:?}", remembered());
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Runs a program for a test, which must succeed.
fn run(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

#[test]
fn age_wrapped_keys_unwrap_for_every_command_and_the_mount() {
    if Command::new("age").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true and age is missing (scripts/setup.sh installs it)"
        );
        eprintln!("\n!!!!!!!! age is not installed: age-wrapped key test NOT RUN !!!!!!!!\n");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let plain = small_package(w, "wrapped");
    ok(&["key", "generate", "-q", "k", "--encryption", "-d", s(w)]);
    let key = w.join("k.pkey");
    let sealed = w.join("wrapped.enc.hpkg");
    encrypt(&plain, &sealed, &key);
    let id = w.join("id.txt");
    run("age-keygen", &["-o", s(&id)]);
    let recipient = run("age-keygen", &["-y", s(&id)]).trim().to_string();
    let wrapped = w.join("k.pkey.age");
    let armored = w.join("k.pkey.asc");
    run("age", &["-r", &recipient, "-o", s(&wrapped), s(&key)]);
    run("age", &["-a", "-r", &recipient, "-o", s(&armored), s(&key)]);
    // Only the wrapped key from here on.
    fs::remove_file(&key).unwrap();

    for k in [&wrapped, &armored] {
        let info = ok(&["info", s(&sealed), "--key", s(k), "--age-identity", s(&id)]);
        assert!(info.contains("AES-256-GCM"), "{info}");
    }
    // A wrapped key can seal too.
    ok(&[
        "encrypt",
        "-q",
        s(&plain),
        "-o",
        s(&w.join("again.hpkg")),
        "--key",
        s(&wrapped),
        "--age-identity",
        s(&id),
    ]);
    // No identity (and no terminal for a passphrase), the wrong one.
    let o = exos(&["info", s(&sealed), "--key", s(&wrapped)]);
    let err = text(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("age could not unwrap")
            && err.contains("--age-identity"),
        "{err}"
    );
    let other = w.join("other.txt");
    run("age-keygen", &["-o", s(&other)]);
    let o = exos(&[
        "info",
        s(&sealed),
        "--key",
        s(&wrapped),
        "--age-identity",
        s(&other),
    ]);
    let err = text(&o.stderr);
    assert!(
        !o.status.success() && err.contains("k.pkey.age") && err.contains("age could not unwrap"),
        "{err}"
    );
    // Something age-like that is far too large is not handed to age.
    let mut big = b"age-encryption.org/v1\n".to_vec();
    big.resize(100_000, b'x');
    fs::write(w.join("big.age"), &big).unwrap();
    let o = exos(&["info", s(&sealed), "--key", s(&w.join("big.age"))]);
    assert!(
        text(&o.stderr).contains("larger than a wrapped key can be"),
        "{}",
        text(&o.stderr)
    );

    let root = w.join("root");
    ok(&["init", "-q", s(&root)]);
    ok(&[
        "install",
        "-q",
        "-r",
        s(&root),
        s(&sealed),
        "--key",
        s(&wrapped),
        "--age-identity",
        s(&id),
    ]);
    if !fuse_available() {
        return;
    }
    // The daemon gets the key through a pipe: no key path, no identity on
    // its command line, the package served.
    let mnt = w.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let pid = w.join("pid");
    ok(&[
        "mount",
        s(&root),
        s(&mnt),
        "--daemon",
        "--pid-file",
        s(&pid),
        "--key",
        s(&wrapped),
        "--age-identity",
        s(&id),
    ]);
    let served = fs::read_to_string(mnt.join("merged/share/wrapped"));
    let daemon = fs::read_to_string(&pid).unwrap();
    let cmdline = fs::read(format!("/proc/{}/cmdline", daemon.trim())).unwrap_or_default();
    ok(&["unmount", s(&mnt)]);
    assert_eq!(served.unwrap(), "wrapped".repeat(1000));
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("--keys-fd") && !cmdline.contains("k.pkey") && !cmdline.contains("id.txt"),
        "{cmdline}"
    );
}
