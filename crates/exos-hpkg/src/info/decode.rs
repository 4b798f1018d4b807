//! Decoding the package-attributes stream into a [`PackageInfo`] (§1.7).
//! Every string is charged to the parser's budget (shared strings once per
//! use) and every list grows through `AttrParser::push`, which bounds items
//! by bytes read.

use super::{
    Architecture, GlobalWritableFile, Operator, PackageInfo, Provides, Resolvable, User,
    UserSettingsFile, Version, WritableFileUpdateType,
};
use crate::attr::{id, AttrParser, Value};
use crate::error::{corrupt, Result};

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
        match aid {
            id::PACKAGE_NAME => self.name = leaf_string(p, v, kids, "name")?,
            id::PACKAGE_SUMMARY => self.summary = leaf_string(p, v, kids, "summary")?,
            id::PACKAGE_DESCRIPTION => self.description = leaf_string(p, v, kids, "description")?,
            id::PACKAGE_VENDOR => self.vendor = leaf_string(p, v, kids, "vendor")?,
            id::PACKAGE_PACKAGER => self.packager = leaf_string(p, v, kids, "packager")?,
            id::PACKAGE_BASE_PACKAGE => {
                self.base_package = leaf_string(p, v, kids, "base package")?
            }
            id::PACKAGE_CHECKSUM => self.checksum = leaf_string(p, v, kids, "checksum")?,
            id::PACKAGE_INSTALL_PATH => {
                self.install_path = leaf_string(p, v, kids, "install path")?
            }
            id::PACKAGE_FLAGS => {
                let f = leaf_uint(p, v, kids, "flags")?;
                self.flags = u32::try_from(f)
                    .map_err(|_| corrupt!("package flags {f:#x} do not fit 32 bits"))?;
            }
            id::PACKAGE_ARCHITECTURE => {
                let a = leaf_uint(p, v, kids, "architecture")?;
                self.architecture = Architecture::from_raw(a)
                    .ok_or_else(|| corrupt!("architecture {a} out of range"))?;
            }
            id::PACKAGE_VERSION_MAJOR => self.version = parse_version(p, v, kids)?,
            id::PACKAGE_COPYRIGHT => push_string(p, v, kids, &mut self.copyrights, "copyright")?,
            id::PACKAGE_LICENSE => push_string(p, v, kids, &mut self.licenses, "license")?,
            id::PACKAGE_URL => push_string(p, v, kids, &mut self.urls, "url")?,
            id::PACKAGE_SOURCE_URL => push_string(p, v, kids, &mut self.source_urls, "source url")?,
            id::PACKAGE_REPLACES => push_string(p, v, kids, &mut self.replaces, "replaces")?,
            id::PACKAGE_GROUP => push_string(p, v, kids, &mut self.groups, "group")?,
            id::PACKAGE_POST_INSTALL_SCRIPT => push_string(
                p,
                v,
                kids,
                &mut self.post_install_scripts,
                "post-install script",
            )?,
            id::PACKAGE_PRE_UNINSTALL_SCRIPT => push_string(
                p,
                v,
                kids,
                &mut self.pre_uninstall_scripts,
                "pre-uninstall script",
            )?,
            id::PACKAGE_PROVIDES => {
                let item = parse_provides(p, v, kids)?;
                p.push(&mut self.provides, item)?
            }
            id::PACKAGE_REQUIRES
            | id::PACKAGE_SUPPLEMENTS
            | id::PACKAGE_CONFLICTS
            | id::PACKAGE_FRESHENS => {
                let item = parse_resolvable(p, v, kids)?;
                let list = match aid {
                    id::PACKAGE_REQUIRES => &mut self.requires,
                    id::PACKAGE_SUPPLEMENTS => &mut self.supplements,
                    id::PACKAGE_CONFLICTS => &mut self.conflicts,
                    _ => &mut self.freshens,
                };
                p.push(list, item)?
            }
            id::PACKAGE_GLOBAL_WRITABLE_FILE => {
                let item = parse_global_writable_file(p, v, kids)?;
                p.push(&mut self.global_writable_files, item)?
            }
            id::PACKAGE_USER_SETTINGS_FILE => {
                let item = parse_user_settings_file(p, v, kids)?;
                p.push(&mut self.user_settings_files, item)?
            }
            id::PACKAGE_USER => {
                let item = parse_user(p, v, kids)?;
                p.push(&mut self.users, item)?
            }
            other => skip_unknown(p, other, kids)?,
        }
        Ok(())
    }
}

fn string_of(p: &AttrParser, v: Value, what: &str) -> Result<String> {
    let s = match v {
        Value::String(s) => s,
        Value::NonUtf8(_) => {
            return Err(corrupt!(
                "package attributes at byte {}: {what} is not valid UTF-8",
                p.position()
            ))
        }
        _ => {
            return Err(corrupt!(
                "package attributes at byte {}: {what} is not a string",
                p.position()
            ))
        }
    };
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

/// A string attribute that should have no children (any are skipped).
fn leaf_string<'a>(p: &mut AttrParser<'a>, v: Value<'a>, kids: bool, what: &str) -> Result<String> {
    let s = string_of(p, v, what)?;
    if kids {
        p.skip_children()?;
    }
    Ok(s)
}

fn leaf_uint<'a>(p: &mut AttrParser<'a>, v: Value<'a>, kids: bool, what: &str) -> Result<u64> {
    let n = uint_of(p, v, what)?;
    if kids {
        p.skip_children()?;
    }
    Ok(n)
}

/// Appends a repeated string attribute to its list, within the parser's
/// item budget.
fn push_string<'a>(
    p: &mut AttrParser<'a>,
    v: Value<'a>,
    kids: bool,
    list: &mut Vec<String>,
    what: &str,
) -> Result<()> {
    let s = leaf_string(p, v, kids, what)?;
    p.push(list, s)
}

fn parse_global_writable_file<'a>(
    p: &mut AttrParser<'a>,
    path: Value<'a>,
    kids: bool,
) -> Result<GlobalWritableFile> {
    let mut f = GlobalWritableFile {
        path: string_of(p, path, "global writable file")?,
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
                f.update_type = Some(
                    WritableFileUpdateType::from_raw(t)
                        .ok_or_else(|| corrupt!("writable file update type {t} out of range"))?,
                );
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(f)
}

fn parse_user_settings_file<'a>(
    p: &mut AttrParser<'a>,
    path: Value<'a>,
    kids: bool,
) -> Result<UserSettingsFile> {
    let mut f = UserSettingsFile {
        path: string_of(p, path, "user settings file")?,
        is_directory: false,
        template: None,
    };
    for_children(p, kids, |p, cid, cv| {
        match cid {
            id::PACKAGE_IS_WRITABLE_DIRECTORY => {
                f.is_directory = uint_of(p, cv, "is-directory")? != 0
            }
            id::PACKAGE_SETTINGS_FILE_TEMPLATE => f.template = Some(string_of(p, cv, "template")?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(f)
}

fn parse_user<'a>(p: &mut AttrParser<'a>, name: Value<'a>, kids: bool) -> Result<User> {
    let mut u = User {
        name: string_of(p, name, "user")?,
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
    Ok(u)
}
