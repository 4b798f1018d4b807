//! manifest.json against its schema and rules: what parses, what is
//! refused and with which message, and that rendering gives back the same
//! manifest.

use exos_manifest::{Manifest, VersionRange, SCHEMA};

fn parse(json: &str) -> Result<Manifest, String> {
    Manifest::parse(json.as_bytes(), "pkg/manifest.json").map_err(|e| e.to_string())
}

const FULL: &str = r#"{
  "name": "hello", "version": "1.2.0-1", "summary": "says hello", "license": "MIT",
  "architecture": "x86_64",
  "provides": ["cmd:hello = 1.2", {"api": "libhello", "version": "1.2", "compatible": "1.0"}],
  "requires": [{"api": "libgreet", "version": ">=1.0, <2"}, "core.runtime ~2.1",
               {"any": [{"api": "pager"}, "less >= 500"]}],
  "uses": ["system.cuda", {"api": "core.abi", "version": "^1"}],
  "conflicts": [{"api": "oldhello", "version": "<1.0"}],
  "replaces": ["hello_legacy"]
}"#;

#[test]
fn full_manifest_parses() {
    let m = parse(FULL).unwrap();
    assert_eq!(m.name, "hello");
    assert_eq!(m.version.to_string(), "1.2.0-1");
    // The package provides its own name, first.
    assert_eq!(m.provides[0].api, "hello");
    assert_eq!(m.provides.len(), 3);
    assert_eq!(
        m.provides[2].compatible.as_ref().unwrap().to_string(),
        "1.0"
    );
    assert_eq!(m.requires.len(), 3);
    assert_eq!(m.requires[0].to_string(), "libgreet >=1.0, <2");
    assert_eq!(m.requires[1].to_string(), "core.runtime ~2.1");
    assert_eq!(m.requires[2].to_string(), "pager | less >=500");
    assert_eq!(m.uses.len(), 2);
    assert_eq!(m.conflicts[0].to_string(), "oldhello <1.0");
    assert_eq!(m.replaces, ["hello_legacy"]);
}

#[test]
fn canonical_json_round_trips() {
    let m = parse(FULL).unwrap();
    let text = serde_json::to_string_pretty(&m.to_json()).unwrap();
    assert_eq!(parse(&text).unwrap(), m);
}

#[test]
fn haiku_attributes_carry_the_dependencies() {
    let m = parse(FULL).unwrap();
    let info = m.to_package_info();
    let reqs: Vec<String> = info.requires.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        reqs,
        [
            "libgreet>=1.0",
            "libgreet<2",
            "core.runtime>=2.1",
            "core.runtime<2.2",
            "pager",
            "system.cuda",
            "core.abi>=1",
            "core.abi<2"
        ]
    );
    let provides: Vec<String> = info
        .provides
        .iter()
        .map(|p| {
            format!(
                "{} {:?} {:?}",
                p.name,
                p.version.as_ref().map(|v| v.to_string()),
                p.compatible.as_ref().map(|v| v.to_string())
            )
        })
        .collect();
    assert_eq!(provides[2], "libhello Some(\"1.2\") Some(\"1.0\")");
    assert_eq!(info.conflicts[0].to_string(), "oldhello<1.0");
    assert_eq!(info.replaces, ["hello_legacy"]);
    // And back: what Haiku sees gives the same provides, requirements as
    // single-operator ranges.
    let back = Manifest::from_package_info(&info);
    assert_eq!(back.provides, m.provides);
    assert_eq!(back.requires[0].to_string(), "libgreet >=1.0");
    assert_eq!(back.requires[1].to_string(), "libgreet <2");
}

#[test]
fn errors_name_the_file_and_key() {
    let cases = [
        (
            r#"{"name": "a"}"#,
            "pkg/manifest.json: missing field `version`",
        ),
        (
            r#"{"name": "a", "version": 1}"#,
            "key \"version\": invalid type: integer `1`, expected a string",
        ),
        (
            r#"{"name": "a", "version": "1", "colour": "red"}"#,
            "key \"colour\": unknown field `colour`",
        ),
        (
            r#"{"name": "a b", "version": "1"}"#,
            "key \"name\": name \"a b\" contains the forbidden character ' '",
        ),
        (
            r#"{"name": "a", "version": "1..2"}"#,
            "key \"version\": invalid version",
        ),
        (
            r#"{"name": "a", "version": "1", "requires": {"api": "x"}}"#,
            "key \"requires\": invalid type: map, expected a sequence",
        ),
        (
            r#"{"name": "a", "version": "1", "requires": ["x", {"api": "y", "version": ">>2"}]}"#,
            "key \"requires[1].version\": unknown operator",
        ),
        (
            r#"{"name": "a", "version": "1", "requires": [{"api": "y", "range": "2"}]}"#,
            "key \"requires[0]\": unknown field `range`",
        ),
        (
            r#"{"name": "a", "version": "1", "requires": [{"any": []}]}"#,
            "key \"requires[0].any\": needs at least one alternative",
        ),
        (
            r#"{"name": "a", "version": "1", "requires": [{"any": [{"api": 3}]}]}"#,
            "key \"requires[0].any[0].api\": invalid type: integer `3`, expected a string",
        ),
        (
            r#"{"name": "a", "version": "1", "provides": [{"api": "x", "version": "1", "compatible": "2"}]}"#,
            "key \"provides[0]\": compatible version 2 is newer than the provided version 1",
        ),
        (
            r#"{"name": "a", "version": "1", "provides": [{"api": "x", "compatible": "2"}]}"#,
            "needs a \"version\"",
        ),
        (
            r#"{"name": "a", "version": "1", "uses": [true]}"#,
            "key \"uses[0]\": invalid type: boolean `true`, expected a string or an object",
        ),
        (
            r#"{"name": "a", "version": "1", "architecture": "vax"}"#,
            "key \"architecture\": unknown architecture",
        ),
        (
            r#"{"name": "a", "version": "1", "replaces": ["ok", "b/c"]}"#,
            "key \"replaces[1]\"",
        ),
        (
            r#"["name"]"#,
            "pkg/manifest.json: expected an object, found an array",
        ),
        (r#"{"name": "a", "#, "pkg/manifest.json: invalid JSON"),
    ];
    for (json, want) in cases {
        let err = parse(json).expect_err(json);
        assert!(err.contains(want), "{json}\n  got:  {err}\n  want: {want}");
        assert!(err.starts_with("pkg/manifest.json: "), "{err}");
    }
}

/// Whatever parses round-trips through its canonical JSON; whatever does
/// not gives an error naming the file.
fn same_as_reference(bytes: &[u8]) {
    match Manifest::parse(bytes, "t") {
        Ok(m) => {
            let again = Manifest::parse(m.to_json().to_string().as_bytes(), "t");
            assert_eq!(again.ok(), Some(m), "{}", String::from_utf8_lossy(bytes));
        }
        Err(e) => assert!(e.to_string().starts_with("t"), "{e}"),
    }
}

#[test]
fn edge_cases_parse_or_fail_cleanly() {
    same_as_reference(FULL.as_bytes());
    for variant in [
        r#"{"name":"a","version":"1","summary":null}"#,
        r#"{"name":"a","version":"1","license":""}"#,
        r#"{"name":"a","version":"1","name":"b"}"#,
        r#"{"name":"a\u0062","version":"1"}"#,
        r#"{"name":"a","version":"1","provides":null}"#,
        r#"{"name":"a","version":"1","requires":[{"any":["x"],"api":"y"}]}"#,
        r#"{"name":"a","version":"1","requires":[{"api":"x","compatible":"1"}]}"#,
        r#"{"name":"a","version":"1","provides":[{"any":["x"]}]}"#,
        r#"{"name":"a","version":"1","provides":["x = 2 compat >= 1"]}"#,
        r#"{"name":"a","version":"1","uses":[{"any":["x"]}]}"#,
        r#"{"name":"a","version":"1","requires":[{"api":"x","api":"y"}]}"#,
        r#"{"name":"a","version":"1","architecture":"x86_64","replaces":["b"]}"#,
        // Found by the fuzzer: serde's derived structs take an array of
        // the fields in order; a manifest must be an object.
        r#"["T_,","lame",",",""]"#,
        r#"  ["a","1"]"#,
    ] {
        same_as_reference(variant.as_bytes());
    }
}

#[test]
fn truncated_and_corrupted_manifests_never_panic() {
    let bytes = FULL.as_bytes();
    for n in 0..bytes.len() {
        same_as_reference(&bytes[..n]);
    }
    let mut seed = 0x2545F4914F6CDD1Du64;
    for _ in 0..2000 {
        let mut b = bytes.to_vec();
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % b.len() as u64) as usize;
            // Mostly JSON-significant bytes, so many mutants stay parseable.
            let pool = b"{}[]\",:0123456789abcdexyz<>=~^ nulltrue-.";
            b[i] = pool[((seed >> 32) as usize) % pool.len()];
        }
        same_as_reference(&b);
    }
}

#[test]
fn schema_lists_exactly_the_accepted_keys() {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let props = schema["properties"].as_object().unwrap();
    for key in props.keys() {
        let value = match key.as_str() {
            "name" | "version" => continue,
            "architecture" => "\"x86_64\"".to_string(),
            "provides" | "requires" | "uses" | "conflicts" | "replaces" | "private" => {
                "[]".to_string()
            }
            "essential" => "true".to_string(),
            _ => "\"text\"".to_string(),
        };
        let json = format!(r#"{{"name": "a", "version": "1", "{key}": {value}}}"#);
        parse(&json).unwrap_or_else(|e| panic!("schema key {key} rejected: {e}"));
    }
    // And a key the schema does not have is refused by both.
    assert!(!props.contains_key("colour"));
    assert_eq!(schema["additionalProperties"], false);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["name", "version"]);
}

#[test]
fn example_manifests_in_the_repo_are_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path().join("manifest.json");
        if path.exists() {
            Manifest::load(&path).unwrap();
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn range_display_is_stable() {
    assert_eq!(
        VersionRange::parse(">=1, <2").unwrap().to_string(),
        ">=1, <2"
    );
}

#[test]
fn private_paths_and_command_stay_inside_the_package() {
    let m = parse(r#"{"name": "a", "version": "1", "private": ["lib/", "share/a/x"], "command": "lib/app", "original_version": "1:1.0-1"}"#).unwrap();
    assert_eq!(m.private, ["lib", "share/a/x"]);
    assert_eq!(m.command.as_deref(), Some("lib/app"));
    assert_eq!(m.original_version.as_deref(), Some("1:1.0-1"));
    for bad in [
        r#""private": ["../etc"]"#,
        r#""private": ["/lib"]"#,
        r#""private": ["lib/../.."]"#,
        r#""private": [""]"#,
        r#""command": "bin//x""#,
        r#""command": "./bin/x""#,
    ] {
        let json = format!(r#"{{"name": "a", "version": "1", {bad}}}"#);
        let e = parse(&json).expect_err(bad);
        assert!(
            e.to_string()
                .contains("not a relative path inside the package"),
            "{e}"
        );
    }
}
