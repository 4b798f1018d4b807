//! `system/state/overlays.json`: runtime overlays (`exos overlay add`) —
//! a host directory whose files a mount shows over one active package's
//! files. Runtime state: it survives remounts but is never part of a
//! numbered state, so a rollback or a new state leaves it as it is and
//! `exos overlay remove` is the only way back.
//!
//! ```json
//! {"overlays": [{"package": "hello", "layer": "system",
//!   "dir": "/home/me/hello-fix", "added": 1764150000, "forced": false}]}
//! ```

use std::path::{Path, PathBuf};

use crate::{Layer, StateError};

/// Larger files are refused before parsing.
pub const MAX_FILE: u64 = 1 << 20;
/// At most this many overlays.
pub const MAX_OVERLAYS: usize = 1024;

/// One overlay.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeOverlay {
    /// The package (by name) whose files it covers.
    pub package: String,
    /// The layer of that package.
    pub layer: Layer,
    /// The host directory shown over the package (absolute).
    pub dir: PathBuf,
    /// When it was added (seconds since the epoch).
    pub added: u64,
    /// Added with `--force` to a layer whose policy requires signed content.
    #[serde(default)]
    pub forced: bool,
}

/// Every overlay of a root.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeOverlays {
    /// The overlays, by package and layer.
    pub overlays: Vec<RuntimeOverlay>,
}

impl RuntimeOverlays {
    /// Parses the file's bytes; `path` names it in errors. Every overlay
    /// must name a valid package, an absolute directory, and each
    /// (package, layer) at most once.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<RuntimeOverlays, StateError> {
        let err = |message: String| StateError {
            path: path.to_path_buf(),
            line: None,
            message,
        };
        if bytes.len() as u64 > MAX_FILE {
            return Err(err(format!(
                "{} bytes, more than the {MAX_FILE} allowed",
                bytes.len()
            )));
        }
        let doc: RuntimeOverlays = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
        if doc.overlays.len() > MAX_OVERLAYS {
            return Err(err(format!(
                "{} overlays, at most {MAX_OVERLAYS}",
                doc.overlays.len()
            )));
        }
        for (i, o) in doc.overlays.iter().enumerate() {
            if o.package.is_empty() || o.package.len() > 255 || o.package.contains(['/', '\0']) {
                return Err(err(format!("overlay {i}: package name {:?}", o.package)));
            }
            if !o.dir.is_absolute() || o.dir.as_os_str().len() > 4096 {
                return Err(err(format!(
                    "overlay {i}: directory {} is not an absolute path",
                    o.dir.display()
                )));
            }
            if doc.overlays[..i]
                .iter()
                .any(|p| p.package == o.package && p.layer == o.layer)
            {
                return Err(err(format!(
                    "overlay {i}: a second overlay for {} in the {} layer",
                    o.package,
                    o.layer.name()
                )));
            }
        }
        Ok(doc)
    }

    /// Reads `path`; a missing file is no overlays.
    pub fn read(path: &Path) -> Result<RuntimeOverlays, StateError> {
        match crate::read_state_file(path, MAX_FILE)? {
            Some(bytes) => RuntimeOverlays::parse(&bytes, path),
            None => Ok(RuntimeOverlays::default()),
        }
    }

    /// The file's bytes, as written.
    pub fn render(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// The overlay of `package` in `layer`.
    pub fn find(&self, package: &str, layer: Layer) -> Option<&RuntimeOverlay> {
        self.overlays
            .iter()
            .find(|o| o.package == package && o.layer == layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RuntimeOverlays, String> {
        RuntimeOverlays::parse(s.as_bytes(), Path::new("overlays.json")).map_err(|e| e.to_string())
    }

    #[test]
    fn round_trip_and_rules() {
        let doc = RuntimeOverlays {
            overlays: vec![RuntimeOverlay {
                package: "hello".into(),
                layer: Layer::System,
                dir: "/srv/fix".into(),
                added: 5,
                forced: false,
            }],
        };
        let text = String::from_utf8(doc.render()).unwrap();
        assert_eq!(parse(&text).unwrap(), doc);
        let cases = [
            (
                r#"{"overlays":[{"package":"a","layer":"system","dir":"rel","added":1}]}"#,
                "absolute",
            ),
            (
                r#"{"overlays":[{"package":"a/b","layer":"system","dir":"/x","added":1}]}"#,
                "package name",
            ),
            (r#"{"overlays":[],"extra":1}"#, "unknown field"),
            (
                r#"{"overlays":[{"package":"a","layer":"system","dir":"/x","added":1},{"package":"a","layer":"system","dir":"/y","added":1}]}"#,
                "a second overlay",
            ),
            (
                r#"{"overlays":[{"package":"a","layer":"nowhere","dir":"/x","added":1}]}"#,
                "unknown variant",
            ),
            ("[", "EOF"),
        ];
        for (text, rule) in cases {
            let e = parse(text).unwrap_err();
            assert!(
                e.contains(rule) && e.contains("overlays.json"),
                "{text}: {e}"
            );
        }
        let big = format!(r#"{{"overlays":[],"x":"{}"}}"#, "a".repeat(2 << 20));
        assert!(parse(&big).unwrap_err().contains("more than"));
    }
}
