//! Lazy installs over real HTTP: a real nginx on loopback serves a
//! repository published with `exos repo index`; packages installed with
//! `exos install --lazy` are mounted by a real FUSE mount that fetches
//! verified blocks with Range requests. Every loop is bounded, every
//! address loopback.

mod support;
use support::*;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const APP_FILE: &str = "app_1%3a2.0+b1_amd64.hpkg";

struct Published {
    dir: PathBuf,
    public: PathBuf,
    big: Vec<u8>,
    mid: Vec<u8>,
}

/// lib 1.0, app 2.0 (requires lib) and big 1 (12 MiB of noise in
/// share/big, more than one request fetches, and 1 MiB in share/mid;
/// stored raw: every block of the package is file data).
fn publish(w: &Path) -> Published {
    let dir = w.join("pub");
    fs::create_dir_all(&dir).unwrap();
    ok(&["key", "generate", "repo", "-d", s(w), "-q"]);
    package(
        w,
        &dir,
        r#"{"name":"lib","version":"1.0","provides":[{"api":"libapi","version":"1.0"}]}"#,
        "lib 1.0\n",
    );
    package(
        w,
        &dir,
        r#"{"name":"app","version":"2.0","requires":["libapi>=1.0"]}"#,
        "app 2.0\n",
    );
    let src = w.join("src-big");
    fs::create_dir_all(src.join("share")).unwrap();
    fs::write(
        src.join("manifest.json"),
        complete(r#"{"name":"big","version":"1"}"#),
    )
    .unwrap();
    let big = noise(12 << 20, 0x2545_f491_4f6c_dd1d);
    fs::write(src.join("share/big"), &big).unwrap();
    let mid = noise(1 << 20, 0x1234_5678_9abc_def1);
    fs::write(src.join("share/mid"), &mid).unwrap();
    ok(&["build", "-q", s(&src), "-o", s(&dir.join("big-1.hpkg"))]);
    // Named as `apt-get download` names a package with an epoch: `%` and
    // `+` must be encoded in URLs.
    fs::rename(dir.join("app-2.0.hpkg"), dir.join(APP_FILE)).unwrap();
    ok(&["repo", "index", "-q", s(&dir), "-k", s(&w.join("repo.key"))]);
    Published {
        dir,
        public: w.join("repo.pub"),
        big,
        mid,
    }
}

/// A published repository served by nginx, and a root that has it added
/// with `names` installed lazily (blocks cached in `w/blocks`).
fn lazily_installed(w: &Path, names: &[&str]) -> (Published, Nginx, PathBuf, PathBuf) {
    let repo = publish(w);
    let nginx = Nginx::serve(&repo.dir);
    let root = w.join("root");
    root_with_repo(&root, &nginx.url(), &repo.public);
    let cache = w.join("blocks");
    let mut args = vec!["install", "--lazy"];
    args.extend_from_slice(names);
    args.extend(["-r", s(&root)]);
    let o = exos_env(&args, &[("EXOS_BLOCK_CACHE", s(&cache))]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    (repo, nginx, root, cache)
}

/// (requests, body bytes) nginx served for `file` (combined log format).
fn served(nginx: &Nginx, file: &str) -> (usize, u64) {
    let log = nginx.log();
    let hits: Vec<u64> = log
        .lines()
        .filter(|l| l.contains(&format!("/{file} ")))
        .map(|l| {
            // `"GET /f HTTP/1.1" 206 65536 "-" "exos/…"`
            let after = l.split('"').nth(2).unwrap_or("");
            after
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    (hits.len(), hits.iter().sum())
}

struct Mount {
    mnt: PathBuf,
}

impl Mount {
    fn start(root: &Path, mnt: &Path, cache: &Path, w: &Path) -> Mount {
        Mount::start_with(root, mnt, cache, w, &[])
    }

    fn start_with(root: &Path, mnt: &Path, cache: &Path, w: &Path, extra: &[&str]) -> Mount {
        fs::create_dir_all(mnt).unwrap();
        let log = w.join("mount.log");
        let pid = w.join("mount.pid");
        let mut args = vec![
            "mount",
            s(root),
            s(mnt),
            "--daemon",
            "--pid-file",
            s(&pid),
            "--log-file",
            s(&log),
            "--block-cache",
            s(cache),
            "--no-share",
        ];
        args.extend_from_slice(extra);
        let o = exos(&args);
        assert!(
            o.status.success(),
            "{}{}",
            text(&o.stderr),
            fs::read_to_string(&log).unwrap_or_default()
        );
        Mount {
            mnt: mnt.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let o = exos(&["unmount", s(&self.mnt)]);
        if !std::thread::panicking() {
            assert!(o.status.success(), "{}", text(&o.stderr));
        }
    }
}

#[test]
fn lazy_packages_fetch_verified_blocks_on_demand_and_work_offline() {
    if !nginx_available() || !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let (repo, nginx, root, cache) = lazily_installed(w, &["app", "big"]);
    let size = fs::metadata(repo.dir.join("big-1.hpkg")).unwrap().len();
    let st = ok(&["state", "show", "-r", s(&root)]);
    for f in [APP_FILE, "lib-1.0.hpkg", "big-1.hpkg"] {
        assert!(st.contains(f), "{st}");
    }
    assert!(!root.join("system/packages/big-1.hpkg").exists());
    assert!(fs::read_dir(root.join("system/state/store"))
        .unwrap()
        .next()
        .is_none());
    let lazy: Vec<String> = fs::read_dir(root.join("system/state/lazy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(lazy.len(), 6, "{lazy:?}");
    ok(&["check", "-q", "-r", s(&root)]);
    // Installing read the header, attributes and TOC only.
    let (_, at_install) = served(&nginx, "big-1.hpkg");
    assert!(
        at_install > 0 && at_install < size / 10,
        "{at_install} of {size}"
    );
    assert!(nginx.log().contains("big-1.hpkg.blocks"));

    let mount = Mount::start(&root, &w.join("mnt"), &cache, w);
    let m = &mount.mnt;
    assert_eq!(
        fs::read_to_string(m.join("system/share/app")).unwrap(),
        "app 2.0\n"
    );
    // One small read in the middle of a file larger than a request
    // fetches a few blocks, not the file.
    let f = fs::File::open(m.join("system/share/big")).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, 6 << 20).unwrap();
    assert_eq!(buf, repo.big[6 << 20..(6 << 20) + 4096]);
    let (requests_at_install, _) = served(&nginx, "big-1.hpkg");
    let (_, after_one) = served(&nginx, "big-1.hpkg");
    assert!(
        after_one - at_install <= 512 << 10,
        "a 4 KiB read fetched {} bytes",
        after_one - at_install
    );
    // A smaller file is fetched whole, in one request, at its first read.
    let g = fs::File::open(m.join("system/share/mid")).unwrap();
    g.read_exact_at(&mut buf, 512 << 10).unwrap();
    assert_eq!(buf, repo.mid[512 << 10..(512 << 10) + 4096]);
    let (requests, after_mid) = served(&nginx, "big-1.hpkg");
    assert_eq!(requests, requests_at_install + 1, "{}", nginx.log());
    assert!(
        after_mid - after_one >= 1 << 20,
        "{}",
        after_mid - after_one
    );
    assert_eq!(fs::read(m.join("system/share/mid")).unwrap(), repo.mid);
    assert_eq!(
        served(&nginx, "big-1.hpkg").0,
        requests,
        "mid was fetched again"
    );
    drop(g);
    // A sequential read of all of it: few requests (the window grows;
    // the kernel's 128 KiB reads would be 96), every byte right.
    let (requests_before, _) = served(&nginx, "big-1.hpkg");
    assert_eq!(fs::read(m.join("system/share/big")).unwrap(), repo.big);
    let (requests, fetched) = served(&nginx, "big-1.hpkg");
    assert!(
        requests - requests_before <= 32,
        "{} requests for a 12 MiB sequential read",
        requests - requests_before
    );
    assert!(
        fetched <= size + (256 << 10),
        "{fetched} bytes for a {size}-byte package"
    );
    assert!(nginx.log().contains("\" 206 "));
    let status = ok(&["status", s(m)]);
    assert!(status.contains("lazy from http://127.0.0.1:"), "{status}");
    let v: serde_json::Value = serde_json::from_str(&ok(&["status", "--json", s(m)])).unwrap();
    let big = v["layers"]["system"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "big")
        .unwrap()
        .clone();
    assert_eq!(
        big["lazy_blocks"]["cached"], big["lazy_blocks"]["blocks"],
        "{big}"
    );

    drop(f);
    // `exos fetch` completes the others; then the repository goes away.
    let fetched = ok(&["fetch", "-r", s(&root), "--block-cache", s(&cache)]);
    assert!(fetched.contains("3 lazy packages complete"), "{fetched}");
    drop(mount);
    drop(nginx);
    let mount = Mount::start(&root, &w.join("mnt"), &cache, w);
    let m = &mount.mnt;
    assert_eq!(fs::read(m.join("system/share/big")).unwrap(), repo.big);
    assert_eq!(
        fs::read_to_string(m.join("system/share/lib")).unwrap(),
        "lib 1.0\n"
    );
    drop(mount);

    // Removing them and gc drop their records.
    ok(&["remove", "-q", "-y", "app", "lib", "big", "-r", s(&root)]);
    ok(&["gc", "-q", "--keep", "0", "-r", s(&root)]);
    assert!(fs::read_dir(root.join("system/state/lazy"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn a_tampered_block_is_refused_and_signed_layers_refuse_lazy_installs() {
    if !nginx_available() || !fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let (repo, nginx, root, cache) = lazily_installed(w, &["big"]);
    // The server's copy changes after the install: one byte in the middle.
    let pkg = repo.dir.join("big-1.hpkg");
    let mut bytes = fs::read(&pkg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&pkg, &bytes).unwrap();
    let mount = Mount::start(&root, &w.join("mnt"), &cache, w);
    let f = fs::File::open(mount.mnt.join("system/share/big")).unwrap();
    let mut buf = vec![0u8; 4096];
    // Far from the damage: fine.
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, repo.big[..4096]);
    // The damaged block: an I/O error, never the wrong bytes.
    let all = fs::read(mount.mnt.join("system/share/big"));
    assert!(all.is_err(), "a tampered block was served");
    let log = fs::read_to_string(w.join("mount.log")).unwrap_or_default();
    assert!(
        log.contains("does not match its SHA-256 in the signed block map"),
        "{log}"
    );
    drop(f);
    drop(mount);

    // A layer that takes only signed packages refuses lazy installs.
    let r2 = w.join("root2");
    root_with_repo(&r2, &nginx.url(), &repo.public);
    ok(&["trust", "add", s(&repo.public), "-r", s(&r2)]);
    ok(&["trust", "policy", "system", "signed", "-r", s(&r2)]);
    let o = exos_env(
        &["install", "--lazy", "lib", "-r", s(&r2)],
        &[("EXOS_BLOCK_CACHE", s(&cache))],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("install it without --lazy"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_prefetching_mount_completes_lazy_packages_in_the_background() {
    if !nginx_available() || !fuse_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // Reachable by `nobody` (the mount, the root's records).
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let w = tmp.path();
    let (repo, nginx, root, cache) = lazily_installed(w, &["app", "big"]);
    let mount = Mount::start_with(&root, &w.join("mnt"), &cache, w, &["--prefetch"]);
    // Nothing is read; the blocks arrive anyway.
    let complete = || {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&["status", "--json", s(&mount.mnt)])).unwrap();
        let lazy: Vec<&serde_json::Value> = v["layers"]["system"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["lazy_from"].is_string())
            .collect();
        lazy.len() == 3
            && lazy
                .iter()
                .all(|p| p["lazy_blocks"]["cached"] == p["lazy_blocks"]["blocks"])
    };
    assert!(wait_until(complete), "{}", ok(&["status", s(&mount.mnt)]));
    // Someone else sees where lazy packages come from, but not the block
    // cache (its owner's alone), and is told nothing rather than "0 cached"
    // — even when the records themselves are readable (made so here: the
    // state directory's files are root's alone).
    for e in fs::read_dir(root.join("system/state/lazy")).unwrap() {
        fs::set_permissions(e.unwrap().path(), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let o = exos_as_nobody(&["status", "--json", s(&mount.mnt)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let lazy: Vec<&serde_json::Value> = v["layers"]["system"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["lazy_from"].is_string())
        .collect();
    assert_eq!(lazy.len(), 3, "{v}");
    assert!(lazy.iter().all(|p| p.get("lazy_blocks").is_none()), "{v}");
    // (It could read the records: the cache was what was out of reach.)
    let record = fs::read_dir(root.join("system/state/lazy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "lazy"))
        .unwrap();
    let cat = as_nobody("cat", &[s(&record)]);
    assert!(cat.status.success(), "{}", text(&cat.stderr));
    drop(nginx);
    assert_eq!(
        fs::read(mount.mnt.join("system/share/big")).unwrap(),
        repo.big
    );
}
