//! Repositories over real HTTP: a real nginx (Debian's package; `.ci/run`
//! installs it) on loopback serves a repository published with `exos repo
//! index`; a small proxy in this file drops a connection mid-download; a
//! listener that never answers stands for a dead server. Every loop is
//! bounded, every address loopback.

mod support;
use support::*;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A proxy to `upstream` that, for the first request of a `.hpkg` file,
/// passes only `cut` bytes of the response and then drops the connection.
fn dropping_proxy(upstream: u16, cut: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut cut_once = Some(cut);
        for conn in listener.incoming().take(64) {
            let Ok(mut client) = conn else { continue };
            let mut req = vec![0u8; 8192];
            let n = client.read(&mut req).unwrap_or(0);
            let line = String::from_utf8_lossy(&req[..n]).into_owned();
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            // One request per connection: nginx closes after answering,
            // so the client opens a new connection for the next one.
            let request = line.replacen("\r\n", "\r\nConnection: close\r\n", 1);
            let _ = server.write_all(request.as_bytes());
            let limit = if line.starts_with("GET") && line.contains(".hpkg ") {
                cut_once.take()
            } else {
                None
            };
            let mut sent = 0usize;
            let mut buf = [0u8; 4096];
            loop {
                let m = match server.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(m) => m,
                };
                let m = match limit {
                    Some(l) if sent + m > l => l - sent,
                    _ => m,
                };
                if client.write_all(&buf[..m]).is_err() {
                    break;
                }
                sent += m;
                if limit.is_some_and(|l| sent >= l) {
                    break;
                }
            }
            // Dropping both ends the connection.
        }
    });
    port
}

struct Repo {
    dir: PathBuf,
    key: PathBuf,
    public: PathBuf,
}

/// A repository of lib (1.0), app (requires lib) and a big package.
fn publish(w: &Path) -> Repo {
    let dir = w.join("pub");
    fs::create_dir_all(&dir).unwrap();
    ok(&["key", "generate", "repo", "-d", s(w), "-q"]);
    package(
        w,
        &dir,
        r#"{"name":"lib","version":"1.0","summary":"a shared library","provides":[{"api":"libapi","version":"1.0"}]}"#,
        "lib 1.0\n",
    );
    package(
        w,
        &dir,
        r#"{"name":"app","version":"2.0","summary":"an application","requires":["libapi>=1.0"]}"#,
        "app 2.0\n",
    );
    // Big enough that a download can be cut in the middle (incompressible).
    let big = w.join("src-big");
    fs::create_dir_all(big.join("share")).unwrap();
    fs::write(
        big.join("manifest.json"),
        complete(r#"{"name":"big","version":"1"}"#),
    )
    .unwrap();
    let data = noise(3 << 20, 0x2545_f491_4f6c_dd1d);
    fs::write(big.join("share/big"), &data).unwrap();
    ok(&["build", "-q", s(&big), "-o", s(&dir.join("big-1.hpkg"))]);
    let key = w.join("repo.key");
    ok(&["repo", "index", "-q", s(&dir), "-k", s(&key)]);
    Repo {
        dir,
        key,
        public: w.join("repo.pub"),
    }
}

fn root(w: &Path, name: &str) -> PathBuf {
    let r = w.join(name);
    ok(&["init", "-q", s(&r)]);
    r
}

/// `exos repo add -q main URL -k PUBLIC -r ROOT`.
fn add_repo(root: &str, url: &str, public: &str) {
    ok(&["repo", "add", "-q", "main", url, "-k", public, "-r", root]);
}

fn state(root: &Path) -> String {
    ok(&["state", "show", "-r", s(root)])
}

fn fails(args: &[&str], needle: &str) -> String {
    let o = exos(args);
    let err = text(&o.stderr);
    assert!(
        !o.status.success(),
        "exos {args:?} succeeded: {}",
        text(&o.stdout)
    );
    assert!(
        err.contains(needle),
        "exos {args:?}: expected {needle:?} in: {err}"
    );
    err
}

#[test]
fn install_by_name_over_http_and_resume_a_dropped_download() {
    if !nginx_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let repo = publish(w);
    let nginx = Nginx::serve(&repo.dir);
    let r = root(w, "root");
    add_repo(s(&r), &nginx.url(), s(&repo.public));
    let listed = ok(&["repo", "list", "-r", s(&r)]);
    assert!(listed.contains(&nginx.url()), "{listed}");
    let found = ok(&["search", "app", "-r", s(&r)]);
    assert!(
        found.contains("app 2.0") && found.contains("an application"),
        "{found}"
    );
    // By name: the dependency comes along, both verified and placed.
    ok(&["install", "-q", "app", "-r", s(&r)]);
    let st = state(&r);
    assert!(
        st.contains("app-2.0.hpkg") && st.contains("lib-1.0.hpkg"),
        "{st}"
    );
    ok(&["check", "-q", "-r", s(&r)]);
    // A range that nothing satisfies is explained.
    let r2 = root(w, "root2");
    add_repo(s(&r2), &nginx.url(), s(&repo.public));
    fails(&["install", "lib>=2", "-r", s(&r2)], "lib");

    // A connection dropped mid-download: the command fails and says so;
    // run again, it resumes with a Range request and completes.
    let proxy = dropping_proxy(nginx.port, 1 << 20);
    let r3 = root(w, "root3");
    let url = format!("http://127.0.0.1:{proxy}");
    add_repo(s(&r3), &url, s(&repo.public));
    let before = state(&r3);
    fails(
        &["install", "big", "-r", s(&r3)],
        "run the command again to resume",
    );
    assert_eq!(state(&r3), before, "a failed download changed the state");
    let part: Vec<_> = fs::read_dir(r3.join("system/state/cache"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert_eq!(part.len(), 1, "the partial download is kept for resuming");
    let had = part[0].metadata().unwrap().len();
    assert!(had > 0, "nothing was kept");
    ok(&["install", "-q", "big", "-r", s(&r3)]);
    assert!(state(&r3).contains("big-1.hpkg"));
    assert!(
        nginx
            .log()
            .lines()
            .any(|l| l.contains("big-1.hpkg") && l.contains("\" 206 ")),
        "no ranged (206) request in nginx's log:\n{}",
        nginx.log()
    );
}

#[test]
fn tampered_stale_and_untrusted_repositories_are_refused() {
    if !nginx_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let repo = publish(w);
    let nginx = Nginx::serve(&repo.dir);
    let url = nginx.url();
    let r = root(w, "root");
    add_repo(s(&r), &url, s(&repo.public));
    let before = state(&r);

    // A corrupted package: refused, nothing placed, state intact, nothing cached.
    let lib = repo.dir.join("lib-1.0.hpkg");
    let good = fs::read(&lib).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    fs::write(&lib, &bad).unwrap();
    fails(&["install", "lib", "-r", s(&r)], "SHA-256");
    assert_eq!(state(&r), before);
    assert!(fs::read_dir(r.join("system/packages"))
        .unwrap()
        .next()
        .is_none());
    // A package swapped for another of the same name and version.
    let other = package(
        w,
        &w.join("other"),
        r#"{"name":"lib","version":"1.0","provides":[{"api":"libapi","version":"1.0"}]}"#,
        "not the published lib\n",
    );
    fs::copy(&other, &lib).unwrap();
    // (Refused by size or by SHA-256, whichever shows first.)
    fails(&["install", "lib", "-r", s(&r)], "lib-1.0.hpkg");
    assert_eq!(state(&r), before);
    fs::write(&lib, &good).unwrap();

    // An older index served after a newer one (rollback): refused.
    let v1 = w.join("v1");
    fs::create_dir_all(&v1).unwrap();
    for f in [
        "index.json",
        "index.json.minisig",
        "timestamp.json",
        "timestamp.json.minisig",
    ] {
        fs::copy(repo.dir.join(f), v1.join(f)).unwrap();
    }
    ok(&["repo", "index", "-q", s(&repo.dir), "-k", s(&repo.key)]);
    ok(&["repo", "refresh", "-q", "-r", s(&r)]);
    for f in [
        "index.json",
        "index.json.minisig",
        "timestamp.json",
        "timestamp.json.minisig",
    ] {
        fs::copy(v1.join(f), repo.dir.join(f)).unwrap();
    }
    fails(&["repo", "refresh", "-r", s(&r)], "older than version");
    // Mix and match: the new timestamp with the old index.
    ok(&["repo", "index", "-q", s(&repo.dir), "-k", s(&repo.key)]);
    ok(&["repo", "index", "-q", s(&repo.dir), "-k", s(&repo.key)]);
    for f in ["index.json", "index.json.minisig"] {
        fs::copy(v1.join(f), repo.dir.join(f)).unwrap();
    }
    fails(
        &["repo", "refresh", "-r", s(&r)],
        "not the index the timestamp names",
    );
    ok(&["repo", "index", "-q", s(&repo.dir), "-k", s(&repo.key)]);
    ok(&["repo", "refresh", "-q", "-r", s(&r)]);

    // Metadata signed by a key the root does not list.
    let stranger = exos_trust::SecretKey::generate().unwrap();
    let idx = fs::read(repo.dir.join("index.json")).unwrap();
    let sig = stranger
        .sign(
            &exos_trust::Blake2b512Digest::of_bytes(&idx),
            "x",
            "file:index.json",
        )
        .unwrap();
    let saved = fs::read(repo.dir.join("index.json.minisig")).unwrap();
    fs::write(repo.dir.join("index.json.minisig"), sig.render()).unwrap();
    // (The timestamp must name a new index for it to be fetched.)
    let r4 = root(w, "root4");
    fails(
        &[
            "repo",
            "add",
            "main",
            &url,
            "-k",
            s(&repo.public),
            "-r",
            s(&r4),
        ],
        "but the key trusted for it is",
    );
    fs::write(repo.dir.join("index.json.minisig"), saved).unwrap();
    // A repository added with another root key than the one that signed it.
    ok(&["key", "generate", "wrong", "-d", s(w), "-q"]);
    fails(
        &[
            "repo",
            "add",
            "main",
            &url,
            "-k",
            s(&w.join("wrong.pub")),
            "-r",
            s(&r4),
        ],
        "root.json",
    );
    // The message names the pinned key, so the mistake is plain.
    let wrong_id = fs::read_to_string(w.join("wrong.pub"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let said = fails(
        &[
            "repo",
            "add",
            "main",
            &url,
            "-k",
            s(&w.join("wrong.pub")),
            "-r",
            s(&r4),
        ],
        "pinned",
    );
    assert!(
        said.contains(&format!("trusted for it is {wrong_id}")),
        "{said}"
    );
    assert!(
        ok(&["repo", "list", "-r", s(&r4)]).is_empty(),
        "a refused repository was added"
    );

    // Expired metadata (freeze): a timestamp that is no longer valid.
    ok(&[
        "repo",
        "refresh-timestamp",
        "-q",
        s(&repo.dir),
        "-k",
        s(&repo.key),
        "--timestamp-days",
        "0",
    ]);
    fails(&["repo", "refresh", "-r", s(&r)], "expired");
    // The client keeps the last good timestamp, valid until its own
    // expiry; once that passes (simulated by ageing the kept copy),
    // nothing is installed from it.
    let kept = r.join("system/state/repos/main/timestamp.json");
    let mut ts: serde_json::Value = serde_json::from_slice(&fs::read(&kept).unwrap()).unwrap();
    ts["expires"] = 1.into();
    fs::write(&kept, serde_json::to_vec(&ts).unwrap()).unwrap();
    fails(&["install", "app", "-r", s(&r)], "expired at 1970-01-01");
    ok(&[
        "repo",
        "refresh-timestamp",
        "-q",
        s(&repo.dir),
        "-k",
        s(&repo.key),
    ]);
    ok(&["repo", "refresh", "-q", "-r", s(&r)]);
    ok(&["install", "-q", "app", "-r", s(&r)]);
}

#[test]
fn a_server_that_never_answers_times_out_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds connections, never answers.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().take(8) {
            held.push(c);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let r = root(w, "root");
    ok(&["key", "generate", "k", "-d", s(w), "-q"]);
    let t = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_exos"))
        .args([
            "repo",
            "add",
            "main",
            &format!("http://127.0.0.1:{port}"),
            "-k",
            s(&w.join("k.pub")),
            "-r",
            s(&r),
        ])
        .env("EXOS_NET_TIMEOUT", "2")
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}/root.json")),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("timeout") || err.contains("timed out"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn install_missing_fetches_the_provider_of_a_refused_packages_system_api() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let pubdir = w.join("pub");
    package(
        w,
        &pubdir,
        r#"{"name":"gpu_driver","version":"1.2","summary":"provides the GPU API","provides":[{"api":"system.gpu","version":"1.2"}]}"#,
        "driver\n",
    );
    ok(&["key", "generate", "repo", "-d", s(w), "-q"]);
    ok(&[
        "repo",
        "index",
        "-q",
        s(&pubdir),
        "-k",
        s(&w.join("repo.key")),
    ]);
    let viewer = package(
        w,
        &w.join("local"),
        r#"{"name":"viewer","version":"1","uses":["system.gpu>=1"]}"#,
        "viewer\n",
    );
    let r = root(w, "root");
    // Installed while the host claimed the API; a mount without it refuses
    // viewer, naming the API.
    ok(&[
        "install",
        "-q",
        s(&viewer),
        "--host-api",
        "system.gpu=1.0",
        "-r",
        s(&r),
    ]);
    add_repo(s(&r), s(&pubdir), s(&w.join("repo.pub")));
    let mnt = w.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let pid = w.join("pid");
    let fuse = fuse_available();
    if fuse {
        ok(&[
            "mount",
            "-q",
            "--daemon",
            "--pid-file",
            s(&pid),
            s(&r),
            s(&mnt),
        ]);
        let st = ok(&["status", s(&mnt)]);
        assert!(
            st.contains("uses system API system.gpu >=1") && st.contains("--missing"),
            "{st}"
        );
    }
    let o = exos(&["install", "--missing", "-r", s(&r)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("viewer 1 uses system.gpu >=1"),
        "{}",
        text(&o.stderr)
    );
    assert!(state(&r).contains("gpu_driver-1.2.hpkg"));
    // Nothing left to fetch.
    let again = ok(&["install", "--missing", "-r", s(&r)]);
    assert!(again.contains("Nothing is missing"), "{again}");
    if fuse {
        // The live mount activates viewer now that its API is provided.
        assert!(
            wait_until(|| mnt.join("system/share/viewer").exists()),
            "{}",
            ok(&["status", s(&mnt)])
        );
        ok(&["unmount", s(&mnt)]);
        assert!(wait_until(|| !pid.exists()));
    }
}

#[test]
fn root_key_rotation_is_followed_and_forged_rotations_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let pubdir = w.join("pub");
    package(w, &pubdir, r#"{"name":"tool","version":"1"}"#, "tool\n");
    ok(&["key", "generate", "a", "-d", s(w), "-q"]);
    ok(&["key", "generate", "b", "-d", s(w), "-q"]);
    ok(&["key", "generate", "c", "-d", s(w), "-q"]);
    let key = |n: &str| w.join(format!("{n}.key"));
    ok(&["repo", "index", "-q", s(&pubdir), "-k", s(&key("a"))]);
    let r = root(w, "root");
    add_repo(s(&r), s(&pubdir), s(&w.join("a.pub")));
    // Only the root key may rotate; the new key then signs the index.
    fails(
        &[
            "repo",
            "rotate-root",
            s(&pubdir),
            "-k",
            s(&key("b")),
            "--new-key",
            s(&key("c")),
        ],
        "is not its root key",
    );
    ok(&[
        "repo",
        "rotate-root",
        "-q",
        s(&pubdir),
        "-k",
        s(&key("a")),
        "--new-key",
        s(&key("b")),
    ]);
    ok(&["repo", "index", "-q", s(&pubdir), "-k", s(&key("b"))]);
    ok(&["repo", "refresh", "-q", "-r", s(&r)]);
    let kept = fs::read_to_string(r.join("system/state/repos/main/root.json")).unwrap();
    let b_pub = fs::read_to_string(w.join("b.pub")).unwrap();
    assert!(kept.contains(b_pub.lines().nth(1).unwrap()), "{kept}");
    assert!(kept.contains("\"version\": 2"), "{kept}");
    ok(&["install", "-q", "tool", "-r", s(&r)]);
    // A newer release published: `exos upgrade` without -a takes it from
    // the repository once refreshed.
    package(w, &pubdir, r#"{"name":"tool","version":"2"}"#, "tool 2\n");
    ok(&["repo", "index", "-q", s(&pubdir), "-k", s(&key("b"))]);
    assert!(ok(&["upgrade", "-r", s(&r)]).contains("Nothing to do"));
    ok(&["repo", "refresh", "-q", "-r", s(&r)]);
    let up = ok(&["upgrade", "-r", s(&r)]);
    assert!(up.contains("upgrade   tool 1 -> 2"), "{up}");
    assert!(state(&r).contains("tool-2.hpkg"));
    // A second rotation whose link is signed by the new key only: refused.
    ok(&[
        "repo",
        "rotate-root",
        "-q",
        s(&pubdir),
        "-k",
        s(&key("b")),
        "--new-key",
        s(&key("c")),
    ]);
    ok(&["repo", "index", "-q", s(&pubdir), "-k", s(&key("c"))]);
    let link = pubdir.join("3.root.json.minisig");
    let honest = fs::read(&link).unwrap();
    fs::copy(pubdir.join("3.root.json.new.minisig"), &link).unwrap();
    fails(&["repo", "refresh", "-r", s(&r)], "3.root.json");
    // Without the new key's own signature: refused too.
    fs::write(&link, &honest).unwrap();
    let own = fs::read(pubdir.join("3.root.json.new.minisig")).unwrap();
    fs::remove_file(pubdir.join("3.root.json.new.minisig")).unwrap();
    fails(&["repo", "refresh", "-r", s(&r)], "signed by its own key");
    fs::write(pubdir.join("3.root.json.new.minisig"), own).unwrap();
    ok(&["repo", "refresh", "-q", "-r", s(&r)]);
    // A new root served directly as root.json, signed by the current root
    // key only (no 4.root.json link signed by both): refused, the trusted
    // root unchanged.
    ok(&["key", "generate", "d", "-d", s(w), "-q"]);
    ok(&[
        "repo",
        "rotate-root",
        "-q",
        s(&pubdir),
        "-k",
        s(&key("c")),
        "--new-key",
        s(&key("d")),
    ]);
    fs::copy(pubdir.join("4.root.json"), pubdir.join("root.json")).unwrap();
    fs::copy(
        pubdir.join("4.root.json.minisig"),
        pubdir.join("root.json.minisig"),
    )
    .unwrap();
    for f in [
        "4.root.json",
        "4.root.json.minisig",
        "4.root.json.new.minisig",
    ] {
        fs::remove_file(pubdir.join(f)).unwrap();
    }
    ok(&["repo", "index", "-q", s(&pubdir), "-k", s(&key("d"))]);
    let trusted = r.join("system/state/repos/main/root.json");
    let before = fs::read(&trusted).unwrap();
    fails(&["repo", "refresh", "-r", s(&r)], "no 4.root.json link");
    assert_eq!(
        fs::read(&trusted).unwrap(),
        before,
        "the forged root was kept"
    );
}

#[test]
fn a_crafted_repos_json_is_refused_naming_the_file_and_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let r = root(tmp.path(), "root");
    let f = r.join("system/state/repos.json");
    let key = "RWTrvJ5nUVefS8GDm+cxlrfgprg7bcqmnYmQwdgv1R7MqLAUlZr3Y7la";
    let cases = [
        (format!("{{\"repositories\": [{{\"name\": \"../x\", \"url\": \"/tmp\", \"root_key\": \"{key}\"}}]}}"), "repository name"),
        (format!("{{\"repositories\": [{{\"name\": \"a\", \"url\": \"gopher://x\", \"root_key\": \"{key}\"}}]}}"), "unsupported URL"),
        ("{\"repositories\": [{\"name\": \"a\", \"url\": \"/tmp\", \"root_key\": \"nope\"}]}".to_string(), "root key"),
        (format!("{{\"repositories\": [{{\"name\": \"a\", \"url\": \"/t\", \"root_key\": \"{key}\"}}, {{\"name\": \"a\", \"url\": \"/t\", \"root_key\": \"{key}\"}}]}}"), "listed twice"),
        ("[1, 2, 3]".to_string(), "invalid type"),
        (format!("{{\"repositories\": [], \"pad\": \"{}\"}}", "x".repeat(2 << 20)), "larger than"),
    ];
    for (text, rule) in cases {
        fs::write(&f, text).unwrap();
        let err = fails(&["repo", "list", "-r", s(&r)], rule);
        assert!(err.contains("repos.json"), "{err}");
    }
}

/// Where a package came from is part of what was installed: a second
/// repository (another key) offering a newer `hello` is shown by `exos
/// upgrade`, never taken; `exos install other/hello` (or `--from other`)
/// switches on request; a rollback keeps the origin; a package not
/// installed yet comes from the higher-priority repository; the same name
/// removed and added with another key is another origin. Over a real
/// nginx.
#[test]
fn upgrades_stay_on_the_repository_a_package_came_from() {
    if !nginx_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let make = |name: &str, pkgs: &[(&str, &str)]| -> (PathBuf, PathBuf) {
        let dir = w.join(name);
        fs::create_dir_all(&dir).unwrap();
        ok(&["key", "generate", name, "-d", s(w), "-q"]);
        for (n, v) in pkgs {
            package(
                &w.join(format!("work-{name}")),
                &dir,
                &format!(r#"{{"name":"{n}","version":"{v}"}}"#),
                &format!("{n} {v} from {name}\n"),
            );
        }
        ok(&[
            "repo",
            "index",
            "-q",
            s(&dir),
            "-k",
            s(&w.join(format!("{name}.key"))),
        ]);
        (dir, w.join(format!("{name}.pub")))
    };
    let (main_dir, main_pub) = make("main", &[("hello", "1.0"), ("tool", "1.0")]);
    let (other_dir, other_pub) = make(
        "other",
        &[("hello", "9.9"), ("tool", "2.0"), ("extra", "1.0")],
    );
    let www = w.join("www");
    fs::create_dir_all(&www).unwrap();
    std::os::unix::fs::symlink(&main_dir, www.join("main")).unwrap();
    std::os::unix::fs::symlink(&other_dir, www.join("other")).unwrap();
    let nginx = Nginx::serve(&www);
    let r = root(w, "root");
    let url = |n: &str| format!("{}/{n}", nginx.url());
    ok(&[
        "repo",
        "add",
        "-q",
        "main",
        &url("main"),
        "-k",
        s(&main_pub),
        "-r",
        s(&r),
        "--priority",
        "10",
    ]);
    ok(&["install", "-q", "hello", "-r", s(&r)]);
    assert!(state(&r).contains("hello-1.0.hpkg"));
    // The second repository arrives (lower priority, another key).
    ok(&[
        "repo",
        "add",
        "-q",
        "other",
        &url("other"),
        "-k",
        s(&other_pub),
        "-r",
        s(&r),
    ]);
    let o = exos(&["upgrade", "-r", s(&r)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("Nothing to do"),
        "{}",
        text(&o.stdout)
    );
    let said = text(&o.stderr);
    assert!(
        said.contains("hello 9.9 is offered by repository other")
            && said.contains("came from repository main")
            && said.contains("exos install other/hello"),
        "{said}"
    );
    assert!(state(&r).contains("hello-1.0.hpkg"));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["upgrade", "--json", "--dry-run", "-r", s(&r)])).unwrap();
    assert!(json["plan"]["notes"][0]
        .as_str()
        .unwrap()
        .contains("other/hello"));
    // A package not installed yet: from the higher-priority repository
    // (main 1.0 over other 2.0); one only `other` offers comes from there.
    let o = ok(&["install", "tool", "extra", "-r", s(&r)]);
    assert!(
        o.contains("install   tool 1.0  (from main)")
            && o.contains("install   extra 1.0  (from other)"),
        "{o}"
    );
    let before_switch = state(&r);
    // On request: switched, and upgrades follow the new origin.
    let o = ok(&["install", "other/hello", "-r", s(&r)]);
    assert!(
        o.contains("upgrade   hello 1.0 -> 9.9  (from other)"),
        "{o}"
    );
    assert!(state(&r).contains("hello-9.9.hpkg"));
    let o = ok(&["install", "--from", "main", "tool", "-r", s(&r)]);
    assert!(o.contains("Nothing to do"), "{o}");
    // A rollback brings back main's hello, and with it main as its origin.
    ok(&["rollback", "-q", "-r", s(&r)]);
    assert_eq!(
        state(&r)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        before_switch
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
    );
    let o = exos(&["upgrade", "-r", s(&r)]);
    assert!(
        text(&o.stderr).contains("came from repository main"),
        "{}",
        text(&o.stderr)
    );
    // `main` removed and added again with another key: another origin.
    // (Another publisher behind the same name and URL.)
    ok(&["repo", "remove", "-q", "main", "-r", s(&r)]);
    let (rekeyed_dir, rekeyed_pub) = make("rekeyed", &[("hello", "2.0")]);
    fs::remove_file(www.join("main")).unwrap();
    std::os::unix::fs::symlink(&rekeyed_dir, www.join("main")).unwrap();
    ok(&[
        "repo",
        "add",
        "-q",
        "main",
        &url("main"),
        "-k",
        s(&rekeyed_pub),
        "-r",
        s(&r),
    ]);
    let o = exos(&["upgrade", "-r", s(&r)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("hello 2.0 is offered by repository main, but the installed hello came from repository main with another root key"),
        "{}",
        text(&o.stderr)
    );
    assert!(state(&r).contains("hello-1.0.hpkg"));
}

/// What `exos repo index` publishes is readable by others as any new file
/// would be (0666 less the umask: 0644, or 0640 under umask 027) — a stock
/// nginx, its workers running as www-data, serves it — while secret keys
/// stay 0600. Before, every document was 0600 (a temporary file's mode)
/// and such an nginx answered 403.
#[test]
fn published_files_get_the_mode_any_new_file_gets_and_secret_keys_stay_private() {
    if !nginx_available() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let dir = w.join("pub");
    ok(&["key", "generate", "repo", "-d", s(w), "-q"]);
    package(w, &dir, r#"{"name":"tool","version":"1"}"#, "tool 1\n");
    package(w, &dir, r#"{"name":"tool","version":"2"}"#, "tool 2\n");
    let index = |umask: &str| {
        let o = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "umask {umask} && exec {} repo index -q {} -k {} --deltas 1",
                    env!("CARGO_BIN_EXE_exos"),
                    s(&dir),
                    s(&w.join("repo.key"))
                ),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let published = |want: u32| {
        for f in fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".hpkg") || p.is_dir() {
                continue; // built by `exos build`, not by the index
            }
            assert_eq!(mode(&p), want, "{name}");
        }
    };
    index("022");
    for f in [
        "root.json",
        "index.json",
        "timestamp.json",
        "index.json.minisig",
        "repo",
        "repo.info",
        "repo.sha256",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    assert!(fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "delta")));
    published(0o644);
    assert_eq!(mode(&w.join("repo.key")), 0o600);
    // Served by an nginx whose workers are www-data: every file answers.
    let nginx = Nginx::serve(&dir);
    for f in [
        "root.json",
        "index.json",
        "timestamp.json",
        "timestamp.json.minisig",
        "tool-1.hpkg.blocks",
        "repo.info",
    ] {
        let o = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}/{f}", nginx.url()),
            ])
            .output()
            .unwrap();
        assert_eq!(text(&o.stdout), "200", "{f}");
    }
    let r = root(w, "client");
    add_repo(s(&r), &nginx.url(), s(&w.join("repo.pub")));
    ok(&["install", "-q", "tool", "-r", s(&r)]);
    // The umask is respected: 0640 under 027.
    package(w, &dir, r#"{"name":"tool","version":"3"}"#, "tool 3\n");
    index("027");
    for f in [
        "root.json",
        "index.json",
        "timestamp.json",
        "index.json.minisig",
        "repo.info",
    ] {
        let m = mode(&dir.join(f));
        assert!(m == 0o640 || f == "root.json", "{f}: {m:o}");
    }
}

/// A hand-written `repo.info` (name, summary, priority, base URL,
/// identifier, other settings) survives `exos repo index`; an option
/// given changes only its own field; a malformed one is refused naming the
/// line.
#[test]
fn repo_index_keeps_a_hand_written_repo_info() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let dir = w.join("pub");
    ok(&["key", "generate", "repo", "-d", s(w), "-q"]);
    package(w, &dir, r#"{"name":"tool","version":"1"}"#, "tool 1\n");
    let written = "name MyPorts\nvendor EXOS\nsummary \"My own ports\"\npriority 7\nbaseurl https://example.org/myports\nidentifier tag:example.org,2026:myports\narchitecture x86_64\nlicense \"MIT\"\n";
    fs::write(dir.join("repo.info"), written).unwrap();
    let key = w.join("repo.key");
    ok(&["repo", "index", "-q", s(&dir), "-k", s(&key)]);
    let now = fs::read_to_string(dir.join("repo.info")).unwrap();
    for line in [
        "name MyPorts",
        "summary \"My own ports\"",
        "priority 7",
        "baseurl https://example.org/myports",
        "identifier tag:example.org,2026:myports",
        "license \"MIT\"",
    ] {
        assert!(now.contains(line), "{line} lost:\n{now}");
    }
    // Haiku's index carries the same.
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--json", s(&dir.join("repo"))])).unwrap();
    assert_eq!(info["name"], "MyPorts");
    assert_eq!(info["summary"], "My own ports");
    assert_eq!(info["priority"], 7);
    // An option changes its own field only.
    ok(&[
        "repo",
        "index",
        "-q",
        s(&dir),
        "-k",
        s(&key),
        "--summary",
        "Changed",
    ]);
    let now = fs::read_to_string(dir.join("repo.info")).unwrap();
    assert!(
        now.contains("summary Changed")
            && now.contains("name MyPorts")
            && now.contains("priority 7"),
        "{now}"
    );
    // Malformed: refused, naming the file and line.
    fs::write(dir.join("repo.info"), "name ok\nsummary \"unterminated\n").unwrap();
    fails(
        &["repo", "index", s(&dir), "-k", s(&key)],
        "repo.info:2: an unterminated quote",
    );
}

/// Makes the root's kept metadata of `main` look `days` old.
fn age_metadata(root: &Path, days: u32) {
    let kept = root.join("system/state/repos/main/timestamp.json");
    let st = Command::new("touch")
        .args(["-d", &format!("{days} days ago"), s(&kept)])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn old_metadata_is_refreshed_stale_metadata_is_named_and_the_store_serves_offline() {
    if !nginx_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let repo = publish(w);
    let nginx = Nginx::serve(&repo.dir);
    let r = root(w, "root");
    add_repo(s(&r), &nginx.url(), s(&repo.public));
    ok(&["install", "-q", "app", "-r", s(&r)]);
    let publish_lib = |version: &str| {
        package(
            w,
            &repo.dir,
            &format!(
                r#"{{"name":"lib","version":"{version}","provides":[{{"api":"libapi","version":"1.0"}}]}}"#
            ),
            "lib\n",
        );
        ok(&["repo", "index", "-q", s(&repo.dir), "-k", s(&repo.key)]);
    };
    // Metadata younger than the maximum age (a day) is used as it is, as
    // apt uses its lists until `apt update`…
    publish_lib("1.1");
    let out = ok(&["upgrade", "-r", s(&r)]);
    assert!(out.contains("Nothing to do"), "{out}");
    assert!(!state(&r).contains("lib-1.1"));
    // …older metadata is refreshed first, as flatpak and dnf do.
    age_metadata(&r, 2);
    let o = exos(&["upgrade", "-r", s(&r)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("refreshed main's metadata (a new index)"),
        "{}",
        text(&o.stderr)
    );
    assert!(state(&r).contains("lib-1.1"), "{}", state(&r));
    // A maximum age of 0 (or --refresh) refreshes whatever the age.
    publish_lib("1.2");
    let o = exos_env(&["upgrade", "-r", s(&r)], &[("EXOS_METADATA_MAX_AGE", "0")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(state(&r).contains("lib-1.2"), "{}", state(&r));
    publish_lib("1.3");
    ok(&["upgrade", "-q", "--refresh", "-r", s(&r)]);
    assert!(state(&r).contains("lib-1.3"), "{}", state(&r));
    // A bad maximum age is said, and the default used.
    let o = exos_env(
        &["upgrade", "-r", s(&r)],
        &[("EXOS_METADATA_MAX_AGE", "soon")],
    );
    assert!(o.status.success() && text(&o.stderr).contains("EXOS_METADATA_MAX_AGE"));

    // The server is gone and the metadata is old: "Nothing to do" says
    // the metadata is stale instead of hiding it.
    drop(nginx);
    age_metadata(&r, 3);
    let o = exos(&["upgrade", "-r", s(&r)]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(err.contains("could not refresh main's metadata"), "{err}");
    assert!(
        out.contains("Nothing to do") && out.contains("main's metadata is stale"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["upgrade", "--json", "-r", s(&r)])).unwrap();
    assert_eq!(json["metadata"]["repositories"], 1);
    assert_eq!(json["metadata"]["stale"][0]["repository"], "main");

    // Offline: what an earlier state had is taken from the store.
    ok(&["remove", "-q", "app", "-r", s(&r)]);
    assert!(!state(&r).contains("app-2.0"));
    let o = exos(&["install", "app", "-r", s(&r)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("1 package taken from the root's store"),
        "{}",
        text(&o.stderr)
    );
    assert!(state(&r).contains("app-2.0"));
    ok(&["check", "-q", "-r", s(&r)]);

    // A root with no repositories says so instead of a bare "Nothing to do".
    let bare = root(w, "bare");
    let out = ok(&["upgrade", "-r", s(&bare)]);
    assert!(out.contains("No repositories are configured"), "{out}");
}
