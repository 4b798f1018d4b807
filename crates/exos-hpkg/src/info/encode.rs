//! Encoding a [`PackageInfo`] as the attribute list Haiku's writer emits
//! (§1.7), in its order, so that our packages and repositories are
//! byte-compatible with Haiku's.

use super::{PackageInfo, Version};
use crate::attr::{id, WAttr};

/// A version as a `major` attribute with minor/micro/pre-release/revision
/// children; `id` is the attribute id of the major part.
fn version_attr(v: &Version, id: u8) -> WAttr {
    let mut children = Vec::new();
    if !v.minor.is_empty() {
        children.push(WAttr::string(id::PACKAGE_VERSION_MINOR, &v.minor));
        if !v.micro.is_empty() {
            children.push(WAttr::string(id::PACKAGE_VERSION_MICRO, &v.micro));
        }
    }
    if !v.pre_release.is_empty() {
        children.push(WAttr::string(
            id::PACKAGE_VERSION_PRE_RELEASE,
            &v.pre_release,
        ));
    }
    if v.revision != 0 {
        children.push(WAttr::uint(id::PACKAGE_VERSION_REVISION, v.revision as u64));
    }
    WAttr::string(id, &v.major).with_children(children)
}

impl PackageInfo {
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
        a.push(version_attr(&self.version, id::PACKAGE_VERSION_MAJOR));
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
                kids.push(version_attr(v, id::PACKAGE_VERSION_MAJOR));
            }
            if let Some(c) = &p.compatible {
                kids.push(version_attr(c, id::PACKAGE_PROVIDES_COMPATIBLE));
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
                        version_attr(v, id::PACKAGE_VERSION_MAJOR),
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
}
