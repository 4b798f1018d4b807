//! `manifest.json`: the package metadata `exos build` reads.
//!
//! Unknown keys and wrong types are errors that name the key and the file.

use std::path::Path;

use anyhow::{bail, Context, Result};
use exos_hpkg::info::{check_name, Provides as HProvides};
use exos_hpkg::{Architecture, PackageInfo, Resolvable, Version};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub copyright: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub packager: Option<String>,
    #[serde(default)]
    pub homepage: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub provides: Vec<ProvidesSpec>,
    #[serde(default)]
    pub requires: Vec<RequiresSpec>,
}

/// `"name"`, `"name = 1.0"` or `{ "api": "name", "version": "1.0", "compatible": "0.9" }`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a string like \"name = 1.0\" or an object with \"api\", \"version\", \"compatible\""
)]
pub enum ProvidesSpec {
    Text(String),
    Object(ProvidesObject),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidesObject {
    api: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    compatible: Option<String>,
}

/// `"name >= 1.0"` or `{ "api": "name", "version": ">=1.0" }`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a string like \"name >= 1.0\" or an object with \"api\" and \"version\""
)]
pub enum RequiresSpec {
    Text(String),
    Object(RequiresObject),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiresObject {
    api: String,
    #[serde(default)]
    version: Option<String>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            if key == "." {
                anyhow::anyhow!("{}: invalid manifest: {}", path.display(), e.inner())
            } else {
                anyhow::anyhow!("{}: key \"{key}\": {}", path.display(), e.inner())
            }
        })
    }

    /// Maps the manifest onto Haiku's package attributes.
    pub fn to_package_info(&self, path: &Path) -> Result<PackageInfo> {
        let ctx = |what: &str| format!("{}: {what}", path.display());
        check_name(&self.name)
            .map_err(anyhow::Error::msg)
            .with_context(|| ctx("key \"name\""))?;
        let version = Version::parse(&self.version)
            .map_err(anyhow::Error::msg)
            .with_context(|| ctx("key \"version\""))?;
        let architecture = match &self.architecture {
            None => Architecture::Any,
            Some(a) => match Architecture::from_name(a) {
                Some(a) => a,
                None => bail!(
                    "{}: key \"architecture\": unknown architecture {a:?} (any, x86_64, arm64, riscv64, x86, x86_gcc2, source, …)",
                    path.display()
                ),
            },
        };
        let mut provides = Vec::new();
        for p in &self.provides {
            provides.push(p.to_provides().with_context(|| ctx("key \"provides\""))?);
        }
        // Haiku resolves package names only through explicit provides.
        if !provides.iter().any(|p| p.name == self.name) {
            provides.insert(
                0,
                HProvides {
                    name: self.name.clone(),
                    version: Some(version.clone()),
                    compatible: None,
                },
            );
        }
        let mut requires = Vec::new();
        for r in &self.requires {
            requires.push(r.to_resolvable().with_context(|| ctx("key \"requires\""))?);
        }
        Ok(PackageInfo {
            name: self.name.clone(),
            summary: self.summary.clone(),
            description: if self.description.is_empty() {
                self.summary.clone()
            } else {
                self.description.clone()
            },
            vendor: self.vendor.clone().unwrap_or_else(|| "EXOS".into()),
            packager: self.packager.clone().unwrap_or_else(|| "exos build".into()),
            architecture,
            version,
            copyrights: self.copyright.iter().cloned().collect(),
            licenses: self.license.iter().cloned().collect(),
            urls: self.homepage.iter().cloned().collect(),
            provides,
            requires,
            ..Default::default()
        })
    }
}

impl ProvidesSpec {
    fn to_provides(&self) -> Result<HProvides> {
        let parse_v = |s: &str| Version::parse(s).map_err(anyhow::Error::msg);
        match self {
            ProvidesSpec::Text(t) => {
                let (name, version) = match t.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(parse_v(v)?)),
                    None => (t.trim(), None),
                };
                check_name(name).map_err(anyhow::Error::msg)?;
                Ok(HProvides {
                    name: name.to_string(),
                    version,
                    compatible: None,
                })
            }
            ProvidesSpec::Object(ProvidesObject {
                api,
                version,
                compatible,
            }) => {
                check_name(api).map_err(anyhow::Error::msg)?;
                Ok(HProvides {
                    name: api.clone(),
                    version: version.as_deref().map(parse_v).transpose()?,
                    compatible: compatible.as_deref().map(parse_v).transpose()?,
                })
            }
        }
    }
}

impl RequiresSpec {
    fn to_resolvable(&self) -> Result<Resolvable> {
        let text = match self {
            RequiresSpec::Text(t) => t.clone(),
            RequiresSpec::Object(RequiresObject { api, version }) => match version {
                Some(v) => format!("{api} {v}"),
                None => api.clone(),
            },
        };
        Resolvable::parse(&text).map_err(anyhow::Error::msg)
    }
}
