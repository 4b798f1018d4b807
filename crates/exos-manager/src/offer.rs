//! Package files offered for installation (checked like any hostile file,
//! against the root's trust policy) and the installed packages of a state,
//! as the candidates a [`crate::Transaction`] resolves among.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use exos_hpkg::crypt::KeyRing;
use exos_hpkg::Package;
use exos_manifest::Manifest;
use exos_repo::OfferedPackage;
use exos_root::{reserved_name, Layer, PackageFile, StateEntry, StateList};
use exos_trust::{FileDigest, TrustStore};

use crate::holdings::Holdings;
use crate::index::InstalledIndex;
use crate::root::{AcceptedSignature, NewPackage, Root};
use crate::{Error, Result};

/// A package the transaction knows: installed (with its state entry) or
/// offered (with its file).
pub(crate) struct Known {
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) entry: Option<StateEntry>,
    pub(crate) new: Option<NewPackage>,
    pub(crate) remote: Option<OfferedPackage>,
}

/// The installed packages of a state with their manifests, found where
/// the manager keeps them.
pub fn installed(root: &Root, state: &StateList) -> Result<Vec<(StateEntry, Arc<Manifest>)>> {
    installed_with(root, &root.holdings(), state)
}

/// [`installed`], with the root's holdings listed already.
pub(crate) fn installed_with(
    root: &Root,
    holdings: &Holdings,
    state: &StateList,
) -> Result<Vec<(StateEntry, Arc<Manifest>)>> {
    let index = root.index();
    state
        .entries
        .iter()
        .map(|e| installed_one(root, holdings, &index, e))
        .collect()
}

/// Each of `entries` with its manifest, or why it could not be read (a
/// user may not read a sealed shared package's manifest).
pub(crate) fn installed_each(
    root: &Root,
    entries: &[StateEntry],
) -> Vec<Result<(StateEntry, Arc<Manifest>)>> {
    let (holdings, index) = (root.holdings(), root.index());
    entries
        .iter()
        .map(|e| installed_one(root, &holdings, &index, e))
        .collect()
}

/// `e` with its manifest: a lazy package's from its record, a remembered
/// one, the installed-package index's, else the package's own.
fn installed_one(
    root: &Root,
    holdings: &Holdings,
    index: &InstalledIndex,
    e: &StateEntry,
) -> Result<(StateEntry, Arc<Manifest>)> {
    let path = holdings.locate(e);
    if path.is_none() && holdings.is_lazy(e) {
        // A lazy package's manifest is kept with its record.
        let lazy = exos_lazy::LazyPackage::read(&root.layout, &e.sha256)?.ok_or_else(|| {
            Error::invalid(format!("{}/{}", e.layer, e.file), "lazy record vanished")
        })?;
        let what = lazy.path.display().to_string();
        let manifest = Manifest::parse(lazy.record.manifest.to_string().as_bytes(), &what)?;
        return Ok((e.clone(), Arc::new(manifest)));
    }
    // An encrypted package's, remembered at install (no key needed).
    if holdings.remembers_manifest(&e.sha256) {
        if let Some(manifest) = crate::root::remembered_manifest(&root.layout, &e.sha256)? {
            return Ok((e.clone(), Arc::new(manifest)));
        }
    }
    let path = path.ok_or_else(|| Error::MissingFromState {
        layer: e.layer,
        file: e.file.clone(),
    })?;
    if let Some(indexed) = index.get(&e.sha256) {
        return Ok((e.clone(), Arc::clone(&indexed.manifest)));
    }
    // Moved since the listing (a change between the store and its place,
    // while this reader works without the lock): where it is now.
    let pkg = Package::open(&path).or_else(|first| match root.locate(e) {
        Some(now) if now != path => Package::open(&now),
        _ => Err(first),
    })?;
    Ok((e.clone(), Arc::new(Manifest::from_package(&pkg)?)))
}

/// `*.hpkg` files directly inside `dir`, sorted by name.
pub fn package_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })? {
        let path = entry
            .map_err(|e| Error::Io {
                path: dir.to_path_buf(),
                source: e,
            })?
            .path();
        if path.extension().is_some_and(|e| e == "hpkg") && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Checks an offered file against the root's trust policy for `layer`:
/// the signature beside it (`FILE.minisig`), kept if a key trusted for the
/// layer made it; required when the layer's policy says so.
pub(crate) fn signature_for(
    path: &Path,
    layer: Layer,
    trust: &TrustStore,
    digest: &FileDigest,
) -> Result<Option<AcceptedSignature>> {
    let sig_path = exos_trust::beside(path);
    let required = trust.requires_signature(layer);
    if !sig_path.exists() {
        if required {
            return Err(crate::Distrust::Unsigned {
                path: path.to_path_buf(),
                signature: sig_path,
                layer,
            }
            .into());
        }
        return Ok(None);
    }
    let text = exos_trust::read_bounded(&sig_path, exos_trust::minisign::MAX_FILE as u64)?;
    let checked = exos_trust::Signature::parse(&text)
        .map_err(|rule| crate::Distrust::BadSignatureFile {
            signature: sig_path.clone(),
            rule,
        })
        .and_then(|sig| {
            trust
                .check(layer, &sig, &digest.blake2b)
                .map(|k| k.id.clone())
                .map_err(|source| crate::Distrust::Signature {
                    path: path.to_path_buf(),
                    source,
                })
        });
    match checked {
        Ok(key) => Ok(Some(AcceptedSignature {
            key,
            text: String::from_utf8_lossy(&text).into_owned(),
        })),
        Err(reason) if required => Err(reason.into()),
        Err(_) => Ok(None),
    }
}

/// Opens, verifies and describes a package file offered for installation.
pub(crate) fn offer(
    path: &Path,
    layer: Layer,
    trust: &TrustStore,
    keys: &KeyRing,
) -> Result<Known> {
    offer_checked(path, layer, trust, true, None, keys)
}

/// `verify_data`: decompress every chunk. Skipped only for downloads whose
/// SHA-256 matched a signed index entry: `exos repo index` verified those
/// exact bytes before signing. `known`: the digests of a download,
/// computed as it arrived (the file is not read again for them).
pub(crate) fn offer_checked(
    path: &Path,
    layer: Layer,
    trust: &TrustStore,
    verify_data: bool,
    known: Option<FileDigest>,
    keys: &KeyRing,
) -> Result<Known> {
    let pkg = Package::open_with(path, &exos_hpkg::OpenOptions::with_keys(keys.clone()))?;
    // Every chunk must decompress: a package with corrupt data would
    // install and then fail reads with EIO.
    if verify_data {
        pkg.verify_data()?;
    }
    if let Some(name) = reserved_name(pkg.toc().root().children().map(|c| c.name_bytes())) {
        return Err(Error::invalid(
            path.display(),
            format!("contains the top-level entry {name:?}, a name packagefs reserves for the metadata it shows"),
        ));
    }
    let manifest = Manifest::from_package(&pkg)?;
    // The BLAKE2b digest a signature covers only when one must be checked.
    // A signature beside the file is checked (and kept when a key trusted
    // for the layer made it) whatever the policy, so turning a layer's
    // policy to `signed` later keeps what was installed signed; the
    // BLAKE2b digest it covers is computed only then.
    let has_signature = exos_trust::beside(path).exists();
    let digest = match known {
        Some(d) => Some(d),
        None if has_signature || trust.requires_signature(layer) => {
            Some(FileDigest::of_file(path).map_err(|e| Error::Io {
                path: path.to_path_buf(),
                source: e,
            })?)
        }
        None => None,
    };
    let (sha256, size, signature) = match digest {
        Some(d) => (d.sha256, d.size, signature_for(path, layer, trust, &d)?),
        None => {
            let sha = exos_root::Sha256::of_file(path).map_err(|e| Error::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
            let size = std::fs::metadata(path)
                .map_err(|e| Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                })?
                .len();
            (sha, size, None)
        }
    };
    let file = path
        .file_name()
        .and_then(|n| PackageFile::new(n.to_string_lossy()).ok())
        .or_else(|| PackageFile::new(pkg.info().canonical_file_name()).ok())
        .ok_or_else(|| Error::invalid(path.display(), "no usable package file name"))?;
    Ok(Known {
        manifest: Arc::new(manifest),
        entry: None,
        remote: None,
        new: Some(NewPackage {
            source: path.to_path_buf(),
            layer,
            file,
            sha256,
            size,
            signature,
            manifest: None,
        }),
    })
}

/// Offers files and directories of them. Requested files must pass the
/// trust policy; merely available ones that do not are left out (they are
/// not candidates, as apt ignores packages from untrusted sources).
pub(crate) fn offers(
    paths: &[PathBuf],
    layer: Layer,
    trust: &TrustStore,
    requested: bool,
    keys: &KeyRing,
) -> Result<Vec<Known>> {
    let mut out = Vec::new();
    let mut add = |f: &Path| match offer(f, layer, trust, keys) {
        Err(Error::Untrusted(_)) if !requested => Ok(()),
        r => r.map(|k| out.push(k)),
    };
    for p in paths {
        if p.is_dir() {
            for f in package_files(p)? {
                add(&f)?;
            }
        } else {
            add(p)?;
        }
    }
    Ok(out)
}
