//! Parses arbitrary bytes as each repository document (root.json,
//! index.json, timestamp.json), a root's repos.json and a publisher's
//! repo.info, and checks them against a signature made of
//! the rest of the input: no panic, no unbounded allocation, whatever the
//! bytes.
#![no_main]

use exos_repo::metadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = metadata::parse_root(data, "fuzz");
    if let Ok(idx) = metadata::parse_index(data, "fuzz") {
        // Every manifest an index carries goes through the one parser.
        for p in &idx.packages {
            let _ = exos_manifest::Manifest::parse(p.manifest.to_string().as_bytes(), "fuzz");
        }
    }
    let _ = metadata::parse_timestamp(data, "fuzz");
    // The client's own list of repositories (system/state/repos.json).
    let _ = exos_repo::RepoConfig::parse(data, "fuzz");
    // A publisher's hand-written repo.info, which `exos repo index` keeps.
    let _ = exos_repo::repo_info::RepoInfoText::parse(data, std::path::Path::new("fuzz.info"));
    // The first byte splits the input into a document and its signature.
    if let Some((&split, rest)) = data.split_first() {
        let at = (split as usize * rest.len()) / 255;
        let (doc, sig) = rest.split_at(at.min(rest.len()));
        let keys = ["RWTrvJ5nUVefS8GDm+cxlrfgprg7bcqmnYmQwdgv1R7MqLAUlZr3Y7la".to_string()];
        let _ = metadata::check_signature(doc, sig, &keys, "fuzz");
    }
});
