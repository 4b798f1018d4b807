//! Runtime overlays (`exos overlay`): a host directory shown over one
//! active package's files by every mount of the root, recorded in
//! `system/state/overlays.json` — outside the numbered states, so it is
//! never silently part of one, survives remounts, and is undone only by
//! [`remove_overlay`].

use std::path::Path;

use exos_root::overlays::{RuntimeOverlay, RuntimeOverlays};
use exos_root::{write_atomically, Layer};
use exos_trust::TrustStore;

use crate::{installed, Ctx, Error, Result, Root};

/// The root's overlays.
pub fn overlays(root: &Root) -> Result<RuntimeOverlays> {
    Ok(RuntimeOverlays::read(&root.layout.overlays_file())?)
}

/// The layer of the current state's package `name` (`layer` to choose
/// when it is installed in several).
fn active_layer(root: &Root, name: &str, layer: Option<Layer>) -> Result<Layer> {
    let current = root.current()?;
    let mut layers: Vec<Layer> = installed(root, &current)?
        .into_iter()
        .filter(|(e, m)| m.name == name && layer.is_none_or(|l| l == e.layer))
        .map(|(e, _)| e.layer)
        .collect();
    layers.sort();
    layers.dedup();
    match layers.as_slice() {
        [] => Err(Error::NotActive {
            name: name.to_string(),
            layer,
        }),
        [one] => Ok(*one),
        several => Err(Error::InSeveralLayers {
            name: name.to_string(),
            layers: several.to_vec(),
        }),
    }
}

/// Adds (or replaces) the overlay of package `name`. `root` must be
/// locked. Refused in a layer whose trust policy requires signed packages
/// unless `force`: an overlay is unsigned content.
pub fn add_overlay(
    root: &Root,
    name: &str,
    dir: &Path,
    layer: Option<Layer>,
    force: bool,
) -> Result<RuntimeOverlay> {
    let layer = active_layer(root, name, layer)?;
    let dir = std::fs::canonicalize(dir).at(dir)?;
    if !dir.is_dir() {
        return Err(Error::invalid(dir.display(), "not a directory"));
    }
    let trust = TrustStore::read(&root.layout)?;
    if trust.requires_signature(layer) && !force {
        return Err(crate::Distrust::UnsignedOverlay(layer).into());
    }
    let mut all = overlays(root)?;
    all.overlays
        .retain(|o| !(o.package == name && o.layer == layer));
    let overlay = RuntimeOverlay {
        package: name.to_string(),
        layer,
        dir,
        added: crate::root::now(),
        forced: force && trust.requires_signature(layer),
    };
    all.overlays.push(overlay.clone());
    let path = root.layout.overlays_file();
    write_atomically(&path, &all.render()).at(&path)?;
    Ok(overlay)
}

/// Removes the overlay of package `name` (`layer` to choose when it has
/// several). `root` must be locked.
pub fn remove_overlay(root: &Root, name: &str, layer: Option<Layer>) -> Result<RuntimeOverlay> {
    let mut all = overlays(root)?;
    let found: Vec<usize> = all
        .overlays
        .iter()
        .enumerate()
        .filter(|(_, o)| o.package == name && layer.is_none_or(|l| l == o.layer))
        .map(|(i, _)| i)
        .collect();
    let i = match found.as_slice() {
        [] => return Err(Error::NoOverlay(name.to_string())),
        [i] => *i,
        _ => return Err(Error::OverlaysInSeveralLayers(name.to_string())),
    };
    let removed = all.overlays.remove(i);
    let path = root.layout.overlays_file();
    write_atomically(&path, &all.render()).at(&path)?;
    Ok(removed)
}
