//! A manifest and Haiku's package attributes, both ways, and the manifest
//! of a package file (feature `hpkg`, on by default: the resolver uses the
//! model without the package format).

use exos_hpkg::{Package, PackageInfo, Provides, Resolvable};

use crate::model::{add_self_provide, Dependency, Manifest, ManifestError, Provide, Requirement};
use crate::range::{Constraint, VersionRange};
use crate::{MANIFEST_FILE, MAX_MANIFEST_SIZE};

impl Manifest {
    /// The manifest of a package: its root `manifest.json` if it has one
    /// (which must agree with the package attributes), otherwise one
    /// derived from Haiku's package attributes.
    pub fn from_package(pkg: &Package) -> Result<Manifest, ManifestError> {
        let file = format!("{}:{MANIFEST_FILE}", pkg.path().display());
        let fail = |message: String| ManifestError {
            file: file.clone(),
            key: None,
            message,
        };
        let toc = pkg.toc();
        let Some(entry) = toc.lookup(toc.root().id(), MANIFEST_FILE) else {
            return Ok(Self::from_package_info(pkg.info()));
        };
        if entry.kind() != exos_hpkg::EntryKind::File {
            return Err(fail("is not a regular file".into()));
        }
        if entry.size() > MAX_MANIFEST_SIZE {
            return Err(fail(format!(
                "{} bytes is larger than the {MAX_MANIFEST_SIZE}-byte limit",
                entry.size()
            )));
        }
        let mut bytes = vec![0u8; entry.size() as usize];
        let n = pkg
            .read_at(entry, 0, &mut bytes)
            .map_err(|e| fail(e.to_string()))?;
        bytes.truncate(n);
        let m = Self::parse(&bytes, &file)?;
        let info = pkg.info();
        if m.name != info.name || m.version.compare(&info.version).is_ne() {
            return Err(fail(format!(
                "describes {} {} but the package attributes say {} {}",
                m.name, m.version, info.name, info.version
            )));
        }
        Ok(m)
    }

    /// Derives a manifest from Haiku package attributes (for Haiku packages
    /// and repository entries, which carry no `manifest.json`).
    /// A manifest known from elsewhere (a signed repository index) for a
    /// package whose `manifest.json` is not read (a lazy package, whose
    /// reading would cost a round trip): it must name the package and
    /// version its attributes give.
    pub fn check_against(&self, pkg: &Package) -> Result<(), ManifestError> {
        let info = pkg.info();
        if self.name != info.name || self.version.compare(&info.version).is_ne() {
            return Err(ManifestError {
                file: format!("{}:{MANIFEST_FILE}", pkg.path().display()),
                key: None,
                message: format!(
                    "the index describes {} {} but the package attributes say {} {}",
                    self.name, self.version, info.name, info.version
                ),
            });
        }
        Ok(())
    }

    /// The manifest a Haiku package's attributes describe (Haiku packages carry no `manifest.json`).
    pub fn from_package_info(info: &PackageInfo) -> Manifest {
        let dep = |r: &Resolvable| Dependency {
            api: r.name.clone(),
            range: VersionRange {
                constraints: r
                    .constraint
                    .iter()
                    .map(|(op, v)| Constraint::from_haiku(*op, v.clone()))
                    .collect(),
            },
        };
        let mut provides: Vec<Provide> = info
            .provides
            .iter()
            .map(|p| Provide {
                api: p.name.clone(),
                version: p.version.clone(),
                compatible: p.compatible.clone(),
            })
            .collect();
        add_self_provide(&mut provides, &info.name, &info.version);
        Manifest {
            name: info.name.clone(),
            version: info.version.clone(),
            summary: info.summary.clone(),
            description: info.description.clone(),
            license: info.licenses.first().cloned(),
            copyright: info.copyrights.first().cloned(),
            vendor: Some(info.vendor.clone()).filter(|s| !s.is_empty()),
            packager: Some(info.packager.clone()).filter(|s| !s.is_empty()),
            homepage: info.urls.first().cloned(),
            architecture: info.architecture,
            provides,
            requires: info
                .requires
                .iter()
                .map(|r| Requirement {
                    alternatives: vec![dep(r)],
                })
                .collect(),
            uses: Vec::new(),
            conflicts: info.conflicts.iter().map(dep).collect(),
            replaces: info.replaces.clone(),
            essential: info.flags & exos_hpkg::info::FLAG_SYSTEM_PACKAGE != 0,
            private: Vec::new(),
            command: None,
            original_version: None,
            original_name: None,
        }
    }

    /// Maps the manifest onto Haiku's package attributes. Haiku has no
    /// alternatives and no `uses`: `uses` become requirements and only the
    /// first alternative of an `any` is written; a conflict range that needs
    /// more than one Haiku operator is written unversioned only if it has
    /// no constraint, otherwise by its first operator.
    pub fn to_package_info(&self) -> PackageInfo {
        let mut requires = Vec::new();
        for r in &self.requires {
            let first = &r.alternatives[0];
            requires.extend(first.range.to_haiku(&first.api));
        }
        for u in &self.uses {
            requires.extend(u.range.to_haiku(&u.api));
        }
        let conflicts = self
            .conflicts
            .iter()
            .map(|c| {
                let mut rs = c.range.to_haiku(&c.api);
                rs.truncate(1);
                rs.remove(0)
            })
            .collect();
        PackageInfo {
            name: self.name.clone(),
            summary: self.summary.clone(),
            description: if self.description.is_empty() {
                self.summary.clone()
            } else {
                self.description.clone()
            },
            vendor: self.vendor.clone().unwrap_or_else(|| "EXOS".into()),
            packager: self.packager.clone().unwrap_or_else(|| "exos build".into()),
            architecture: self.architecture,
            version: self.version.clone(),
            copyrights: self.copyright.iter().cloned().collect(),
            licenses: self.license.iter().cloned().collect(),
            urls: self.homepage.iter().cloned().collect(),
            provides: self
                .provides
                .iter()
                .map(|p| Provides {
                    name: p.api.clone(),
                    version: p.version.clone(),
                    compatible: p.compatible.clone(),
                })
                .collect(),
            requires,
            conflicts,
            replaces: self.replaces.clone(),
            flags: if self.essential {
                exos_hpkg::info::FLAG_SYSTEM_PACKAGE
            } else {
                0
            },
            ..Default::default()
        }
    }
}
