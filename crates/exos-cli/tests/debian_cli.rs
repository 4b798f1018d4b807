//! Imported Debian packages speak Debian: their names with `-` and their
//! versions as Debian writes them, everywhere a user types or reads one;
//! ranges in Debian's syntax keep dpkg's order; a program needing the
//! merged-/usr loader depends on the links package, and `exos run` names
//! a missing loader. The .debs are built here with dpkg-deb.

mod support;
use support::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Builds `NAME_VERSION.deb` in `out` holding `files` (path, bytes).
fn deb(work: &Path, out: &Path, control: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let name = control
        .lines()
        .find_map(|l| l.strip_prefix("Package: "))
        .unwrap();
    let version = control
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap();
    let tree = work.join(format!("deb-{name}-{version}"));
    fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    fs::write(tree.join("DEBIAN/control"), control).unwrap();
    for (path, bytes) in files {
        let p = tree.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::create_dir_all(out).unwrap();
    let file = out.join(format!("{name}_{version}.deb"));
    let o = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&tree)
        .arg(&file)
        .output()
        .expect("dpkg-deb runs");
    assert!(o.status.success(), "{}", text(&o.stderr));
    file
}

struct Fixture {
    _tmp: tempfile::TempDir,
    work: PathBuf,
    pk: PathBuf,
    root: PathBuf,
}

/// tool-x 1.6-2.1+deb12u3 and 1.7-1 (a dynamically linked program, which
/// needs the loader under /lib64), lib-foo 1.0-1, imported into `pk`.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().to_path_buf();
    let debs = work.join("debs");
    let program = fs::read("/proc/self/exe").unwrap();
    for version in ["1.6-2.1+deb12u3", "1.7-1"] {
        deb(
            &work,
            &debs,
            &format!(
                "Package: tool-x\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\nDepends: lib-foo (>= 1.0)\nDescription: a tool\n"
            ),
            &[("/usr/bin/tool-x", program.clone())],
        );
    }
    deb(
        &work,
        &debs,
        "Package: lib-foo\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: a library\n",
        &[("/usr/share/lib-foo/data", b"data".to_vec())],
    );
    let pk = work.join("pk");
    let mut args = vec!["import-deb", "-q", "-o", s(&pk)];
    let files: Vec<PathBuf> = fs::read_dir(&debs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    args.extend(files.iter().map(|f| s(f)));
    ok(&args);
    let root = work.join("root");
    ok(&["init", "-q", s(&root)]);
    Fixture {
        _tmp: tmp,
        work,
        pk,
        root,
    }
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(&all)).unwrap()
}

#[test]
fn debian_names_versions_and_ranges_are_typed_and_shown_as_debian_writes_them() {
    let f = fixture();
    let (r, pk) = (s(&f.root), s(&f.pk));
    // A Debian range picks the older release; the name has its '-'.
    let plan = json(&["install", "tool-x=1.6-2.1+deb12u3", "-a", pk, "-r", r]);
    let changes = plan["plan"]["resolution"]["changes"].as_array().unwrap();
    let tool = changes
        .iter()
        .find(|c| c["package"]["name"] == "tool_x")
        .unwrap();
    assert_eq!(tool["package"]["original_name"], "tool-x");
    assert_eq!(tool["package"]["original_version"], "1.6-2.1+deb12u3");
    // The program needs /lib64/ld-linux…: the links package came along,
    // marked automatic like lib-foo.
    let listed = json(&["list", "--installed", "-r", r]);
    let by_name = |n: &str| {
        listed["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} not installed: {listed}"))
    };
    assert_eq!(by_name("tool_x")["version"], "1.6-2.1+deb12u3");
    assert_eq!(by_name("tool_x")["automatic"], false);
    assert_eq!(by_name("lib_foo")["automatic"], true);
    assert_eq!(by_name("usr_links")["automatic"], true);
    let listing = ok(&["list", "--installed", "-r", r]);
    assert!(listing.contains("tool-x 1.6-2.1+deb12u3"), "{listing}");
    assert!(
        !listing.contains("0.b"),
        "the Haiku encoding shows: {listing}"
    );
    // Debian names work wherever a name is typed.
    assert_eq!(
        json(&["info", "tool-x", "-r", r])["version"],
        "1.6-2.1+deb12u3"
    );
    assert_eq!(
        json(&["why", "lib-foo", "-r", r])["required_by"][0]["package"],
        "tool_x"
    );
    // dpkg's order: 1.7-1 > 1.6-2.1+deb12u3; '>=1.7' and '>>1.6-2.1+deb12u3' upgrade.
    let up = ok(&["install", "tool-x>>1.6-2.1+deb12u3", "-a", pk, "-r", r]);
    assert!(up.contains("1.6-2.1+deb12u3 -> 1.7-1"), "{up}");
    assert!(!up.contains("0.b"), "{up}");
    // A range that is not Debian's is refused, saying so.
    let o = exos(&["install", "tool-x~1.7", "-a", pk, "-r", r]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("Debian version"),
        "{}",
        text(&o.stderr)
    );
    // Removal by Debian name.
    ok(&["remove", "-q", "tool-x", "-r", r]);
    let _ = f.work;
}

#[test]
fn a_deb_given_to_install_is_pointed_at_import_deb() {
    let f = fixture();
    let d = fs::read_dir(f.work.join("debs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let o = exos(&["install", s(&d), "-r", s(&f.root)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("exos import-deb"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_missing_loader_is_named_when_a_program_cannot_start() {
    if !fuse_available() {
        return;
    }
    let f = fixture();
    let (r, pk) = (s(&f.root), s(&f.pk));
    ok(&["install", "-q", "tool-x", "-a", pk, "-r", r]);
    // The links go (essential: forced), the program stays.
    ok(&["remove", "-q", "--force", "-y", "usr_links", "-r", r]);
    let mnt = f.work.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let pid = f.work.join("pid");
    ok(&["mount", r, s(&mnt), "--daemon", "--pid-file", s(&pid)]);
    let o = exos(&["run", "-r", r, "--", "tool-x"]);
    ok(&["unmount", s(&mnt)]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o.stderr));
    let said = text(&o.stderr);
    assert!(
        said.contains("tool-x: the program loader /lib") && said.contains("usr_links"),
        "{said}"
    );
}

/// A native package's `lib/` directory and the links package's `lib ->
/// usr/lib` in one layer: whichever comes first, the directory is shown,
/// and installing the second says so, naming both packages.
#[test]
fn a_directory_and_a_link_of_one_name_in_a_layer_give_the_directory_in_either_order() {
    let f = fixture();
    let native = package(
        &f.work,
        &f.work.join("native"),
        r#"{"name":"native","version":"1.0"}"#,
        "x",
    );
    // Its content is share/native; give it a lib/ too.
    let src = f.work.join("src-native-1.0");
    fs::create_dir_all(src.join("lib")).unwrap();
    fs::write(src.join("lib/libnative.so"), "native").unwrap();
    ok(&["build", "-q", s(&src), "-o", s(&native)]);
    let links = f.pk.join("usr_links_1_all.hpkg");
    for (first, second) in [(&native, &links), (&links, &native)] {
        let root = f.work.join(format!(
            "root-{}",
            first.file_name().unwrap().to_string_lossy()
        ));
        ok(&["init", "-q", s(&root)]);
        ok(&["install", "-q", s(first), "-r", s(&root)]);
        let o = exos(&["install", s(second), "-r", s(&root)]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let said = text(&o.stderr);
        assert!(
            said.contains("system/lib: a directory in native and a file or link in usr_links"),
            "{said}"
        );
        if !fuse_available() {
            continue;
        }
        let mnt = root.join("mnt");
        fs::create_dir(&mnt).unwrap();
        let pid = root.join("pid");
        ok(&[
            "mount",
            s(&root),
            s(&mnt),
            "--daemon",
            "--pid-file",
            s(&pid),
        ]);
        let lib = mnt.join("system/lib");
        let is_dir = lib.symlink_metadata().map(|m| m.is_dir());
        let content = fs::read_to_string(lib.join("libnative.so"));
        let status = ok(&["status", s(&mnt)]);
        ok(&["unmount", s(&mnt)]);
        assert_eq!(is_dir.ok(), Some(true));
        assert_eq!(content.ok().as_deref(), Some("native"));
        assert!(status.contains("lib"), "{status}");
    }
}
