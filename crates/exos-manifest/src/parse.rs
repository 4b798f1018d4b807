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

use exos_version::{check_name, Architecture, Version, VersionRef};

use crate::model::{
    add_self_provide, check_window, split_dependency, split_provide, ManifestError,
};
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
    #[serde(borrow, default)]
    private: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    command: Present<'a>,
    #[serde(borrow, default)]
    original_version: Present<'a>,
    #[serde(borrow, default)]
    original_name: Present<'a>,
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

fn at(key: impl fmt::Display, e: impl fmt::Display) -> Invalid {
    (key.to_string(), e.to_string())
}

/// A key path built only when an error needs it (`requires[2].version`).
#[derive(Clone, Copy)]
enum Key<'k> {
    Field(&'static str),
    Index(&'k Key<'k>, usize),
    Sub(&'k Key<'k>, &'static str),
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Field(k) => f.write_str(k),
            Key::Index(k, i) => write!(f, "{k}[{i}]"),
            Key::Sub(k, s) => write!(f, "{k}.{s}"),
        }
    }
}

/// A dependency borrowed from manifest JSON: the API and the text of its
/// version range, both checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyRef<'a> {
    /// The API needed.
    pub api: Cow<'a, str>,
    /// Range text, valid for [`VersionRange::parse`] (empty: any version).
    pub range: Cow<'a, str>,
}

impl DependencyRef<'_> {
    /// The owned [`Dependency`].
    pub fn to_dependency(&self) -> Dependency {
        Dependency {
            api: self.api.to_string(),
            // Checked when this was made.
            range: VersionRange::parse(&self.range).unwrap_or_default(),
        }
    }
}

/// A provided API borrowed from manifest JSON, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvideRef<'a> {
    /// The API provided.
    pub api: Cow<'a, str>,
    /// Version texts, valid for [`Version::parse`].
    pub version: Option<Cow<'a, str>>,
    /// The oldest compatible version's text, if given.
    pub compatible: Option<Cow<'a, str>>,
}

impl ProvideRef<'_> {
    /// The owned [`Provide`].
    pub fn to_provide(&self) -> Provide {
        let v = |t: &Option<Cow<str>>| t.as_deref().and_then(|t| Version::parse(t).ok());
        Provide {
            api: self.api.to_string(),
            version: v(&self.version),
            compatible: v(&self.compatible),
        }
    }
}

/// A manifest checked against every rule but not copied: names, versions
/// and ranges stay text borrowed from the JSON it was parsed from. Index
/// loaders intern these (a version or range met a thousand times is parsed
/// once); [`ManifestRef::to_manifest`] gives the owned [`Manifest`].
#[derive(Debug, Clone)]
pub struct ManifestRef<'a> {
    /// The package name.
    pub name: Cow<'a, str>,
    /// Valid for [`Version::parse`].
    pub version: Cow<'a, str>,
    /// The architecture it is built for.
    pub architecture: Architecture,
    /// As written: the package's own name is not added (see
    /// [`ManifestRef::provides_itself`]).
    pub provides: Vec<ProvideRef<'a>>,
    /// Every requirement's alternatives, one after the other; see
    /// [`ManifestRef::requirements`]. Flat, so a manifest costs one list
    /// here instead of one per requirement.
    pub requires: Vec<DependencyRef<'a>>,
    /// Where each requirement ends in `requires`.
    requirement_ends: Vec<u32>,
    /// System APIs it uses.
    pub uses: Vec<DependencyRef<'a>>,
    /// APIs it cannot be installed beside.
    pub conflicts: Vec<DependencyRef<'a>>,
    /// Packages it supersedes.
    pub replaces: Vec<Cow<'a, str>>,
    /// Whether the system cannot work without it.
    pub essential: bool,
    /// Checked relative paths.
    pub private: Vec<Cow<'a, str>>,
    /// What `exos run NAME` starts.
    pub command: Option<Cow<'a, str>>,
    /// The version as its origin wrote it.
    pub original_version: Option<Cow<'a, str>>,
    /// The name as its origin wrote it.
    pub original_name: Option<Cow<'a, str>>,
    summary: Option<Cow<'a, str>>,
    description: Option<Cow<'a, str>>,
    license: Option<Cow<'a, str>>,
    copyright: Option<Cow<'a, str>>,
    vendor: Option<Cow<'a, str>>,
    packager: Option<Cow<'a, str>>,
    homepage: Option<Cow<'a, str>>,
}

impl<'a> ManifestRef<'a> {
    /// Parses and checks manifest JSON; `file` names the source in errors.
    pub fn parse(bytes: &'a [u8], file: &str) -> Result<ManifestRef<'a>, ManifestError> {
        parse(bytes, file)
    }

    /// Each requirement as its alternatives (one for a plain dependency).
    pub fn requirements(&self) -> impl Iterator<Item = &[DependencyRef<'a>]> + '_ {
        let mut start = 0usize;
        self.requirement_ends.iter().map(move |&end| {
            let group = &self.requires[start..end as usize];
            start = end as usize;
            group
        })
    }

    /// Whether the package's own name is among its provides. A package
    /// always provides its name at its version: when this is false, that
    /// provide comes first.
    pub fn provides_itself(&self) -> bool {
        self.provides.iter().any(|p| p.api == self.name)
    }

    /// The owned manifest.
    pub fn to_manifest(&self) -> Manifest {
        // Every text was checked when this was made.
        let version = Version::parse(&self.version).unwrap_or_default();
        let mut provides: Vec<Provide> = self.provides.iter().map(ProvideRef::to_provide).collect();
        add_self_provide(&mut provides, &self.name, &version);
        let s = |c: &Option<Cow<str>>| c.as_deref().map(str::to_string);
        let mut m = Manifest {
            name: self.name.to_string(),
            version,
            summary: s(&self.summary).unwrap_or_default(),
            description: s(&self.description).unwrap_or_default(),
            license: s(&self.license),
            copyright: s(&self.copyright),
            vendor: s(&self.vendor),
            packager: s(&self.packager),
            homepage: s(&self.homepage),
            architecture: self.architecture,
            provides,
            requires: self
                .requirements()
                .map(|alternatives| Requirement {
                    alternatives: alternatives
                        .iter()
                        .map(DependencyRef::to_dependency)
                        .collect(),
                })
                .collect(),
            uses: self.uses.iter().map(DependencyRef::to_dependency).collect(),
            conflicts: self
                .conflicts
                .iter()
                .map(DependencyRef::to_dependency)
                .collect(),
            replaces: self.replaces.iter().map(|r| r.to_string()).collect(),
            essential: self.essential,
            private: self.private.iter().map(|p| p.to_string()).collect(),
            command: self.command.as_deref().map(str::to_string),
            original_version: self.original_version.as_deref().map(str::to_string),
            original_name: self.original_name.as_deref().map(str::to_string),
        };
        m.compact();
        m
    }
}

/// A path inside the package: relative, no `.`/`..`/empty components, at
/// most 4095 bytes (a trailing `/` is dropped).
fn relative_path<'a>(key: &Key, s: Cow<'a, str>) -> Result<Cow<'a, str>, Invalid> {
    let trimmed = s.strip_suffix('/').unwrap_or(&s);
    let bad = trimmed.is_empty()
        || trimmed.len() > 4095
        || trimmed.contains('\0')
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(at(
            key,
            format!("{s:?} is not a relative path inside the package (no leading /, no . or .. components)"),
        ));
    }
    Ok(match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.strip_suffix('/').unwrap_or(b)),
        Cow::Owned(o) => Cow::Owned(o.strip_suffix('/').unwrap_or(&o).to_string()),
    })
}

fn name<'a>(key: &Key, s: Cow<'a, str>) -> Result<Cow<'a, str>, Invalid> {
    check_name(&s).map_err(|e| at(key, e))?;
    Ok(s)
}

/// `part` (a slice of `text`) as a `Cow` that stays borrowed from the JSON
/// when `text` is (it is, unless the string had escapes).
fn sub<'a>(text: &Cow<'a, str>, part: &str) -> Cow<'a, str> {
    match text {
        Cow::Borrowed(t) => {
            let start = part.as_ptr() as usize - t.as_ptr() as usize;
            Cow::Borrowed(&t[start..start + part.len()])
        }
        Cow::Owned(_) => Cow::Owned(part.to_string()),
    }
}

fn dependency<'a>(key: &Key, item: Item<'a>) -> Result<DependencyRef<'a>, Invalid> {
    if let Some(t) = item.text {
        let (api, range) = split_dependency(&t).map_err(|e| at(key, e))?;
        return Ok(DependencyRef {
            api: sub(&t, api),
            range: sub(&t, range),
        });
    }
    if item.compatible.is_some() {
        return Err(at(key, "\"compatible\" belongs in provides"));
    }
    if item.any.is_some() {
        return Err(at(key, "\"any\" is only allowed in requires"));
    }
    let api = item.api.ok_or_else(|| at(key, "missing \"api\""))?;
    let api = name(&Key::Sub(key, "api"), api)?;
    let range = item.version.unwrap_or_default();
    VersionRange::check(&range).map_err(|e| at(Key::Sub(key, "version"), e))?;
    Ok(DependencyRef { api, range })
}

/// Appends the alternatives of one requirement to `out`.
fn requirement<'a>(
    key: &Key,
    mut item: Item<'a>,
    out: &mut Vec<DependencyRef<'a>>,
) -> Result<(), Invalid> {
    if let Some(any) = item.any.take() {
        if item.api.is_some() || item.version.is_some() || item.compatible.is_some() {
            return Err(at(key, "\"any\" stands alone (no api/version beside it)"));
        }
        let at_any = Key::Sub(key, "any");
        if any.is_empty() {
            return Err(at(at_any, "needs at least one alternative"));
        }
        for (i, d) in any.into_iter().enumerate() {
            out.push(dependency(&Key::Index(&at_any, i), d)?);
        }
        return Ok(());
    }
    out.push(dependency(key, item)?);
    Ok(())
}

fn check_version<'v>(
    key: &Key,
    field: &'static str,
    text: Option<&'v str>,
) -> Result<Option<VersionRef<'v>>, Invalid> {
    text.map(VersionRef::parse)
        .transpose()
        .map_err(|e| at(Key::Sub(key, field), e))
}

fn provide<'a>(key: &Key, item: Item<'a>) -> Result<ProvideRef<'a>, Invalid> {
    if let Some(t) = item.text {
        let (api, version, compatible) = split_provide(&t).map_err(|e| at(key, e))?;
        return Ok(ProvideRef {
            api: sub(&t, api),
            version: version.map(|v| sub(&t, v)),
            compatible: compatible.map(|c| sub(&t, c)),
        });
    }
    if item.any.is_some() {
        return Err(at(key, "\"any\" is only allowed in requires"));
    }
    let api = item.api.ok_or_else(|| at(key, "missing \"api\""))?;
    let api = name(&Key::Sub(key, "api"), api)?;
    let v = check_version(key, "version", item.version.as_deref())?;
    let c = check_version(key, "compatible", item.compatible.as_deref())?;
    check_window(v, c).map_err(|e| at(key, e))?;
    Ok(ProvideRef {
        api,
        version: item.version,
        compatible: item.compatible,
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
pub(crate) fn parse<'a>(bytes: &'a [u8], file: &str) -> Result<ManifestRef<'a>, ManifestError> {
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
    let invalid = |(key, message): Invalid| fail((!key.is_empty()).then_some(key), message);
    // Tracking the key path costs ~15% of the parse (measured on Debian's
    // 66,000 manifests); only a manifest that fails is parsed again with it.
    // Checking the UTF-8 of the whole text at once is cheaper than serde
    // checking each string (measured: 4% of loading Debian's index).
    let first = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<Raw>(text),
        Err(_) => serde_json::from_slice::<Raw>(bytes),
    };
    if let Ok(raw) = first {
        return check(raw).map_err(invalid);
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
    check(raw).map_err(invalid)
}

/// Checks every item of a list, naming each by its index.
fn list<'a, T>(
    key: &'static str,
    items: Vec<Item<'a>>,
    f: fn(&Key, Item<'a>) -> Result<T, Invalid>,
) -> Result<Vec<T>, Invalid> {
    let key = Key::Field(key);
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| f(&Key::Index(&key, i), item))
        .collect()
}

fn check(raw: Raw) -> Result<ManifestRef, Invalid> {
    let name = name(&Key::Field("name"), raw.name)?;
    VersionRef::parse(&raw.version).map_err(|e| at("version", e))?;
    let architecture = match raw.architecture.0.as_deref() {
        None => Architecture::Any,
        Some(a) => Architecture::from_name(a).ok_or_else(|| {
            at(
                "architecture",
                format!("unknown architecture {a:?} (any, x86_64, arm64, riscv64, x86, x86_gcc2, source, …)"),
            )
        })?,
    };
    let requires_key = Key::Field("requires");
    let mut requires = Vec::with_capacity(raw.requires.len());
    let mut requirement_ends = Vec::with_capacity(raw.requires.len());
    for (i, item) in raw.requires.into_iter().enumerate() {
        requirement(&Key::Index(&requires_key, i), item, &mut requires)?;
        requirement_ends.push(requires.len() as u32);
    }
    let replaces_key = Key::Field("replaces");
    let replaces = raw
        .replaces
        .into_iter()
        .enumerate()
        .map(|(i, r)| self::name(&Key::Index(&replaces_key, i), r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ManifestRef {
        name,
        version: raw.version,
        architecture,
        provides: list("provides", raw.provides, provide)?,
        requires,
        requirement_ends,
        uses: list("uses", raw.uses, dependency)?,
        conflicts: list("conflicts", raw.conflicts, dependency)?,
        replaces,
        essential: raw.essential,
        private: raw
            .private
            .into_iter()
            .enumerate()
            .map(|(i, p)| relative_path(&Key::Index(&Key::Field("private"), i), p))
            .collect::<Result<Vec<_>, _>>()?,
        command: raw
            .command
            .0
            .map(|c| relative_path(&Key::Field("command"), c))
            .transpose()?,
        original_version: raw.original_version.0,
        original_name: raw.original_name.0,
        summary: raw.summary.0,
        description: raw.description.0,
        license: raw.license.0,
        copyright: raw.copyright.0,
        vendor: raw.vendor.0,
        packager: raw.packager.0,
        homepage: raw.homepage.0,
    })
}
