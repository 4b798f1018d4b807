//! The repository library on its own: publishing a directory, a client
//! adding it, refreshing, offering and downloading, and the attacks its
//! metadata is built against (rollback, freeze, mix-and-match), each
//! refused with the typed error that names the file.

use std::fs;
use std::path::{Path, PathBuf};

use exos_repo::publish::{self, HaikuInfo, Lifetimes};
use exos_repo::{Client, Fetched, Location, NetworkFailure, RepoConfig, RepoError, Transport};
use exos_trust::SecretKey;

/// Builds a package from a manifest (plus one file of `payload`) into `dir`.
fn package(dir: &Path, manifest: &str, payload: &[u8]) -> PathBuf {
    let m = exos_manifest::Manifest::parse(manifest.as_bytes(), "test").unwrap();
    let src = dir.join(format!(".src-{}-{}", m.name, m.version));
    fs::create_dir_all(src.join("share")).unwrap();
    fs::write(src.join("manifest.json"), manifest).unwrap();
    fs::write(src.join("share").join(&m.name), payload).unwrap();
    let out = dir.join(format!("{}-{}.hpkg", m.name, m.version));
    exos_hpkg::build_from_dir(
        &src,
        &out,
        &m.to_package_info(),
        exos_hpkg::BuildOptions::default(),
        &mut |_| {},
        &mut |_| {},
    )
    .unwrap();
    fs::remove_dir_all(&src).unwrap();
    out
}

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    root: PathBuf,
    key: SecretKey,
}

/// A published repository holding hello 1.0, and an empty client root.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    fs::create_dir(&repo).unwrap();
    package(
        &repo,
        r#"{"name":"hello","version":"1.0"}"#,
        &vec![b'h'; 300_000],
    );
    let key = SecretKey::generate().unwrap();
    index(&repo, &key, Lifetimes::default());
    let root = tmp.path().join("root");
    fs::create_dir_all(exos_root::Layout::new(&root).state_dir()).unwrap();
    Fixture {
        _tmp: tmp,
        repo,
        root,
        key,
    }
}

fn index(repo: &Path, key: &SecretKey, life: Lifetimes) -> publish::Published {
    publish::index(repo, key, life, &HaikuInfo::default(), 0).unwrap()
}

#[test]
fn a_published_directory_is_added_refreshed_offered_and_downloaded() {
    let f = fixture();
    let client = Client::new(&f.root);
    let added = client
        .add("main", f.repo.to_str().unwrap(), &f.key.public(), 0)
        .unwrap();
    assert_eq!((added.packages, added.index_version), (1, 1));
    let offered = client.offered().unwrap();
    assert_eq!(offered.len(), 1);
    let hello = &offered[0];
    assert_eq!(hello.manifest.name, "hello");
    assert_eq!(hello.origin.repository, "main");
    let (path, digest, fetched) = client
        .download_with_deltas(hello, &|_| None, &|_| {})
        .unwrap();
    assert!(matches!(fetched, Fetched::Whole { delta_failed: None }));
    assert_eq!(digest.sha256, hello.sha256());
    assert_eq!(exos_root::Sha256::of_file(&path).unwrap(), hello.sha256());
    // A second download is served from the cache, checked again.
    let (_, _, fetched) = client
        .download_with_deltas(hello, &|_| None, &|_| {})
        .unwrap();
    assert!(matches!(fetched, Fetched::Cached));
    // Refreshing an unchanged repository fetches no new index.
    let again = client.refresh("main").unwrap();
    assert!(!again.index_changed);
}

#[test]
fn a_repository_name_is_unique_and_an_unknown_one_is_named() {
    let f = fixture();
    let client = Client::new(&f.root);
    client
        .add("main", f.repo.to_str().unwrap(), &f.key.public(), 0)
        .unwrap();
    let twice = client
        .add("main", f.repo.to_str().unwrap(), &f.key.public(), 0)
        .unwrap_err();
    assert!(
        matches!(twice, RepoError::RepositoryExists(ref n) if n == "main"),
        "{twice}"
    );
    let unknown = client.refresh("other").unwrap_err();
    assert!(
        matches!(unknown, RepoError::UnknownRepository(ref n) if n == "other"),
        "{unknown}"
    );
    let bad_name = client
        .add("../x", f.repo.to_str().unwrap(), &f.key.public(), 0)
        .unwrap_err();
    assert!(matches!(bad_name, RepoError::Invalid { .. }), "{bad_name}");
}

#[test]
fn a_repository_signed_by_another_key_is_refused() {
    let f = fixture();
    let other = SecretKey::generate().unwrap();
    let err = Client::new(&f.root)
        .add("main", f.repo.to_str().unwrap(), &other.public(), 0)
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Untrusted { ref file, .. } if file.ends_with("root.json")),
        "{err}"
    );
    assert!(Client::new(&f.root)
        .config()
        .unwrap()
        .repositories
        .is_empty());
}

#[test]
fn an_older_timestamp_is_a_rollback() {
    let f = fixture();
    let client = Client::new(&f.root);
    let old = fs::read(f.repo.join("timestamp.json")).unwrap();
    let old_sig = fs::read(f.repo.join("timestamp.json.minisig")).unwrap();
    publish::write_timestamp(&f.repo, &f.key, Lifetimes::default()).unwrap();
    client
        .add("main", f.repo.to_str().unwrap(), &f.key.public(), 0)
        .unwrap();
    // The server goes back to the first timestamp, validly signed.
    fs::write(f.repo.join("timestamp.json"), old).unwrap();
    fs::write(f.repo.join("timestamp.json.minisig"), old_sig).unwrap();
    let err = client.refresh("main").unwrap_err();
    match &err {
        RepoError::Untrusted { file, rule } => {
            assert!(file.ends_with("timestamp.json"), "{err}");
            assert!(rule.contains("rollback"), "{err}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expired_metadata_is_refused_by_name() {
    let f = fixture();
    let stale = Lifetimes {
        root_days: 365,
        index_days: 30,
        timestamp_days: 0,
    };
    publish::write_timestamp(&f.repo, &f.key, stale).unwrap();
    let err = Client::new(&f.root)
        .add("main", f.repo.to_str().unwrap(), &f.key.public(), 0)
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Expired { ref file, .. } if file.ends_with("timestamp.json")),
        "{err:?}"
    );
}

#[test]
fn an_index_the_timestamp_does_not_name_is_mix_and_match() {
    let f = fixture();
    let client = Client::new(&f.root);
    client
        .add("main", f.repo.to_str().unwrap(), &f.key.public(), 0)
        .unwrap();
    // Republish (index 2, timestamp 2), then serve the new timestamp with
    // the old index: every file is validly signed, but they do not belong
    // together.
    let old_index = fs::read(f.repo.join("index.json")).unwrap();
    let old_sig = fs::read(f.repo.join("index.json.minisig")).unwrap();
    package(&f.repo, r#"{"name":"more","version":"1"}"#, b"more");
    index(&f.repo, &f.key, Lifetimes::default());
    fs::write(f.repo.join("index.json"), old_index).unwrap();
    fs::write(f.repo.join("index.json.minisig"), old_sig).unwrap();
    let err = client.refresh("main").unwrap_err();
    assert!(
        matches!(&err, RepoError::Untrusted { file, rule } if file.ends_with("index.json") && rule.contains("not the index the timestamp names")),
        "{err:?}"
    );
}

#[test]
fn a_substituted_package_is_refused_and_nothing_is_cached() {
    let f = fixture();
    let client = Client::new(&f.root);
    client
        .add("main", f.repo.to_str().unwrap(), &f.key.public(), 0)
        .unwrap();
    let hello = client.offered().unwrap().remove(0);
    // Same size, other bytes.
    let path = f.repo.join(hello.file());
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let err = client
        .download_with_deltas(&hello, &|_| None, &|_| {})
        .unwrap_err();
    assert!(matches!(err, RepoError::Untrusted { .. }), "{err:?}");
    assert!(!client.cached(&hello.sha256()).exists());
}

#[test]
fn a_never_refreshed_repository_offers_nothing_and_says_so() {
    let f = fixture();
    let client = Client::new(&f.root);
    client
        .add("main", f.repo.to_str().unwrap(), &f.key.public(), 0)
        .unwrap();
    let state = exos_root::Layout::new(&f.root).state_dir();
    fs::remove_file(state.join("repos/main/timestamp.json")).unwrap();
    let err = client.offered().unwrap_err();
    assert!(
        matches!(err, RepoError::NeverRefreshed(ref n) if n == "main"),
        "{err:?}"
    );
}

#[test]
fn repos_json_is_checked_name_by_name() {
    let key = SecretKey::generate().unwrap().public().to_base64();
    let entry =
        |name: &str, url: &str| format!(r#"{{"name":"{name}","url":"{url}","root_key":"{key}"}}"#);
    let doc = |entries: &[String]| format!(r#"{{"repositories":[{}]}}"#, entries.join(","));
    let good = doc(&[entry("a", "/srv/a"), entry("b", "https://example.org/b")]);
    assert_eq!(
        RepoConfig::parse(good.as_bytes(), "repos.json")
            .unwrap()
            .repositories
            .len(),
        2
    );
    let cases = [
        (doc(&[entry("a", "/x"), entry("a", "/y")]), "listed twice"),
        (doc(&[entry("a", "ftp://x")]), "unsupported URL"),
        (doc(&[entry(".hidden", "/x")]), "repository name"),
    ];
    for (text, rule) in cases {
        let err = RepoConfig::parse(text.as_bytes(), "repos.json").unwrap_err();
        assert!(
            matches!(&err, RepoError::Invalid { file, rule: r } if file == "repos.json" && r.contains(rule)),
            "{err:?}"
        );
    }
    let err = RepoConfig::parse(b"{not json", "repos.json").unwrap_err();
    assert!(
        matches!(err, RepoError::Json { ref file, .. } if file == "repos.json"),
        "{err:?}"
    );
}

#[test]
fn locations_and_their_file_names() {
    assert_eq!(
        Location::parse("file:///srv/repo").unwrap(),
        Location::Dir(PathBuf::from("/srv/repo"))
    );
    let http = Location::parse("https://example.org/repo/").unwrap();
    assert_eq!(http, Location::Http("https://example.org/repo".into()));
    // An epoch's colon and a '+' are percent-encoded in URLs.
    assert_eq!(
        http.describe("a_1%3a2+b.hpkg"),
        "https://example.org/repo/a_1%253a2%2Bb.hpkg"
    );
    assert!(matches!(
        Location::parse("ftp://example.org").unwrap_err(),
        RepoError::Invalid { .. }
    ));
}

#[test]
fn a_download_resumes_from_what_is_there_and_stops_at_the_size_given() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(tmp.path().join("f"), &data).unwrap();
    let t = Transport::new(
        Location::Dir(tmp.path().to_path_buf()),
        exos_repo::Timeouts::default(),
    );
    let dest = tmp.path().join("out");
    fs::write(&dest, &data[..50_000]).unwrap();
    let seen = std::cell::Cell::new(0);
    let digest = t
        .download("f", data.len() as u64, &dest, &|n| seen.set(n))
        .unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    assert_eq!(digest.sha256, exos_root::Sha256::of_bytes(&data));
    assert_eq!(seen.get(), data.len() as u64);
    // A file larger than the index says is cut off and removed.
    let short = tmp.path().join("short");
    let err = t.download("f", 1000, &short, &|_| {}).unwrap_err();
    assert!(
        matches!(err, RepoError::Invalid { ref rule, .. } if rule.contains("larger than")),
        "{err:?}"
    );
    assert!(!short.exists());
    // fetch() bounds what it reads.
    let err = t.fetch("f", 10).unwrap_err();
    assert!(matches!(err, RepoError::Invalid { .. }), "{err:?}");
    assert_eq!(t.fetch("missing", 10).unwrap(), None);
}

#[test]
fn network_failures_say_whether_running_again_resumes() {
    let cut = NetworkFailure::EndedEarly { got: 1, size: 2 };
    assert!(cut.resumable());
    assert!(!NetworkFailure::Status(500).resumable());
    assert!(!NetworkFailure::NotFound.resumable());
    let e = RepoError::network("http://x/f", cut);
    assert_eq!(
        e.to_string(),
        "http://x/f: the connection ended after 1 of 2 bytes"
    );
}
