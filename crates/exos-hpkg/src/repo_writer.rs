//! Writing HPKR v2 repository indexes (spec §1.10) as Haiku's
//! `package_repo create` does: the repository info as a flattened BMessage,
//! then one `package` attribute per package holding its package attributes
//! and its `package:checksum`, all in one compressed heap.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::attr::{encode_section, id, WAttr};
use crate::bmessage::{self, OutField};
use crate::error::{Error, Result, ResultExt};
use crate::header::{HeapInfo, RepoHeader, FORMAT_VERSION, HPKR_HEADER_SIZE};
use crate::info::PackageInfo;
use crate::repo::RepositoryInfo;
use crate::writer::{BuildOptions, HeapWriter};

/// The repository info section, byte for byte as Haiku's
/// `BRepositoryInfo::Archive` flattens it.
pub fn info_section(info: &RepositoryInfo) -> Vec<u8> {
    let s = |v: &str| {
        let mut b = v.as_bytes().to_vec();
        b.push(0);
        b
    };
    let string = |name, v: &str| OutField {
        name,
        type_code: bmessage::STRING_TYPE,
        fixed_size: false,
        items: vec![s(v)],
    };
    // BArchivable's "class" comes first (empty in package_repo's output).
    let mut fields = vec![string("class", "")];
    if !info.base_url.is_empty() {
        fields.push(string("baseUrl", &info.base_url));
    }
    fields.push(string("name", &info.name));
    fields.push(string("identifier", &info.identifier));
    // "url" is the identifier again (legacy readers).
    fields.push(string("url", &info.identifier));
    fields.push(string("vendor", &info.vendor));
    fields.push(string("summary", &info.summary));
    fields.push(OutField {
        name: "priority",
        type_code: bmessage::UINT8_TYPE,
        fixed_size: true,
        items: vec![vec![info.priority]],
    });
    fields.push(OutField {
        name: "architecture",
        type_code: bmessage::UINT8_TYPE,
        fixed_size: true,
        items: vec![vec![info.architecture.raw() as u8]],
    });
    if !info.license_names.is_empty() {
        fields.push(OutField {
            name: "licenseName",
            type_code: bmessage::STRING_TYPE,
            fixed_size: false,
            items: info.license_names.iter().map(|l| s(l)).collect(),
        });
        fields.push(OutField {
            name: "licenseText",
            type_code: bmessage::STRING_TYPE,
            fixed_size: false,
            items: info.license_texts.iter().map(|l| s(l)).collect(),
        });
    }
    bmessage::flatten(&fields)
}

/// The packages section's attributes: per package, `package` = its name,
/// with its package attributes and checksum (SHA-256 hex of the file).
pub fn package_attrs(packages: &[(PackageInfo, String)]) -> Vec<WAttr> {
    packages
        .iter()
        .map(|(info, sha)| {
            let mut children = info.to_attrs();
            children.push(WAttr::string(id::PACKAGE_CHECKSUM, sha.as_str()));
            WAttr::string(id::PACKAGE, info.name.as_str()).with_children(children)
        })
        .collect()
}

/// Writes an HPKR file (to a temporary file beside `path`, then renamed).
pub fn write_repository(
    path: &Path,
    info: &RepositoryInfo,
    packages: &[(PackageInfo, String)],
    options: BuildOptions,
) -> Result<()> {
    options.validate().at(path)?;
    let info_bytes = info_section(info);
    let section = encode_section(&package_attrs(packages));
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut file = File::create(&tmp).at(&tmp)?;
    file.write_all(&[0u8; HPKR_HEADER_SIZE]).at(&tmp)?;
    let mut heap = HeapWriter::new(file, options);
    heap.write(&info_bytes).at(&tmp)?;
    heap.write(&section.bytes).at(&tmp)?;
    let finished = heap.finish().at(&tmp)?;
    let header = RepoHeader {
        header_size: HPKR_HEADER_SIZE as u16,
        version: FORMAT_VERSION,
        total_size: HPKR_HEADER_SIZE as u64 + finished.size_compressed,
        minor_version: 1,
        heap: HeapInfo {
            offset: HPKR_HEADER_SIZE as u64,
            compression: finished.compression,
            size_compressed: finished.size_compressed,
            size_uncompressed: finished.size_uncompressed,
        },
        info_length: u32::try_from(info_bytes.len())
            .map_err(|_| Error::unsupported("repository info too large"))?,
        packages_length: section.bytes.len() as u64,
        packages_strings_length: section.strings_length,
        packages_strings_count: section.strings_count,
    };
    use std::os::unix::fs::FileExt;
    let file = finished.file;
    file.write_all_at(&header.to_bytes(), 0).at(&tmp)?;
    file.sync_all().at(&tmp)?;
    drop(file);
    std::fs::rename(&tmp, path).at(path)?;
    Ok(())
}
