//! Signatures and trust end to end: keys, `exos sign`/`verify` (and the
//! real `minisign` both ways), the trust store and per-layer policy
//! enforced by `exos install` and by packagefs at activation (a package
//! copied by hand is refused, with the reason in `exos status`), and that a
//! signed package is byte-for-byte the package Haiku's tools read.

mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sha256(p: &Path) -> String {
    exos_root::Sha256::of_file(p).unwrap().to_string()
}

/// `minisign` from Debian's package: required under CI (`.ci/run`
/// installs it), else the interoperability checks say so and are skipped.
fn minisign_available() -> bool {
    tool_available("/usr/bin/minisign", "the minisign interoperability test")
}

fn two_packages(work: &Path) -> (PathBuf, PathBuf) {
    let d = work.join("pkgs");
    let lib = package(
        work,
        &d,
        r#"{"name":"lib","version":"1.0","provides":[{"api":"libapi","version":"1.0"}]}"#,
        "lib 1.0\n",
    );
    let app = package(
        work,
        &d,
        r#"{"name":"app","version":"2.0","requires":["libapi>=1.0"]}"#,
        "app 2.0\n",
    );
    (lib, app)
}

#[test]
fn signing_leaves_the_package_unchanged_and_verifies_with_minisign_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    // A real Haiku package from the fixtures: signing must not touch it,
    // so what Haiku's `package list` printed for it still holds.
    let fixture = fixtures_dir()
        .join("haikudepotserver-core-test_src_test_resources_tipster-1.1.1-1-x86_64.hpkg");
    let pkg = w.join("tipster.hpkg");
    fs::copy(&fixture, &pkg).unwrap();
    let before = sha256(&pkg);
    let listed_before = ok(&["list", s(&pkg)]);

    let o = ok(&["key", "generate", "rel", "-d", s(w), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&o).unwrap();
    let id = report["id"].as_str().unwrap().to_string();
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(w.join("rel.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the secret key must be private");
    // Never overwritten.
    let o = exos(&["key", "generate", "rel", "-d", s(w)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));

    ok(&["sign", "-q", s(&pkg), "-k", s(&w.join("rel.key"))]);
    assert_eq!(sha256(&pkg), before, "signing changed the package");
    assert_eq!(ok(&["list", s(&pkg)]), listed_before);
    let sig = fs::read_to_string(w.join("tipster.hpkg.minisig")).unwrap();
    assert!(sig.contains("package:tipster-1.1.1-1"), "{sig}");

    let o = ok(&["verify", s(&pkg), "-p", s(&w.join("rel.pub"))]);
    assert!(o.contains(&format!("good signature by key {id}")), "{o}");

    // A changed byte, a changed trusted comment, another key: all BAD, exit 1.
    let copy = w.join("changed.hpkg");
    let mut bytes = fs::read(&pkg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&copy, &bytes).unwrap();
    fs::write(w.join("changed.hpkg.minisig"), &sig).unwrap();
    let o = exos(&["verify", s(&copy), "-p", s(&w.join("rel.pub"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).contains("does not match the file's contents"),
        "{}",
        text(&o.stdout)
    );
    let forged = sig.replace("package:tipster", "package:tipstex");
    fs::write(w.join("tipster.hpkg.minisig"), &forged).unwrap();
    let o = exos(&["verify", "--json", s(&pkg), "-p", s(&w.join("rel.pub"))]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["packages"][0]["good"], false);
    assert!(v["packages"][0]["error"]
        .as_str()
        .unwrap()
        .contains("trusted comment"));
    fs::write(w.join("tipster.hpkg.minisig"), &sig).unwrap();
    ok(&["key", "generate", "other", "-d", s(w), "-q"]);
    let o = exos(&["verify", s(&pkg), "-p", s(&w.join("other.pub"))]);
    assert_eq!(o.status.code(), Some(1));

    if !minisign_available() {
        return;
    }
    // minisign checks what exos signed…
    let o = Command::new("minisign")
        .args(["-Vm", s(&pkg), "-p", s(&w.join("rel.pub"))])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    // …and exos signs with minisign's unencrypted key and checks what
    // minisign signed.
    let o = Command::new("minisign")
        .args([
            "-G",
            "-W",
            "-p",
            s(&w.join("m.pub")),
            "-s",
            s(&w.join("m.key")),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    ok(&["sign", "-q", s(&pkg), "-k", s(&w.join("m.key"))]);
    ok(&["verify", s(&pkg), "-p", s(&w.join("m.pub"))]);
    let o = Command::new("minisign")
        .args([
            "-Sm",
            s(&pkg),
            "-s",
            s(&w.join("m.key")),
            "-t",
            "signed by minisign",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = ok(&["verify", "--json", s(&pkg), "-p", s(&w.join("m.pub"))]);
    assert!(o.contains("signed by minisign"), "{o}");
    // minisign's encrypted keys are refused with the reason.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'pw\\npw\\n' | minisign -G -p {0}/e.pub -s {0}/e.key",
            s(w)
        ))
        .output()
        .unwrap();
    if o.status.success() {
        let o = exos(&["sign", s(&pkg), "-k", s(&w.join("e.key"))]);
        assert_eq!(o.status.code(), Some(3));
        assert!(text(&o.stderr).contains("encrypted"), "{}", text(&o.stderr));
    }
}

#[test]
fn a_layer_that_requires_signatures_refuses_unsigned_packages_at_install_and_at_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let root = w.join("root");
    ok(&["init", s(&root)]);
    let (lib, app) = two_packages(w);
    ok(&["key", "generate", "rel", "-d", s(w), "-q"]);
    ok(&["key", "generate", "stranger", "-d", s(w), "-q"]);
    let key = w.join("rel.key");
    ok(&[
        "trust",
        "add",
        s(&w.join("rel.pub")),
        "-l",
        "system",
        "-r",
        s(&root),
        "-q",
    ]);
    ok(&["trust", "policy", "system", "signed", "-r", s(&root), "-q"]);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["trust", "list", "--json", "-r", s(&root)])).unwrap();
    assert_eq!(listed["policy"]["system"], "signed");
    assert_eq!(listed["policy"]["user"], "any");
    assert_eq!(listed["keys"][0]["layers"], serde_json::json!(["system"]));

    let state = || ok(&["state", "list", "-r", s(&root)]);
    let before = state();
    // Unsigned: refused, nothing changes.
    let o = exos(&["install", "-r", s(&root), s(&lib), s(&app), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "untrusted");
    assert!(v["error"]["message"].as_str().unwrap().contains("unsigned"));
    assert_eq!(state(), before);
    // Signed by a key the root does not trust: refused.
    ok(&[
        "sign",
        "-q",
        s(&lib),
        s(&app),
        "-k",
        s(&w.join("stranger.key")),
    ]);
    let o = exos(&["install", "-r", s(&root), s(&lib), s(&app)]);
    assert!(
        text(&o.stderr).contains("does not trust"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(state(), before);
    // Signed by the trusted key: installed, signatures kept by SHA-256.
    ok(&["sign", "-q", s(&lib), s(&app), "-k", s(&key)]);
    ok(&["install", "-q", "-r", s(&root), s(&lib), s(&app)]);
    for p in [&lib, &app] {
        assert!(root
            .join("system/state/signatures")
            .join(format!("{}.minisig", sha256(p)))
            .is_file());
    }
    // The key is trusted for system only: the user layer takes unsigned
    // packages (its policy is `any`), and a signed layer elsewhere would not
    // take this key.
    ok(&["trust", "policy", "common", "signed", "-r", s(&root), "-q"]);
    let solo = package(
        w,
        &w.join("solo"),
        r#"{"name":"solo","version":"1"}"#,
        "solo\n",
    );
    ok(&["sign", "-q", s(&solo), "-k", s(&key)]);
    let o = exos(&["install", "-r", s(&root), "-l", "common", s(&solo)]);
    assert!(
        text(&o.stderr).contains("not trusted for the common layer"),
        "{}",
        text(&o.stderr)
    );
    fs::remove_file(exos_trust::beside(&solo)).unwrap();
    ok(&["install", "-q", "-r", s(&root), "-l", "user", s(&solo)]);
    // An available directory's unsigned packages are not candidates.
    let lib11 = package(
        w,
        &w.join("newer"),
        r#"{"name":"lib","version":"1.1","provides":[{"api":"libapi","version":"1.1","compatible":"1.0"}]}"#,
        "lib 1.1\n",
    );
    let o = ok(&[
        "upgrade",
        "-r",
        s(&root),
        "-a",
        s(&w.join("newer")),
        "--dry-run",
        "--json",
    ]);
    assert!(
        !o.contains("\"1.1\""),
        "an unsigned upgrade was planned: {o}"
    );
    ok(&["sign", "-q", s(&lib11), "-k", s(&key)]);
    let o = ok(&[
        "upgrade",
        "-r",
        s(&root),
        "-a",
        s(&w.join("newer")),
        "--dry-run",
        "--json",
    ]);
    assert!(o.contains("1.1"), "the signed upgrade was not planned: {o}");

    if !fuse_available() {
        return;
    }
    let mnt = w.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let pid = w.join("pid");
    let mount = |root: &Path| {
        ok(&[
            "mount",
            "-q",
            "--daemon",
            "--pid-file",
            s(&pid),
            s(root),
            s(&mnt),
        ]);
    };
    let status = || -> serde_json::Value {
        serde_json::from_str(&ok(&["status", "--json", s(&mnt)])).unwrap()
    };
    let unmount = || {
        ok(&["unmount", s(&mnt)]);
        assert!(wait_until(|| !pid.exists()));
    };
    mount(&root);
    let st = status();
    let system = st["layers"]["system"].as_array().unwrap();
    assert_eq!(system.len(), 2, "{st}");
    let id = listed["keys"][0]["id"].as_str().unwrap();
    assert!(system.iter().all(|p| p["signed_by"] == id), "{st}");
    assert_eq!(
        fs::read_to_string(mnt.join("system/share/app")).unwrap(),
        "app 2.0\n"
    );
    unmount();
    // A kept signature that goes away: the package is refused at the next
    // activation, with the reason; the rest still mounts.
    fs::remove_file(
        root.join("system/state/signatures")
            .join(format!("{}.minisig", sha256(&app))),
    )
    .unwrap();
    mount(&root);
    let st = status();
    let refused = st["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{st}");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("unsigned"),
        "{st}"
    );
    assert!(mnt.join("system/share/lib").exists());
    assert!(!mnt.join("system/share/app").exists());
    unmount();

    // A root managed by hand (no state list): a file copied into a signed
    // layer is refused unless a trusted signature lies beside it; the
    // live mount notices a policy change.
    let bare = w.join("bare");
    fs::create_dir_all(bare.join("system/packages")).unwrap();
    fs::create_dir_all(bare.join("system/state")).unwrap();
    fs::copy(
        root.join("system/state/trust.json"),
        bare.join("system/state/trust.json"),
    )
    .unwrap();
    fs::copy(&lib, bare.join("system/packages/lib.hpkg")).unwrap();
    fs::copy(
        exos_trust::beside(&lib),
        bare.join("system/packages/lib.hpkg.minisig"),
    )
    .unwrap();
    fs::copy(&solo, bare.join("system/packages/solo.hpkg")).unwrap();
    mount(&bare);
    let st = status();
    assert_eq!(st["layers"]["system"].as_array().unwrap().len(), 1, "{st}");
    assert!(
        st["refused"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("solo.hpkg"),
        "{st}"
    );
    assert!(!mnt.join("system/share/solo").exists());
    // (`exos trust` changes initialised roots only; this one is edited
    // the way an administrator's tool would: a new file renamed in.)
    let t = bare.join("system/state/trust.json");
    let relaxed = fs::read_to_string(&t)
        .unwrap()
        .replace("\"system\": \"signed\"", "\"system\": \"any\"");
    fs::write(bare.join("system/state/new.json"), relaxed).unwrap();
    fs::rename(bare.join("system/state/new.json"), &t).unwrap();
    assert!(
        wait_until(|| mnt.join("system/share/solo").exists()),
        "policy change not noticed"
    );
    unmount();
}

#[test]
fn hostile_trust_files_are_refused_with_the_file_and_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let root = w.join("root");
    ok(&["init", s(&root)]);
    let trust = root.join("system/state/trust.json");
    // Made by code: oversized, wrong types, unknown fields, a key whose id
    // does not match it, a non-key.
    let huge = format!(
        "{{\"keys\":[], \"policy\": {{\"system\":\"any\"}}, \"x\": \"{}\"}}",
        "a".repeat(2 << 20)
    );
    let cases: Vec<(String, &str)> = vec![
        (huge, "larger than"),
        ("{\"keys\": 5}".into(), "invalid type"),
        ("{\"keys\": [], \"sudo\": true}".into(), "unknown field"),
        (
            "{\"keys\":[{\"id\":\"0000000000000000\",\"public_key\":\"RWQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"layers\":[\"system\"]}]}".into(),
            "weak",
        ),
        ("{\"policy\":{\"system\":\"maybe\",\"common\":\"any\",\"user\":\"any\"}}".into(), "unknown variant"),
    ];
    for (bytes, rule) in &cases {
        fs::write(&trust, bytes).unwrap();
        let o = exos(&["trust", "list", "-r", s(&root)]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert!(
            err.contains("trust.json") && err.contains(rule),
            "{rule}: {err}"
        );
    }
    fs::remove_file(&trust).unwrap();
    // Signature and key files: truncated, oversized, binary, wrong
    // algorithm — refused by `verify` with the file named.
    let (lib, _) = two_packages(w);
    ok(&["key", "generate", "k", "-d", s(w), "-q"]);
    ok(&["sign", "-q", s(&lib), "-k", s(&w.join("k.key"))]);
    let sig_path = exos_trust::beside(&lib);
    let good = fs::read_to_string(&sig_path).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let bad_sigs = vec![
        lines[..2].join("\n"),
        format!(
            "{}\n{}\n{}\n{}",
            lines[0],
            "A".repeat(20000),
            lines[2],
            lines[3]
        ),
        String::from_utf8_lossy(&[0xff, 0xfe, 0, 1]).into_owned(),
        {
            // Another algorithm than minisign's Ed25519 ("ED"/"Ed").
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut raw = b64.decode(lines[1]).unwrap();
            raw[..2].copy_from_slice(b"XY");
            format!(
                "{}\n{}\n{}\n{}",
                lines[0],
                b64.encode(raw),
                lines[2],
                lines[3]
            )
        },
        format!(
            "untrusted comment: x\u{7}\n{}\n{}\n{}",
            lines[1], lines[2], lines[3]
        ),
    ];
    for bad in bad_sigs {
        fs::write(&sig_path, &bad).unwrap();
        let o = exos(&["verify", "--json", s(&lib), "-p", s(&w.join("k.pub"))]);
        assert_eq!(o.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let e = v["packages"][0]["error"].as_str().unwrap();
        assert!(e.contains(".minisig"), "{e}");
    }
    fs::write(w.join("k.pub"), "untrusted comment: x\nnot base64 !!\n").unwrap();
    let o = exos(&["verify", s(&lib), "-p", s(&w.join("k.pub"))]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o.stderr).contains("k.pub"), "{}", text(&o.stderr));
}

#[test]
fn signatures_are_kept_under_policy_any_so_a_later_signed_policy_keeps_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let root = w.join("root");
    ok(&["init", s(&root)]);
    let (lib, _) = two_packages(w);
    ok(&["key", "generate", "rel", "-d", s(w), "-q"]);
    ok(&["trust", "add", s(&w.join("rel.pub")), "-r", s(&root), "-q"]);
    ok(&["sign", "-q", s(&lib), "-k", s(&w.join("rel.key"))]);
    // Policy `any`: taken, and its good signature kept all the same.
    ok(&["install", "-q", "-r", s(&root), s(&lib)]);
    let kept = root
        .join("system/state/signatures")
        .join(format!("{}.minisig", sha256(&lib)));
    assert!(
        kept.is_file(),
        "the signature was not kept under policy any"
    );
    ok(&["trust", "policy", "system", "signed", "-r", s(&root), "-q"]);
    if !fuse_available() {
        return;
    }
    let mnt = w.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let pid = w.join("pid");
    ok(&[
        "mount",
        "-q",
        "--daemon",
        "--pid-file",
        s(&pid),
        s(&root),
        s(&mnt),
    ]);
    let st: serde_json::Value = serde_json::from_str(&ok(&["status", "--json", s(&mnt)])).unwrap();
    ok(&["unmount", s(&mnt)]);
    assert!(wait_until(|| !pid.exists()));
    assert_eq!(st["refused"].as_array().unwrap().len(), 0, "{st}");
    assert!(st["layers"]["system"][0]["signed_by"].is_string(), "{st}");
}
