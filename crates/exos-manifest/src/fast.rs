//! A fast path for well-formed manifests: serde straight into borrowed
//! structs, no intermediate JSON tree. Anything it does not accept falls
//! back to the tree walker in `model`, which owns the error messages; the
//! conversion below uses the walker's own validation helpers, so both
//! paths accept the same manifests with the same result (tested).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use exos_hpkg::info::check_name;
use exos_hpkg::{Architecture, Version};

use crate::model::{add_self_provide, check_window, parse_provide};
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

/// An optional string key. Unlike `Option`, `null` is refused (as the
/// walker does).
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
                        _ => return Err(de::Error::custom("unknown key")),
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    *slot = Some(map.next_value::<Cow<'de, str>>()?);
                }
                Ok(item)
            }
            fn visit_seq<S: SeqAccess<'de>>(self, _: S) -> Result<Item<'a>, S::Error> {
                Err(de::Error::custom("unexpected array"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

fn dependency(item: &Item) -> Option<Dependency> {
    if let Some(t) = &item.text {
        return Dependency::parse(t).ok();
    }
    if item.compatible.is_some() || item.any.is_some() {
        return None;
    }
    let api = item.api.as_deref()?;
    check_name(api).ok()?;
    let range = match &item.version {
        None => VersionRange::any(),
        Some(r) => VersionRange::parse(r).ok()?,
    };
    Some(Dependency {
        api: api.to_string(),
        range,
    })
}

fn requirement(item: &Item) -> Option<Requirement> {
    if let Some(any) = &item.any {
        if item.api.is_some()
            || item.version.is_some()
            || item.compatible.is_some()
            || any.is_empty()
        {
            return None;
        }
        let alternatives = any.iter().map(dependency).collect::<Option<Vec<_>>>()?;
        return Some(Requirement { alternatives });
    }
    Some(Requirement {
        alternatives: vec![dependency(item)?],
    })
}

fn provide(item: &Item) -> Option<Provide> {
    if let Some(t) = &item.text {
        return parse_provide(t).ok();
    }
    if item.any.is_some() {
        return None;
    }
    let api = item.api.as_deref()?;
    check_name(api).ok()?;
    let version = item
        .version
        .as_deref()
        .map(Version::parse)
        .transpose()
        .ok()?;
    let compatible = item
        .compatible
        .as_deref()
        .map(Version::parse)
        .transpose()
        .ok()?;
    check_window(&version, &compatible).ok()?;
    Some(Provide {
        api: api.to_string(),
        version,
        compatible,
    })
}

/// `None` when the fast path does not accept the input (the caller then
/// takes the slow path for the exact error, or for the rare valid input
/// this path is too strict for).
pub(crate) fn parse(bytes: &[u8]) -> Option<Manifest> {
    // Serde's derived structs also accept an array of their fields in
    // order; a manifest is an object (the walker's rule), so anything else
    // goes to the walker for its error.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let raw: Raw = serde_json::from_slice(bytes).ok()?;
    check_name(&raw.name).ok()?;
    let version = Version::parse(&raw.version).ok()?;
    let architecture = match raw.architecture.0.as_deref() {
        None => Architecture::Any,
        Some(a) => Architecture::from_name(a)?,
    };
    let mut provides = raw
        .provides
        .iter()
        .map(provide)
        .collect::<Option<Vec<_>>>()?;
    let requires = raw
        .requires
        .iter()
        .map(requirement)
        .collect::<Option<Vec<_>>>()?;
    let uses = raw
        .uses
        .iter()
        .map(dependency)
        .collect::<Option<Vec<_>>>()?;
    let conflicts = raw
        .conflicts
        .iter()
        .map(dependency)
        .collect::<Option<Vec<_>>>()?;
    let replaces = raw
        .replaces
        .iter()
        .map(|r| check_name(r).ok().map(|_| r.to_string()))
        .collect::<Option<Vec<_>>>()?;
    add_self_provide(&mut provides, &raw.name, &version);
    let s = |c: &Present| c.0.as_deref().map(str::to_string);
    Some(Manifest {
        name: raw.name.to_string(),
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
