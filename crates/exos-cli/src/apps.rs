//! Apps: a package started by name (`exos run NAME`), its command and its
//! private library directories, found in a mount's package metadata.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use exos_view::{Audience, ViewSpec};

pub struct App {
    /// The command's path inside the view.
    pub command: PathBuf,
    /// The package's private directories, inside the view: searched for
    /// libraries first.
    pub library_dirs: Vec<PathBuf>,
}

/// Finds package `name` in the layers `spec`'s view shows, highest first.
pub fn find(spec: &ViewSpec, name: &str) -> Result<App> {
    // (view directory, its directory on the mount), highest layer first.
    let mut layers: Vec<(&str, PathBuf)> = Vec::new();
    if let (Some(user_dir), Audience::User) = (spec.layer_dirs().0, spec.audience) {
        layers.push(("user", user_dir));
    }
    layers.push(("common", spec.mountpoint.join("common")));
    layers.push(("system", spec.mountpoint.join("system")));
    if name.contains('/') || name.starts_with('.') {
        bail!("run: {name:?} is not a package name");
    }
    for (layer, on_mount) in &layers {
        let meta = on_mount.join(".packages").join(name);
        let manifest_file = meta.join(exos_manifest::MANIFEST_FILE);
        let Ok(bytes) = std::fs::read(&manifest_file) else {
            continue;
        };
        let manifest = exos_manifest::Manifest::parse(&bytes, &manifest_file.display().to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let view_meta = Path::new("/").join(layer).join(".packages").join(name);
        let command = manifest
            .command
            .clone()
            .unwrap_or_else(|| format!("bin/{name}"));
        let is_private = manifest
            .private
            .iter()
            .any(|p| command == *p || command.starts_with(&format!("{p}/")));
        let (on_mount, in_view) = if is_private {
            (meta.join(&command), view_meta.join(&command))
        } else {
            (
                on_mount.join(&command),
                Path::new("/").join(layer).join(&command),
            )
        };
        std::fs::metadata(&on_mount)
            .with_context(|| format!("run: {name}: its command {command} is missing"))?;
        let library_dirs = manifest
            .private
            .iter()
            .filter(|p| meta.join(p).is_dir())
            .map(|p| view_meta.join(p))
            .collect();
        return Ok(App {
            command: in_view,
            library_dirs,
        });
    }
    bail!(
        "run: no active package {name} in the {} view (exos status shows what is active)",
        spec.audience.name()
    )
}
