//! Loads arbitrary bytes as a JSON-lines index the way `exos resolve -a
//! index.jsonl` does (parsed and interned on every core into the
//! resolver's pool), then resolves against it: no panic, no hang, and an
//! index that loads resolves to a consistent answer or an explanation.
#![no_main]

use exos_resolve::{resolve, Origin, Request, UniverseBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut b = UniverseBuilder::new();
    let origin = Origin::Available {
        source: "fuzz".into(),
    };
    if b.add_json_lines(data, 0, "fuzz", origin, 0).is_err() {
        return;
    }
    let universe = b.finish();
    // Ask for every name a line gives (the first few), and upgrade all.
    let names: Vec<String> = data
        .split(|&c| c == b'\n')
        .filter_map(|l| exos_manifest::Manifest::parse(l, "fuzz").ok())
        .map(|m| m.name)
        .take(4)
        .collect();
    for n in &names {
        if let Ok(d) = exos_manifest::Dependency::parse(n) {
            let _ = resolve(&universe, &Request::Install(vec![d]));
        }
    }
    let _ = resolve(&universe, &Request::Upgrade(Vec::new()));
});
