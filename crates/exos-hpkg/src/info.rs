//! Package metadata: the package-attributes section of an HPKG (and each
//! entry of an HPKR packages section), spec §1.7.

use std::fmt;

use crate::attr::{id, AttrParser, Value, WAttr};
use crate::error::{corrupt, Result};

/// Target architecture (enumeration stored as a uint); serialized by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Architecture {
    #[default]
    Any,
    X86,
    X86Gcc2,
    Source,
    X86_64,
    Ppc,
    Arm,
    M68k,
    Sparc,
    Arm64,
    Riscv64,
}

const ARCH_NAMES: [&str; 11] = [
    "any", "x86", "x86_gcc2", "source", "x86_64", "ppc", "arm", "m68k", "sparc", "arm64", "riscv64",
];
const ARCHS: [Architecture; 11] = [
    Architecture::Any,
    Architecture::X86,
    Architecture::X86Gcc2,
    Architecture::Source,
    Architecture::X86_64,
    Architecture::Ppc,
    Architecture::Arm,
    Architecture::M68k,
    Architecture::Sparc,
    Architecture::Arm64,
    Architecture::Riscv64,
];

impl serde::Serialize for Architecture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Architecture {
    pub fn from_raw(v: u64) -> Option<Self> {
        ARCHS.get(usize::try_from(v).ok()?).copied()
    }
    pub fn raw(self) -> u64 {
        ARCHS.iter().position(|&a| a == self).unwrap() as u64
    }
    pub fn name(self) -> &'static str {
        ARCH_NAMES[self.raw() as usize]
    }
    pub fn from_name(s: &str) -> Option<Self> {
        ARCH_NAMES.iter().position(|&n| n == s).map(|i| ARCHS[i])
    }
    /// The architecture of the machine running this code, in Haiku's naming.
    pub fn host() -> Self {
        match std::env::consts::ARCH {
            "x86_64" => Architecture::X86_64,
            "x86" => Architecture::X86,
            "aarch64" => Architecture::Arm64,
            "arm" => Architecture::Arm,
            "riscv64" => Architecture::Riscv64,
            "powerpc" => Architecture::Ppc,
            "sparc" => Architecture::Sparc,
            "m68k" => Architecture::M68k,
            _ => Architecture::Any,
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Haiku version: `major[.minor[.micro]][~pre_release][-revision]`.
/// Serialized as its text form (`1.2.3~beta1-4`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Version {
    pub major: String,
    pub minor: String,
    pub micro: String,
    pub pre_release: String,
    pub revision: u32,
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Version {
    /// Parses Haiku's textual version grammar (§1.13): revision after the
    /// last `-`, pre-release after the last `~`, then `.`-separated parts.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty version".into());
        }
        let (rest, revision) = match s.rfind('-') {
            Some(i) => {
                let r = &s[i + 1..];
                let rev: u32 = r
                    .parse()
                    .map_err(|_| format!("bad revision {r:?} in version {s:?}"))?;
                (&s[..i], rev)
            }
            None => (s, 0),
        };
        let (rest, pre_release) = match rest.rfind('~') {
            Some(i) => (&rest[..i], rest[i + 1..].to_string()),
            None => (rest, String::new()),
        };
        let mut parts = rest.splitn(3, '.');
        let major = parts.next().unwrap_or_default().to_string();
        let minor = parts.next().unwrap_or_default().to_string();
        let micro = parts.next().unwrap_or_default().to_string();
        let ok_part = |p: &str, dots: bool| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dots && c == '.'))
        };
        if major.is_empty() || !ok_part(&major, false) || !ok_part(&minor, false) {
            return Err(format!("invalid version {s:?}"));
        }
        if !ok_part(&micro, true) || !ok_part(&pre_release, true) {
            return Err(format!("invalid version {s:?}"));
        }
        if minor.is_empty() && rest.contains('.') {
            return Err(format!("invalid version {s:?}"));
        }
        // The Package Kit lower-cases every component.
        Ok(Version {
            major: major.to_lowercase(),
            minor: minor.to_lowercase(),
            micro: micro.to_lowercase(),
            pre_release: pre_release.to_lowercase(),
            revision,
        })
    }

    fn to_attr(&self, id: u8) -> WAttr {
        let mut children = Vec::new();
        if !self.minor.is_empty() {
            children.push(WAttr::string(id::PACKAGE_VERSION_MINOR, &self.minor));
            if !self.micro.is_empty() {
                children.push(WAttr::string(id::PACKAGE_VERSION_MICRO, &self.micro));
            }
        }
        if !self.pre_release.is_empty() {
            children.push(WAttr::string(
                id::PACKAGE_VERSION_PRE_RELEASE,
                &self.pre_release,
            ));
        }
        if self.revision != 0 {
            children.push(WAttr::uint(
                id::PACKAGE_VERSION_REVISION,
                self.revision as u64,
            ));
        }
        WAttr::string(id, &self.major).with_children(children)
    }
}

impl Version {
    /// Haiku's ordering (`BPackageVersion::Compare`, spec §1.14): major,
    /// minor and micro by natural compare; no pre-release beats any
    /// pre-release; then revision. Not `Ord`: `1.01` and `1.1` compare equal
    /// but are different values.
    pub fn compare(&self, other: &Version) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        natural_compare(&self.major, &other.major)
            .then_with(|| natural_compare(&self.minor, &other.minor))
            .then_with(|| natural_compare(&self.micro, &other.micro))
            .then_with(
                || match (self.pre_release.is_empty(), other.pre_release.is_empty()) {
                    (true, true) => Equal,
                    (true, false) => Greater,
                    (false, true) => Less,
                    (false, false) => natural_compare(&self.pre_release, &other.pre_release),
                },
            )
            .then_with(|| self.revision.cmp(&other.revision))
    }
}

/// Natural string order as in spec §1.14: digit runs by numeric value, text
/// runs case-insensitively; an empty string is smaller than any other.
pub fn natural_compare(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        a = a.trim_ascii_start();
        b = b.trim_ascii_start();
        let (Some(&ca), Some(&cb)) = (a.first(), b.first()) else {
            return a.len().cmp(&b.len());
        };
        match (ca.is_ascii_digit(), cb.is_ascii_digit()) {
            (true, true) => {
                let (ra, rest_a) = split_run(a, true);
                let (rb, rest_b) = split_run(b, true);
                let strip = |r: &[u8]| -> usize { r.iter().take_while(|&&c| c == b'0').count() };
                let (na, nb) = (&ra[strip(ra)..], &rb[strip(rb)..]);
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Equal {
                    return ord;
                }
                (a, b) = (rest_a, rest_b);
            }
            (false, false) => {
                let (ra, rest_a) = split_run(a, false);
                let (rb, rest_b) = split_run(b, false);
                let ord = cmp_ignore_case(ra, rb);
                if ord != Equal {
                    return ord;
                }
                (a, b) = (rest_a, rest_b);
            }
            _ => return cmp_ignore_case(a, b),
        }
    }
}

fn split_run(s: &[u8], digits: bool) -> (&[u8], &[u8]) {
    let n = s
        .iter()
        .position(|c| c.is_ascii_digit() != digits || (!digits && c.is_ascii_whitespace()))
        .unwrap_or(s.len());
    s.split_at(n)
}

fn cmp_ignore_case(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.iter()
        .map(u8::to_ascii_lowercase)
        .cmp(b.iter().map(u8::to_ascii_lowercase))
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.major)?;
        if !self.minor.is_empty() {
            write!(f, ".{}", self.minor)?;
            if !self.micro.is_empty() {
                write!(f, ".{}", self.micro)?;
            }
        }
        if !self.pre_release.is_empty() {
            write!(f, "~{}", self.pre_release)?;
        }
        if self.revision != 0 {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

/// Comparison operator of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Less,
    LessEqual,
    Equal,
    NotEqual,
    GreaterEqual,
    Greater,
}

const OPS: [(Operator, &str); 6] = [
    (Operator::Less, "<"),
    (Operator::LessEqual, "<="),
    (Operator::Equal, "=="),
    (Operator::NotEqual, "!="),
    (Operator::GreaterEqual, ">="),
    (Operator::Greater, ">"),
];

impl Operator {
    pub fn from_raw(v: u64) -> Option<Self> {
        OPS.get(usize::try_from(v).ok()?).map(|o| o.0)
    }
    pub fn raw(self) -> u64 {
        OPS.iter().position(|o| o.0 == self).unwrap() as u64
    }
    pub fn symbol(self) -> &'static str {
        OPS[self.raw() as usize].1
    }
    /// Accepts Haiku's tokens plus a single `=` as a synonym of `==`.
    pub fn from_symbol(s: &str) -> Option<Self> {
        if s == "=" {
            return Some(Operator::Equal);
        }
        OPS.iter().find(|o| o.1 == s).map(|o| o.0)
    }
}

/// A `provides` entry: `name [= version] [compatible >= version]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Provides {
    pub name: String,
    pub version: Option<Version>,
    pub compatible: Option<Version>,
}

/// A `requires`/`supplements`/`conflicts`/`freshens` entry: `name [op version]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resolvable {
    pub name: String,
    pub constraint: Option<(Operator, Version)>,
}

impl Resolvable {
    /// Parses `name`, `name >= 1.0` or `name>=1.0`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        let op_start = s.find(['<', '>', '=', '!']);
        let Some(i) = op_start else {
            check_name(s)?;
            return Ok(Resolvable {
                name: s.to_string(),
                constraint: None,
            });
        };
        let name = s[..i].trim();
        check_name(name)?;
        let rest = &s[i..];
        let op_len = rest
            .find(|c: char| !matches!(c, '<' | '>' | '=' | '!'))
            .unwrap_or(rest.len());
        let op = Operator::from_symbol(&rest[..op_len])
            .ok_or_else(|| format!("unknown operator {:?} in {s:?}", &rest[..op_len]))?;
        let version = Version::parse(&rest[op_len..])?;
        Ok(Resolvable {
            name: name.to_string(),
            constraint: Some((op, version)),
        })
    }
}

/// Serialized as its text form (`lib:libfoo>=2.0`).
impl serde::Serialize for Resolvable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Resolvable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some((op, v)) = &self.constraint {
            write!(f, "{}{}", op.symbol(), v)?;
        }
        Ok(())
    }
}

/// Longest package or resolvable name (a package's name is a directory
/// name in a mounted view).
pub const MAX_NAME_LENGTH: usize = 255;

/// Resolvable and package names: not empty, `.` or `..`, at most 255 bytes,
/// no whitespace or control characters, none of `- / < > = !`.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a name"));
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(format!(
            "name of {} bytes is longer than {MAX_NAME_LENGTH}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '-' | '/' | '<' | '>' | '=' | '!')
    }) {
        return Err(format!(
            "name {name:?} contains the forbidden character {c:?}"
        ));
    }
    Ok(())
}

/// How a shipped writable file is updated (`global-writable-files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WritableFileUpdateType {
    KeepOld,
    Manual,
    AutoMerge,
}

impl serde::Serialize for WritableFileUpdateType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl WritableFileUpdateType {
    pub fn from_raw(v: u64) -> Option<Self> {
        [Self::KeepOld, Self::Manual, Self::AutoMerge]
            .get(usize::try_from(v).ok()?)
            .copied()
    }
    pub fn raw(self) -> u64 {
        self as u64
    }
    pub fn name(self) -> &'static str {
        ["keep-old", "manual", "auto-merge"][self as usize]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct GlobalWritableFile {
    pub path: String,
    pub is_directory: bool,
    /// Present iff the file is shipped in the package.
    pub update_type: Option<WritableFileUpdateType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct UserSettingsFile {
    pub path: String,
    pub is_directory: bool,
    pub template: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct User {
    pub name: String,
    pub real_name: String,
    pub home: String,
    pub shell: String,
    pub groups: Vec<String>,
}

pub const FLAG_APPROVE_LICENSE: u32 = 1;
pub const FLAG_SYSTEM_PACKAGE: u32 = 2;

/// Everything the package-attributes section can say. Serialized with
/// versions and resolvables as text, the architecture by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct PackageInfo {
    pub name: String,
    pub summary: String,
    pub description: String,
    pub vendor: String,
    pub packager: String,
    pub base_package: String,
    pub flags: u32,
    pub architecture: Architecture,
    pub version: Version,
    pub copyrights: Vec<String>,
    pub licenses: Vec<String>,
    pub urls: Vec<String>,
    pub source_urls: Vec<String>,
    pub provides: Vec<Provides>,
    pub requires: Vec<Resolvable>,
    pub supplements: Vec<Resolvable>,
    pub conflicts: Vec<Resolvable>,
    pub freshens: Vec<Resolvable>,
    pub replaces: Vec<String>,
    pub global_writable_files: Vec<GlobalWritableFile>,
    pub user_settings_files: Vec<UserSettingsFile>,
    pub users: Vec<User>,
    pub groups: Vec<String>,
    pub post_install_scripts: Vec<String>,
    pub pre_uninstall_scripts: Vec<String>,
    /// Only in repository entries: SHA-256 (hex) of the package file.
    pub checksum: String,
    pub install_path: String,
}

fn string_of(p: &AttrParser, v: Value, what: &str) -> Result<String> {
    let s = v.as_str().ok_or_else(|| {
        corrupt!(
            "package attributes at byte {}: {what} is not a string",
            p.position()
        )
    })?;
    // Strings may be shared in the section's table: each copy is charged.
    p.charge(s.len())?;
    Ok(s.to_string())
}

fn uint_of(p: &AttrParser, v: Value, what: &str) -> Result<u64> {
    v.as_uint().ok_or_else(|| {
        corrupt!(
            "package attributes at byte {}: {what} is not an integer",
            p.position()
        )
    })
}

/// Calls `f` for each child of the attribute just read (if it has any),
/// skipping unknown children of newer files and children's own children.
fn for_children<'a>(
    p: &mut AttrParser<'a>,
    has_children: bool,
    mut f: impl FnMut(&mut AttrParser<'a>, u8, Value<'a>) -> Result<bool>,
) -> Result<()> {
    if !has_children {
        return Ok(());
    }
    while let Some(a) = p.next_attr()? {
        let handled = f(p, a.id, a.value)?;
        if !handled {
            if p.allows_unknown() || a.id > id::PACKAGE_PRE_UNINSTALL_SCRIPT {
                if a.has_children {
                    p.skip_children()?;
                }
                continue;
            }
            return Err(corrupt!(
                "package attributes at byte {}: unexpected child attribute id {}",
                p.position(),
                a.id
            ));
        }
        if a.has_children {
            // Known leaf attributes never have children; tolerate and skip.
            p.skip_children()?;
        }
    }
    Ok(())
}

fn parse_version<'a>(
    p: &mut AttrParser<'a>,
    major: Value<'a>,
    has_children: bool,
) -> Result<Version> {
    let mut v = Version {
        major: string_of(p, major, "version major")?,
        ..Default::default()
    };
    for_children(p, has_children, |p, cid, cv| {
        match cid {
            id::PACKAGE_VERSION_MINOR => v.minor = string_of(p, cv, "version minor")?,
            id::PACKAGE_VERSION_MICRO => v.micro = string_of(p, cv, "version micro")?,
            id::PACKAGE_VERSION_PRE_RELEASE => v.pre_release = string_of(p, cv, "pre-release")?,
            id::PACKAGE_VERSION_REVISION => {
                let r = uint_of(p, cv, "revision")?;
                v.revision = u32::try_from(r)
                    .map_err(|_| corrupt!("version revision {r} does not fit 32 bits"))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(v)
}

/// Reads a requires-like entry; its `version.major` child has children of
/// its own, so this walks the list itself instead of using `for_children`.
fn parse_resolvable<'a>(
    p: &mut AttrParser<'a>,
    name: Value<'a>,
    has_children: bool,
) -> Result<Resolvable> {
    let name = string_of(p, name, "resolvable name")?;
    let mut op = None;
    let mut version = None;
    if has_children {
        while let Some(a) = p.next_attr()? {
            match a.id {
                id::PACKAGE_RESOLVABLE_OPERATOR => {
                    let raw = uint_of(p, a.value, "operator")?;
                    op = Some(
                        Operator::from_raw(raw)
                            .ok_or_else(|| corrupt!("resolvable operator {raw} out of range"))?,
                    );
                    if a.has_children {
                        p.skip_children()?;
                    }
                }
                id::PACKAGE_VERSION_MAJOR => {
                    version = Some(parse_version(p, a.value, a.has_children)?)
                }
                other => skip_unknown(p, other, a.has_children)?,
            }
        }
    }
    let constraint = match (op, version) {
        (Some(o), Some(v)) => Some((o, v)),
        (None, None) => None,
        _ => {
            return Err(corrupt!(
                "resolvable {name:?} has an operator without a version or vice versa"
            ))
        }
    };
    Ok(Resolvable { name, constraint })
}

fn parse_provides<'a>(
    p: &mut AttrParser<'a>,
    name: Value<'a>,
    has_children: bool,
) -> Result<Provides> {
    let mut pr = Provides {
        name: string_of(p, name, "provides name")?,
        ..Default::default()
    };
    if has_children {
        while let Some(a) = p.next_attr()? {
            match a.id {
                id::PACKAGE_VERSION_MAJOR => {
                    pr.version = Some(parse_version(p, a.value, a.has_children)?)
                }
                id::PACKAGE_PROVIDES_COMPATIBLE => {
                    pr.compatible = Some(parse_version(p, a.value, a.has_children)?)
                }
                other => skip_unknown(p, other, a.has_children)?,
            }
        }
    }
    Ok(pr)
}

fn skip_unknown(p: &mut AttrParser, attr_id: u8, has_children: bool) -> Result<()> {
    if p.allows_unknown() || attr_id > id::PACKAGE_PRE_UNINSTALL_SCRIPT {
        if has_children {
            p.skip_children()?;
        }
        return Ok(());
    }
    Err(corrupt!(
        "package attributes at byte {}: unexpected attribute id {attr_id}",
        p.position()
    ))
}

impl PackageInfo {
    /// Parses attributes up to (and including) the list terminator.
    pub fn parse(p: &mut AttrParser) -> Result<Self> {
        let mut info = PackageInfo::default();
        while let Some(a) = p.next_attr()? {
            info.apply(p, a.id, a.value, a.has_children)?;
        }
        Ok(info)
    }

    /// Applies one top-level attribute (and consumes its children).
    pub(crate) fn apply<'a>(
        &mut self,
        p: &mut AttrParser<'a>,
        aid: u8,
        v: Value<'a>,
        kids: bool,
    ) -> Result<()> {
        let simple = |p: &mut AttrParser<'a>, kids: bool| -> Result<()> {
            if kids {
                p.skip_children()?;
            }
            Ok(())
        };
        match aid {
            id::PACKAGE_NAME => {
                self.name = string_of(p, v, "name")?;
                simple(p, kids)?
            }
            id::PACKAGE_SUMMARY => {
                self.summary = string_of(p, v, "summary")?;
                simple(p, kids)?
            }
            id::PACKAGE_DESCRIPTION => {
                self.description = string_of(p, v, "description")?;
                simple(p, kids)?
            }
            id::PACKAGE_VENDOR => {
                self.vendor = string_of(p, v, "vendor")?;
                simple(p, kids)?
            }
            id::PACKAGE_PACKAGER => {
                self.packager = string_of(p, v, "packager")?;
                simple(p, kids)?
            }
            id::PACKAGE_BASE_PACKAGE => {
                self.base_package = string_of(p, v, "base package")?;
                simple(p, kids)?
            }
            id::PACKAGE_FLAGS => {
                let f = uint_of(p, v, "flags")?;
                self.flags = u32::try_from(f)
                    .map_err(|_| corrupt!("package flags {f:#x} do not fit 32 bits"))?;
                simple(p, kids)?
            }
            id::PACKAGE_ARCHITECTURE => {
                let a = uint_of(p, v, "architecture")?;
                self.architecture = Architecture::from_raw(a)
                    .ok_or_else(|| corrupt!("architecture {a} out of range"))?;
                simple(p, kids)?
            }
            id::PACKAGE_VERSION_MAJOR => self.version = parse_version(p, v, kids)?,
            id::PACKAGE_COPYRIGHT => {
                p.push(&mut self.copyrights, string_of(p, v, "copyright")?)?;
                simple(p, kids)?
            }
            id::PACKAGE_LICENSE => {
                p.push(&mut self.licenses, string_of(p, v, "license")?)?;
                simple(p, kids)?
            }
            id::PACKAGE_URL => {
                p.push(&mut self.urls, string_of(p, v, "url")?)?;
                simple(p, kids)?
            }
            id::PACKAGE_SOURCE_URL => {
                p.push(&mut self.source_urls, string_of(p, v, "source url")?)?;
                simple(p, kids)?
            }
            id::PACKAGE_PROVIDES => {
                let item = parse_provides(p, v, kids)?;
                p.push(&mut self.provides, item)?
            }
            id::PACKAGE_REQUIRES => {
                let item = parse_resolvable(p, v, kids)?;
                p.push(&mut self.requires, item)?
            }
            id::PACKAGE_SUPPLEMENTS => {
                let item = parse_resolvable(p, v, kids)?;
                p.push(&mut self.supplements, item)?
            }
            id::PACKAGE_CONFLICTS => {
                let item = parse_resolvable(p, v, kids)?;
                p.push(&mut self.conflicts, item)?
            }
            id::PACKAGE_FRESHENS => {
                let item = parse_resolvable(p, v, kids)?;
                p.push(&mut self.freshens, item)?
            }
            id::PACKAGE_REPLACES => {
                p.push(&mut self.replaces, string_of(p, v, "replaces")?)?;
                simple(p, kids)?
            }
            id::PACKAGE_GLOBAL_WRITABLE_FILE => {
                let mut f = GlobalWritableFile {
                    path: string_of(p, v, "global writable file")?,
                    is_directory: false,
                    update_type: None,
                };
                for_children(p, kids, |p, cid, cv| {
                    match cid {
                        id::PACKAGE_IS_WRITABLE_DIRECTORY => {
                            f.is_directory = uint_of(p, cv, "is-directory")? != 0
                        }
                        id::PACKAGE_WRITABLE_FILE_UPDATE_TYPE => {
                            let t = uint_of(p, cv, "update type")?;
                            f.update_type =
                                Some(WritableFileUpdateType::from_raw(t).ok_or_else(|| {
                                    corrupt!("writable file update type {t} out of range")
                                })?);
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                p.push(&mut self.global_writable_files, f)?;
            }
            id::PACKAGE_USER_SETTINGS_FILE => {
                let mut f = UserSettingsFile {
                    path: string_of(p, v, "user settings file")?,
                    is_directory: false,
                    template: None,
                };
                for_children(p, kids, |p, cid, cv| {
                    match cid {
                        id::PACKAGE_IS_WRITABLE_DIRECTORY => {
                            f.is_directory = uint_of(p, cv, "is-directory")? != 0
                        }
                        id::PACKAGE_SETTINGS_FILE_TEMPLATE => {
                            f.template = Some(string_of(p, cv, "template")?)
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                p.push(&mut self.user_settings_files, f)?;
            }
            id::PACKAGE_USER => {
                let mut u = User {
                    name: string_of(p, v, "user")?,
                    ..Default::default()
                };
                for_children(p, kids, |p, cid, cv| {
                    match cid {
                        id::PACKAGE_USER_REAL_NAME => u.real_name = string_of(p, cv, "real name")?,
                        id::PACKAGE_USER_HOME => u.home = string_of(p, cv, "home")?,
                        id::PACKAGE_USER_SHELL => u.shell = string_of(p, cv, "shell")?,
                        id::PACKAGE_USER_GROUP => {
                            let g = string_of(p, cv, "user group")?;
                            p.push(&mut u.groups, g)?
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                p.push(&mut self.users, u)?;
            }
            id::PACKAGE_GROUP => {
                p.push(&mut self.groups, string_of(p, v, "group")?)?;
                simple(p, kids)?
            }
            id::PACKAGE_POST_INSTALL_SCRIPT => {
                let script = string_of(p, v, "post-install script")?;
                p.push(&mut self.post_install_scripts, script)?;
                simple(p, kids)?
            }
            id::PACKAGE_PRE_UNINSTALL_SCRIPT => {
                let script = string_of(p, v, "pre-uninstall script")?;
                p.push(&mut self.pre_uninstall_scripts, script)?;
                simple(p, kids)?
            }
            id::PACKAGE_CHECKSUM => {
                self.checksum = string_of(p, v, "checksum")?;
                simple(p, kids)?
            }
            id::PACKAGE_INSTALL_PATH => {
                self.install_path = string_of(p, v, "install path")?;
                simple(p, kids)?
            }
            other => skip_unknown(p, other, kids)?,
        }
        Ok(())
    }

    /// The attribute list in Haiku's writer order (§1.7).
    pub fn to_attrs(&self) -> Vec<WAttr> {
        let mut a = Vec::new();
        let s = WAttr::string;
        a.push(s(id::PACKAGE_NAME, &self.name));
        a.push(s(id::PACKAGE_SUMMARY, &self.summary));
        a.push(s(id::PACKAGE_DESCRIPTION, &self.description));
        a.push(s(id::PACKAGE_VENDOR, &self.vendor));
        a.push(s(id::PACKAGE_PACKAGER, &self.packager));
        if !self.base_package.is_empty() {
            a.push(s(id::PACKAGE_BASE_PACKAGE, &self.base_package));
        }
        a.push(WAttr::uint(id::PACKAGE_FLAGS, self.flags as u64));
        a.push(WAttr::uint(
            id::PACKAGE_ARCHITECTURE,
            self.architecture.raw(),
        ));
        a.push(self.version.to_attr(id::PACKAGE_VERSION_MAJOR));
        a.extend(self.copyrights.iter().map(|c| s(id::PACKAGE_COPYRIGHT, c)));
        a.extend(self.licenses.iter().map(|c| s(id::PACKAGE_LICENSE, c)));
        a.extend(self.urls.iter().map(|c| s(id::PACKAGE_URL, c)));
        a.extend(
            self.source_urls
                .iter()
                .map(|c| s(id::PACKAGE_SOURCE_URL, c)),
        );
        for p in &self.provides {
            let mut kids = Vec::new();
            if let Some(v) = &p.version {
                kids.push(v.to_attr(id::PACKAGE_VERSION_MAJOR));
            }
            if let Some(c) = &p.compatible {
                kids.push(c.to_attr(id::PACKAGE_PROVIDES_COMPATIBLE));
            }
            a.push(s(id::PACKAGE_PROVIDES, &p.name).with_children(kids));
        }
        let resolvables = [
            (id::PACKAGE_REQUIRES, &self.requires),
            (id::PACKAGE_SUPPLEMENTS, &self.supplements),
            (id::PACKAGE_CONFLICTS, &self.conflicts),
            (id::PACKAGE_FRESHENS, &self.freshens),
        ];
        for (aid, list) in resolvables {
            for r in list {
                let kids = match &r.constraint {
                    Some((op, v)) => vec![
                        WAttr::uint(id::PACKAGE_RESOLVABLE_OPERATOR, op.raw()),
                        v.to_attr(id::PACKAGE_VERSION_MAJOR),
                    ],
                    None => Vec::new(),
                };
                a.push(s(aid, &r.name).with_children(kids));
            }
        }
        a.extend(self.replaces.iter().map(|c| s(id::PACKAGE_REPLACES, c)));
        for f in &self.global_writable_files {
            let mut kids = Vec::new();
            if f.is_directory {
                kids.push(WAttr::uint(id::PACKAGE_IS_WRITABLE_DIRECTORY, 1));
            }
            if let Some(t) = f.update_type {
                kids.push(WAttr::uint(id::PACKAGE_WRITABLE_FILE_UPDATE_TYPE, t.raw()));
            }
            a.push(s(id::PACKAGE_GLOBAL_WRITABLE_FILE, &f.path).with_children(kids));
        }
        for f in &self.user_settings_files {
            let mut kids = Vec::new();
            if let Some(t) = &f.template {
                kids.push(s(id::PACKAGE_SETTINGS_FILE_TEMPLATE, t));
            } else if f.is_directory {
                kids.push(WAttr::uint(id::PACKAGE_IS_WRITABLE_DIRECTORY, 1));
            }
            a.push(s(id::PACKAGE_USER_SETTINGS_FILE, &f.path).with_children(kids));
        }
        for u in &self.users {
            let mut kids = Vec::new();
            if !u.real_name.is_empty() {
                kids.push(s(id::PACKAGE_USER_REAL_NAME, &u.real_name));
            }
            if !u.home.is_empty() {
                kids.push(s(id::PACKAGE_USER_HOME, &u.home));
            }
            if !u.shell.is_empty() {
                kids.push(s(id::PACKAGE_USER_SHELL, &u.shell));
            }
            kids.extend(u.groups.iter().map(|g| s(id::PACKAGE_USER_GROUP, g)));
            a.push(s(id::PACKAGE_USER, &u.name).with_children(kids));
        }
        a.extend(self.groups.iter().map(|c| s(id::PACKAGE_GROUP, c)));
        a.extend(
            self.post_install_scripts
                .iter()
                .map(|c| s(id::PACKAGE_POST_INSTALL_SCRIPT, c)),
        );
        a.extend(
            self.pre_uninstall_scripts
                .iter()
                .map(|c| s(id::PACKAGE_PRE_UNINSTALL_SCRIPT, c)),
        );
        if !self.checksum.is_empty() {
            a.push(s(id::PACKAGE_CHECKSUM, &self.checksum));
        }
        if !self.install_path.is_empty() {
            a.push(s(id::PACKAGE_INSTALL_PATH, &self.install_path));
        }
        a
    }

    /// Haiku's canonical file name: `<name>-<version>-<arch>.hpkg`.
    pub fn canonical_file_name(&self) -> String {
        format!("{}-{}-{}.hpkg", self.name, self.version, self.architecture)
    }

    /// Renders the metadata as a `.PackageInfo` text file (§1.13), so that a
    /// package extracted from ours can be rebuilt by Haiku's `package create`.
    pub fn to_package_info_text(&self) -> String {
        fn q(s: &str) -> String {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    '\n' => o.push_str("\\n"),
                    '\t' => o.push_str("\\t"),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        }
        fn list(out: &mut String, key: &str, items: &[String]) {
            if items.is_empty() {
                return;
            }
            out.push_str(key);
            out.push_str(" {\n");
            for i in items {
                out.push('\t');
                out.push_str(i);
                out.push('\n');
            }
            out.push_str("}\n");
        }
        let mut o = String::new();
        o.push_str(&format!("name {}\n", self.name));
        // The package version in .PackageInfo requires a revision.
        let mut v = self.version.clone();
        if v.revision == 0 {
            v.revision = 1;
        }
        o.push_str(&format!("version {v}\n"));
        o.push_str(&format!("architecture {}\n", self.architecture));
        o.push_str(&format!("summary {}\n", q(&self.summary)));
        o.push_str(&format!("description {}\n", q(&self.description)));
        o.push_str(&format!("packager {}\n", q(&self.packager)));
        o.push_str(&format!("vendor {}\n", q(&self.vendor)));
        let mut flags = Vec::new();
        if self.flags & FLAG_APPROVE_LICENSE != 0 {
            flags.push("approve_license".to_string());
        }
        if self.flags & FLAG_SYSTEM_PACKAGE != 0 {
            flags.push("system_package".to_string());
        }
        list(&mut o, "flags", &flags);
        let qs = |v: &[String]| v.iter().map(|s| q(s)).collect::<Vec<_>>();
        list(&mut o, "copyrights", &qs(&self.copyrights));
        list(&mut o, "licenses", &qs(&self.licenses));
        list(&mut o, "urls", &qs(&self.urls));
        list(&mut o, "source-urls", &qs(&self.source_urls));
        let provides: Vec<String> = self
            .provides
            .iter()
            .map(|p| {
                let mut s = p.name.clone();
                if let Some(v) = &p.version {
                    s.push_str(&format!(" = {v}"));
                }
                if let Some(c) = &p.compatible {
                    s.push_str(&format!(" compat >= {c}"));
                }
                s
            })
            .collect();
        list(&mut o, "provides", &provides);
        let res = |v: &[Resolvable]| {
            v.iter()
                .map(|r| match &r.constraint {
                    Some((op, ver)) => format!("{} {} {}", r.name, op.symbol(), ver),
                    None => r.name.clone(),
                })
                .collect::<Vec<_>>()
        };
        list(&mut o, "requires", &res(&self.requires));
        list(&mut o, "supplements", &res(&self.supplements));
        list(&mut o, "conflicts", &res(&self.conflicts));
        list(&mut o, "freshens", &res(&self.freshens));
        list(&mut o, "replaces", &self.replaces);
        if !self.base_package.is_empty() {
            o.push_str(&format!("base-package {}\n", self.base_package));
        }
        let gwf: Vec<String> = self
            .global_writable_files
            .iter()
            .map(|f| {
                let mut s = q(&f.path);
                if f.is_directory {
                    s.push_str(" directory");
                }
                if let Some(t) = f.update_type {
                    s.push(' ');
                    s.push_str(t.name());
                }
                s
            })
            .collect();
        list(&mut o, "global-writable-files", &gwf);
        let usf: Vec<String> = self
            .user_settings_files
            .iter()
            .map(|f| {
                let mut s = q(&f.path);
                if let Some(t) = &f.template {
                    s.push_str(&format!(" template {}", q(t)));
                } else if f.is_directory {
                    s.push_str(" directory");
                }
                s
            })
            .collect();
        list(&mut o, "user-settings-files", &usf);
        let users: Vec<String> = self
            .users
            .iter()
            .map(|u| {
                let mut s = u.name.clone();
                if !u.real_name.is_empty() {
                    s.push_str(&format!(" real-name {}", q(&u.real_name)));
                }
                if !u.home.is_empty() {
                    s.push_str(&format!(" home {}", q(&u.home)));
                }
                if !u.shell.is_empty() {
                    s.push_str(&format!(" shell {}", q(&u.shell)));
                }
                if !u.groups.is_empty() {
                    s.push_str(" groups ");
                    s.push_str(&u.groups.join(" "));
                }
                s
            })
            .collect();
        list(&mut o, "users", &users);
        list(&mut o, "groups", &self.groups);
        list(
            &mut o,
            "post-install-scripts",
            &qs(&self.post_install_scripts),
        );
        list(
            &mut o,
            "pre-uninstall-scripts",
            &qs(&self.pre_uninstall_scripts),
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> std::cmp::Ordering {
        Version::parse(a)
            .unwrap()
            .compare(&Version::parse(b).unwrap())
    }

    #[test]
    fn version_ordering_follows_haiku() {
        use std::cmp::Ordering::*;
        for (a, b, want) in [
            ("1.10", "1.9", Greater),
            ("1.0", "1.0~beta1", Greater),
            ("r1", "r1~beta4", Greater),
            ("1.0~alpha2", "1.0~alpha10", Less),
            ("R1", "r1", Equal),
            ("1.01", "1.1", Equal),
            ("1", "1.0", Less),
            ("1.0-2", "1.0-10", Less),
            ("2", "10", Less),
            ("1.2.3", "1.2.3a", Less),
            ("1.2a", "1.2b", Less),
            ("1.a", "1.1", Greater),
        ] {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    fn version_strategy() -> impl proptest::strategy::Strategy<Value = Version> {
        use proptest::prelude::*;
        let part = "[0-9]{1,3}|[a-c]{1,2}[0-9]?|[0-9][a-b]";
        (
            part,
            proptest::option::of(part),
            proptest::option::of(part),
            proptest::option::of("(alpha|beta|rc)[0-9]{0,2}"),
            0u32..4,
        )
            .prop_map(|(ma, mi, mc, pre, rev)| {
                let mut s = ma;
                if let Some(mi) = mi {
                    s += &format!(".{mi}");
                    if let Some(mc) = mc {
                        s += &format!(".{mc}");
                    }
                }
                if let Some(p) = pre {
                    s += &format!("~{p}");
                }
                if rev > 0 {
                    s += &format!("-{rev}");
                }
                Version::parse(&s).unwrap()
            })
    }

    proptest::proptest! {
        #[test]
        fn version_order_is_a_total_order(
            a in version_strategy(), b in version_strategy(), c in version_strategy()
        ) {
            use std::cmp::Ordering::*;
            proptest::prop_assert_eq!(a.compare(&a), Equal);
            proptest::prop_assert_eq!(a.compare(&b), b.compare(&a).reverse());
            if a.compare(&b) != Greater && b.compare(&c) != Greater {
                proptest::prop_assert_ne!(a.compare(&c), Greater, "{} {} {}", a, b, c);
            }
            // Display and parse preserve the order.
            let a2 = Version::parse(&a.to_string()).unwrap();
            proptest::prop_assert_eq!(a2.compare(&b), a.compare(&b));
        }

        #[test]
        fn later_revision_and_release_are_newer(a in version_strategy()) {
            use std::cmp::Ordering::*;
            let mut next = a.clone();
            next.revision += 1;
            proptest::prop_assert_eq!(next.compare(&a), Greater);
            if !a.pre_release.is_empty() {
                let mut release = a.clone();
                release.pre_release.clear();
                proptest::prop_assert_eq!(release.compare(&a), Greater);
            }
        }
    }

    #[test]
    fn version_parse_display() {
        for s in [
            "1",
            "1.2",
            "1.2.3",
            "1.2.3~beta1-4",
            "r1~beta4",
            "1.2.3.4-2",
            "r1~beta1_hrev52295_129-1",
        ] {
            assert_eq!(Version::parse(s).unwrap().to_string(), s);
        }
        let v = Version::parse("1.2.3.4~rc.1-7").unwrap();
        assert_eq!(
            (v.major.as_str(), v.minor.as_str(), v.micro.as_str()),
            ("1", "2", "3.4")
        );
        assert_eq!((v.pre_release.as_str(), v.revision), ("rc.1", 7));
        assert!(Version::parse("").is_err());
        assert!(Version::parse("1-x").is_err());
        assert!(Version::parse("a b").is_err());
    }

    #[test]
    fn resolvable_parse() {
        let r = Resolvable::parse("lib:libfoo >= 2.0").unwrap();
        assert_eq!(r.to_string(), "lib:libfoo>=2.0");
        assert_eq!(
            Resolvable::parse("haiku>r1~beta4").unwrap().to_string(),
            "haiku>r1~beta4"
        );
        assert_eq!(Resolvable::parse("cmd:bar").unwrap().constraint, None);
        assert!(Resolvable::parse("a b").is_err());
        assert!(Resolvable::parse("a => 1").is_err());
    }
}
