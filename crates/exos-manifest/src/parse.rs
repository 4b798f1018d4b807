//! The manifest parser: serde straight into borrowed structs (no JSON
//! tree in between), `serde_path_to_error` for the key of a structural
//! error (on a second pass, only for input that failed), then validation
//! that names its key too (`requires[2].version`).
//! One parser for every manifest — files, packages, JSON-lines indexes of
//! tens of thousands of lines.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use exos_hpkg::info::check_name;
use exos_hpkg::{Architecture, Version};

use crate::model::{add_self_provide, check_window, parse_provide, ManifestError};
use crate::{Dependency, Manifest, Provide, Requirement, VersionRange};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    version: Cow<'a, str>,
    #[serde(borrow, default)]
    summary: Present<'a>,
    #[serde(borrow, default)]
    description: Present<'a>,
    #[serde(borrow, default)]
    license: Present<'a>,
    #[serde(borrow, default)]
    copyright: Present<'a>,
    #[serde(borrow, default)]
    vendor: Present<'a>,
    #[serde(borrow, default)]
    packager: Present<'a>,
    #[serde(borrow, default)]
    homepage: Present<'a>,
    #[serde(borrow, default)]
    architecture: Present<'a>,
    #[serde(borrow, default)]
    provides: Vec<Item<'a>>,
    #[serde(borrow, default)]
    requires: Vec<Item<'a>>,
    #[serde(borrow, default)]
    uses: Vec<Item<'a>>,
    #[serde(borrow, default)]
    conflicts: Vec<Item<'a>>,
    #[serde(borrow, default)]
    replaces: Vec<Cow<'a, str>>,
    #[serde(default)]
    essential: bool,
}

/// An optional string key. Unlike `Option`, `null` is refused: a key is
/// either a string or absent.
#[derive(Default)]
struct Present<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Present(Some(<Cow<'de, str>>::deserialize(d)?)))
    }
}

/// A list item: a string, or an object with `api`/`version`/`compatible`
/// or `any`.
#[derive(Default)]
struct Item<'a> {
    text: Option<Cow<'a, str>>,
    api: Option<Cow<'a, str>>,
    version: Option<Cow<'a, str>>,
    compatible: Option<Cow<'a, str>>,
    any: Option<Vec<Item<'a>>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Item<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Item<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an object")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Item<'a>, E> {
                Ok(Item {
                    text: Some(Cow::Borrowed(v)),
                    ..Default::default()
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Item<'a>, E> {
                Ok(Item {
                    text: Some(Cow::Owned(v.to_string())),
                    ..Default::default()
                })
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Item<'a>, M::Error> {
                let mut item = Item::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let slot = match key.as_ref() {
                        "api" => &mut item.api,
                        "version" => &mut item.version,
                        "compatible" => &mut item.compatible,
                        "any" => {
                            if item.any.is_some() {
                                return Err(de::Error::duplicate_field("any"));
                            }
                            item.any = Some(map.next_value()?);
                            continue;
                        }
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["api", "version", "compatible", "any"],
                            ))
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    *slot = Some(map.next_value::<Cow<'de, str>>()?);
                }
                Ok(item)
            }
            fn visit_seq<S: SeqAccess<'de>>(self, _: S) -> Result<Item<'a>, S::Error> {
                Err(de::Error::invalid_type(de::Unexpected::Seq, &self))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A validation failure: the key path and what is wrong there.
type Invalid = (String, String);

fn at(key: &str, e: impl fmt::Display) -> Invalid {
    (key.to_string(), e.to_string())
}

fn name(key: &str, s: &str) -> Result<String, Invalid> {
    check_name(s).map_err(|e| at(key, e))?;
    Ok(s.to_string())
}

fn dependency(key: &str, item: &Item) -> Result<Dependency, Invalid> {
    if let Some(t) = &item.text {
        return Dependency::parse(t).map_err(|e| at(key, e));
    }
    if item.compatible.is_some() {
        return Err(at(key, "\"compatible\" belongs in provides"));
    }
    if item.any.is_some() {
        return Err(at(key, "\"any\" is only allowed in requires"));
    }
    let api = item
        .api
        .as_deref()
        .ok_or_else(|| at(key, "missing \"api\""))?;
    let api = name(&format!("{key}.api"), api)?;
    let range = match &item.version {
        None => VersionRange::any(),
        Some(r) => VersionRange::parse(r).map_err(|e| at(&format!("{key}.version"), e))?,
    };
    Ok(Dependency { api, range })
}

fn requirement(key: &str, item: &Item) -> Result<Requirement, Invalid> {
    if let Some(any) = &item.any {
        if item.api.is_some() || item.version.is_some() || item.compatible.is_some() {
            return Err(at(key, "\"any\" stands alone (no api/version beside it)"));
        }
        let at_any = format!("{key}.any");
        if any.is_empty() {
            return Err(at(&at_any, "needs at least one alternative"));
        }
        let alternatives = any
            .iter()
            .enumerate()
            .map(|(i, d)| dependency(&format!("{at_any}[{i}]"), d))
            .collect::<Result<_, _>>()?;
        return Ok(Requirement { alternatives });
    }
    Ok(Requirement {
        alternatives: vec![dependency(key, item)?],
    })
}

fn provide(key: &str, item: &Item) -> Result<Provide, Invalid> {
    if let Some(t) = &item.text {
        return parse_provide(t).map_err(|e| at(key, e));
    }
    if item.any.is_some() {
        return Err(at(key, "\"any\" is only allowed in requires"));
    }
    let api = item
        .api
        .as_deref()
        .ok_or_else(|| at(key, "missing \"api\""))?;
    let api = name(&format!("{key}.api"), api)?;
    let version_at = |k: &str, v: &Option<Cow<str>>| {
        v.as_deref()
            .map(Version::parse)
            .transpose()
            .map_err(|e| at(&format!("{key}.{k}"), e))
    };
    let version = version_at("version", &item.version)?;
    let compatible = version_at("compatible", &item.compatible)?;
    check_window(&version, &compatible).map_err(|e| at(key, e))?;
    Ok(Provide {
        api,
        version,
        compatible,
    })
}

/// What a JSON value starts as, for "expected an object, found …".
fn found(bytes: &[u8]) -> &'static str {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(_) => "something else",
        None => "nothing",
    }
}

/// Parses manifest JSON; `file` names the source in errors.
pub(crate) fn parse(bytes: &[u8], file: &str) -> Result<Manifest, ManifestError> {
    let fail = |key: Option<String>, message: String| ManifestError {
        file: file.to_string(),
        key,
        message,
    };
    // Serde's derived structs also accept an array of their fields in
    // order; a manifest is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(fail(
            None,
            format!("expected an object, found {}", found(bytes)),
        ));
    }
    let message = |e: serde_json::Error| {
        if e.is_syntax() || e.is_eof() {
            format!("invalid JSON: {e}")
        } else {
            e.to_string()
        }
    };
    // Tracking the key path costs ~15% of the parse (measured on Debian's
    // 66,000 manifests); only a manifest that fails is parsed again with it.
    if let Ok(raw) = serde_json::from_slice::<Raw>(bytes) {
        return validate(raw)
            .map_err(|(key, message)| fail((!key.is_empty()).then_some(key), message));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw: Raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        fail(
            // "." is the document itself, "?" an unknown position.
            (!matches!(path.as_str(), "." | "?" | "")).then_some(path),
            message(e.into_inner()),
        )
    })?;
    de.end().map_err(|e| fail(None, message(e)))?;
    validate(raw).map_err(|(key, message)| fail((!key.is_empty()).then_some(key), message))
}

/// Validates every item of a list, naming each by its index.
fn list<T>(
    key: &str,
    items: &[Item],
    f: fn(&str, &Item) -> Result<T, Invalid>,
) -> Result<Vec<T>, Invalid> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| f(&format!("{key}[{i}]"), item))
        .collect()
}

fn validate(raw: Raw) -> Result<Manifest, Invalid> {
    let name = name("name", &raw.name)?;
    let version = Version::parse(&raw.version).map_err(|e| at("version", e))?;
    let architecture = match raw.architecture.0.as_deref() {
        None => Architecture::Any,
        Some(a) => Architecture::from_name(a).ok_or_else(|| {
            at(
                "architecture",
                format!("unknown architecture {a:?} (any, x86_64, arm64, riscv64, x86, x86_gcc2, source, …)"),
            )
        })?,
    };
    let mut provides = list("provides", &raw.provides, provide)?;
    let requires = list("requires", &raw.requires, requirement)?;
    let uses = list("uses", &raw.uses, dependency)?;
    let conflicts = list("conflicts", &raw.conflicts, dependency)?;
    let replaces = raw
        .replaces
        .iter()
        .enumerate()
        .map(|(i, r)| self::name(&format!("replaces[{i}]"), r))
        .collect::<Result<Vec<_>, _>>()?;
    add_self_provide(&mut provides, &name, &version);
    let s = |c: &Present| c.0.as_deref().map(str::to_string);
    Ok(Manifest {
        name,
        version,
        summary: s(&raw.summary).unwrap_or_default(),
        description: s(&raw.description).unwrap_or_default(),
        license: s(&raw.license),
        copyright: s(&raw.copyright),
        vendor: s(&raw.vendor),
        packager: s(&raw.packager),
        homepage: s(&raw.homepage),
        architecture,
        provides,
        requires,
        uses,
        conflicts,
        replaces,
        essential: raw.essential,
    })
}
