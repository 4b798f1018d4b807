//! `exos overlay`: runtime overlays, a thin front end of
//! `exos_manager::{add_overlay, remove_overlay, overlays}`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use exos_root::overlays::RuntimeOverlay;
use exos_root::Layer;
use serde::Serialize;

use crate::output::Out;
use crate::RootArg;

#[derive(Subcommand)]
pub enum OverlayCommand {
    /// Show DIR's files over package NAME's files in every mount of the root, live, until removed (the package is not changed).
    Add {
        name: String,
        dir: PathBuf,
        /// The package's layer, when it is installed in several.
        #[arg(short, long)]
        layer: Option<Layer>,
        /// Add it even where the layer's trust policy requires signed packages.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        root: RootArg,
    },
    /// Remove package NAME's overlay: its own files are shown again at once.
    Remove {
        name: String,
        #[arg(short, long)]
        layer: Option<Layer>,
        #[command(flatten)]
        root: RootArg,
    },
    /// The root's overlays.
    List {
        #[command(flatten)]
        root: RootArg,
    },
}

/// What `exos overlay` prints: the overlays after the command.
#[derive(Serialize)]
pub struct OverlayReport {
    /// The overlay added or removed (none for `list`).
    pub changed: Option<RuntimeOverlay>,
    pub overlays: Vec<RuntimeOverlay>,
}

pub fn overlay(cmd: &OverlayCommand, out: Out) -> Result<()> {
    let (changed, verb, root) = match cmd {
        OverlayCommand::Add {
            name,
            dir,
            layer,
            force,
            root,
        } => {
            // The mount (root's) would refuse it: refuse it now, with
            // the mount's reason.
            exos_packagefs::activate::check_overlay_dir(dir).map_err(|why| {
                anyhow::anyhow!(
                    "{}: a mount would refuse this overlay: {why}",
                    dir.display()
                )
            })?;
            let r = exos_manager::Root::lock(root.path()?)?;
            (
                Some(exos_manager::add_overlay(&r, name, dir, *layer, *force)?),
                "added",
                root,
            )
        }
        OverlayCommand::Remove { name, layer, root } => {
            let r = exos_manager::Root::lock(root.path()?)?;
            (
                Some(exos_manager::remove_overlay(&r, name, *layer)?),
                "removed",
                root,
            )
        }
        OverlayCommand::List { root } => (None, "", root),
    };
    let r = exos_manager::Root::read_only(root.path()?)?;
    let report = OverlayReport {
        changed,
        overlays: exos_manager::overlays(&r)?.overlays,
    };
    out.report(&report, |rep| {
        let mut s = String::new();
        if let Some(c) = &rep.changed {
            s += &format!(
                "Overlay {verb}: {} ({}) {} {}{}; mounts show it at once.\n",
                c.package,
                c.layer.name(),
                if verb == "added" {
                    "shows"
                } else {
                    "no longer shows"
                },
                c.dir.display(),
                if c.forced {
                    " (forced past a signed-only policy)"
                } else {
                    ""
                }
            );
            return s;
        }
        if rep.overlays.is_empty() {
            return "No overlays.\n".into();
        }
        for o in &rep.overlays {
            s += &format!(
                "{} ({}): {}{}\n",
                o.package,
                o.layer.name(),
                o.dir.display(),
                if o.forced { " [forced]" } else { "" }
            );
        }
        s
    })
}
