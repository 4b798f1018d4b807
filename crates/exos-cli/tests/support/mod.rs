//! Helpers shared by the `exos` integration tests.
#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the `exos` binary under test.
pub(crate) fn exos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(args)
        .output()
        .expect("run exos")
}

/// Runs `exos` with extra environment variables.
#[allow(dead_code)]
pub(crate) fn exos_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run exos")
}

/// Runs `exos` in `dir`.
pub(crate) fn exos_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exos"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run exos")
}

/// Runs `exos`, fails the test unless it succeeds, returns its stdout.
pub(crate) fn ok(args: &[&str]) -> String {
    let o = exos(args);
    assert!(
        o.status.success(),
        "exos {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `../shared/fixtures` beside the repository (or `$EXOS_FIXTURES`).
pub(crate) fn fixtures_dir() -> PathBuf {
    if let Ok(p) = std::env::var("EXOS_FIXTURES") {
        return PathBuf::from(p);
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    assert!(
        d.is_dir(),
        "fixtures not found at {} (set EXOS_FIXTURES)",
        d.display()
    );
    d
}

/// Whether FUSE tests can run: without /dev/fuse they say so loudly and
/// pass, unless CI=true, where they fail.
pub(crate) fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("/dev/fuse is missing, and CI=true: FUSE tests must not be skipped");
    }
    eprintln!("\n!!!!!!!! /dev/fuse is missing: exos mount tests NOT RUN !!!!!!!!\n");
    false
}

/// Is `p` a mount point (per /proc/self/mountinfo)?
pub(crate) fn mounted(p: &Path) -> bool {
    exos_root::mountinfo::is_mounted(p)
}

/// Polls `f` for up to ten seconds.
pub(crate) fn wait_until(f: impl Fn() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The manifest with the fields `exos build` requires filled in when absent.
pub(crate) fn complete(manifest: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(manifest).unwrap();
    for (key, value) in [
        ("summary", "A test package"),
        ("license", "MIT"),
        ("copyright", "2026 The EXOS authors"),
    ] {
        if v.get(key).is_none() {
            v[key] = value.into();
        }
    }
    v.to_string()
}

/// Builds a package with `exos build` from a manifest and one file
/// (`share/<name>` holding `content`) into `dir`, named NAME-VERSION.hpkg.
pub(crate) fn package(work: &Path, dir: &Path, manifest: &str, content: &str) -> PathBuf {
    let v: serde_json::Value = serde_json::from_str(manifest).unwrap();
    let id = format!(
        "{}-{}",
        v["name"].as_str().unwrap(),
        v["version"].as_str().unwrap()
    );
    let src = work.join(format!("src-{id}"));
    fs::create_dir_all(src.join("share")).unwrap();
    fs::write(src.join("manifest.json"), complete(manifest)).unwrap();
    fs::write(src.join("share").join(v["name"].as_str().unwrap()), content).unwrap();
    fs::create_dir_all(dir).unwrap();
    let out = dir.join(format!("{id}.hpkg"));
    ok(&["build", "-q", s(&src), "-o", s(&out)]);
    out
}

/// Writes a hostile case of crates/exos-hostile into `dir`.
pub(crate) fn hostile(dir: &Path, name: &str) -> PathBuf {
    let case = exos_hostile::cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no hostile case {name}"));
    let p = dir.join(case.file_name());
    fs::write(&p, &case.bytes).unwrap();
    p
}

/// Whether an external program a test needs is installed: without it the
/// test says so loudly and passes, unless CI=true, where it fails
/// (`.ci/run` installs it).
pub(crate) fn tool_available(path: &str, what: &str) -> bool {
    let found = Path::new(path).exists();
    if !found {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{path} is missing, and CI=true: {what} must not be skipped"
        );
        eprintln!("\n!!!!!!!! {path} is not installed: {what} NOT RUN !!!!!!!!\n");
    }
    found
}

/// nginx serving `dir` on a free loopback port; stopped on drop.
pub(crate) struct Nginx {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _conf: tempfile::TempDir,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn nginx_available() -> bool {
    tool_available("/usr/sbin/nginx", "tests over HTTP")
}

/// The user nginx's workers run as, as Debian's nginx runs them.
pub(crate) const NGINX_USER: &str = "www-data";

/// Lets others through every directory on the way to `dir` that a test
/// made (`tempfile`'s are 0700), as a publisher's web root would: nginx's
/// workers, not root, read what is served.
fn open_the_way(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir();
    for a in dir.ancestors() {
        if !a.starts_with(&tmp) || a == tmp {
            continue;
        }
        if let Ok(m) = fs::metadata(a) {
            let mode = m.permissions().mode();
            if a.is_dir() && mode & 0o001 == 0 {
                let _ = fs::set_permissions(a, fs::Permissions::from_mode(mode | 0o011));
            }
        }
    }
}

impl Nginx {
    /// nginx serving `dir`, its workers running as [`NGINX_USER`]: what it
    /// serves must be readable by others (a file only root may read gets a
    /// 403, as from Debian's nginx).
    pub(crate) fn serve(dir: &Path) -> Nginx {
        open_the_way(dir);
        let conf = tempfile::tempdir().unwrap();
        open_the_way(conf.path());
        let port = free_port();
        let log = conf.path().join("access.log");
        let text = format!(
            "daemon off;\nuser {NGINX_USER};\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {log};\n  client_body_temp_path {p};\n  proxy_temp_path {p};\n  fastcgi_temp_path {p};\n  uwsgi_temp_path {p};\n  scgi_temp_path {p};\n\
             server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
            p = conf.path().display(),
            log = log.display(),
            root = dir.display(),
        );
        fs::write(conf.path().join("nginx.conf"), text).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .args([
                "-c",
                s(&conf.path().join("nginx.conf")),
                "-p",
                s(conf.path()),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_until(|| TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "nginx did not start"
        );
        Nginx {
            child,
            port,
            log,
            _conf: conf,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its workers too (SIGKILL orphans them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Random bytes (xorshift), incompressible.
pub(crate) fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `exos ARGS` as the real user `nobody`.
pub(crate) fn exos_as_nobody(args: &[&str]) -> Output {
    as_nobody(env!("CARGO_BIN_EXE_exos"), args)
}

/// Runs `PROGRAM ARGS` as the real user `nobody` (from `/`).
pub(crate) fn as_nobody(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(program)
        .args(args)
        .current_dir("/")
        .output()
        .unwrap()
}

/// `exos init ROOT`, then `exos repo add main URL -k PUBLIC -r ROOT`.
pub(crate) fn root_with_repo(root: &Path, url: &str, public: &Path) {
    ok(&["init", "-q", s(root)]);
    ok(&[
        "repo",
        "add",
        "-q",
        "main",
        url,
        "-k",
        s(public),
        "-r",
        s(root),
    ]);
}
