//! Fetching from a repository: `file://` URLs and plain paths are read
//! from disk, `http://` and `https://` with ureq (rustls). Every fetch has
//! a size limit (a server that sends endless data is cut off one byte past
//! it) and timeouts (a server that never answers fails in seconds, not
//! hours). Downloads resume from a partial file with an HTTP Range request.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use exos_trust::FileDigest;

use crate::{NetworkFailure, RepoError};

/// How long to wait for a connection and for each response.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the connection.
    pub connect: Duration,
    /// For the response head and for each read of the body.
    pub response: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_percent_encoded_in_urls() {
        let l = Location::parse("http://host/repo/").unwrap();
        assert_eq!(
            l.describe("gawk_1%3a5.2.1-2+b1_amd64.hpkg"),
            "http://host/repo/gawk_1%253a5.2.1-2%2Bb1_amd64.hpkg"
        );
        let d = Location::parse("/srv/repo").unwrap();
        assert_eq!(d.describe("a%3ab.hpkg"), "/srv/repo/a%3ab.hpkg");
    }
}

impl Timeouts {
    /// `secs` seconds (at least one) for every timeout (what
    /// `EXOS_NET_TIMEOUT` asks for; front ends read it).
    pub fn all(secs: u64) -> Timeouts {
        let d = Duration::from_secs(secs.max(1));
        Timeouts {
            connect: d,
            response: d,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(30),
        }
    }
}

/// What a file name keeps unencoded in a URL: RFC 3986's unreserved
/// characters.
const URL_NAME: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where a repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory.
    Dir(PathBuf),
    /// An `http://` or `https://` URL (no trailing `/`).
    Http(String),
}

impl Location {
    /// Parses `file://PATH`, `http(s)://…` or a plain path.
    pub fn parse(url: &str) -> Result<Location, RepoError> {
        if let Some(p) = url.strip_prefix("file://") {
            return Ok(Location::Dir(PathBuf::from(p)));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Location::Http(url.trim_end_matches('/').to_string()));
        }
        if url.contains("://") {
            return Err(RepoError::invalid(
                url,
                "unsupported URL (file://, http://, https:// or a path)",
            ));
        }
        Ok(Location::Dir(PathBuf::from(url)))
    }

    /// The path or URL of `file` in this repository. In a URL the name is
    /// percent-encoded (file names of imported Debian packages carry `%3a`
    /// for an epoch's colon, and `+`).
    pub fn describe(&self, file: &str) -> String {
        match self {
            Location::Dir(d) => d.join(file).display().to_string(),
            Location::Http(u) => format!(
                "{u}/{}",
                percent_encoding::utf8_percent_encode(file, URL_NAME)
            ),
        }
    }
}

/// A client for one repository location.
pub struct Transport {
    /// Where the repository is.
    pub location: Location,
    agent: ureq::Agent,
}

fn io(path: &Path, e: std::io::Error) -> RepoError {
    RepoError::io(path, e)
}

fn request_failed(url: &str, e: ureq::Error) -> RepoError {
    RepoError::network(url, NetworkFailure::Request(Box::new(e)))
}

impl Transport {
    /// A transport to `location` with these timeouts.
    pub fn new(location: Location, timeouts: Timeouts) -> Transport {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(timeouts.connect))
            .timeout_recv_response(Some(timeouts.response))
            .timeout_recv_body(Some(timeouts.response))
            .http_status_as_error(false)
            .max_redirects(5)
            .user_agent(concat!("exos/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Transport { location, agent }
    }

    /// Fetches a whole (small) file; refuses one larger than `max` bytes.
    /// `Ok(None)` when it does not exist (404).
    pub fn fetch(&self, file: &str, max: u64) -> Result<Option<Vec<u8>>, RepoError> {
        let what = self.location.describe(file);
        let reader: Box<dyn Read> = match &self.location {
            Location::Dir(d) => match File::open(d.join(file)) {
                Ok(f) => Box::new(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io(&d.join(file), e)),
            },
            Location::Http(_) => {
                let resp = self
                    .agent
                    .get(&what)
                    .call()
                    .map_err(|e| request_failed(&what, e))?;
                match resp.status().as_u16() {
                    200 => {}
                    404 => return Ok(None),
                    s => return Err(RepoError::network(what, NetworkFailure::Status(s))),
                }
                Box::new(resp.into_body().into_reader())
            }
        };
        let mut bytes = Vec::new();
        reader
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| {
                let failure = NetworkFailure::Interrupted {
                    got: bytes.len() as u64,
                    size: max,
                    source,
                };
                RepoError::network(what.clone(), failure)
            })?;
        if bytes.len() as u64 > max {
            return Err(RepoError::invalid(
                what,
                format!("more than the {max} bytes allowed for it"),
            ));
        }
        Ok(Some(bytes))
    }

    /// Fetches bytes `start..start + buf.len()` of `file` into `buf` (one
    /// HTTP Range request; a positioned read for local repositories). The
    /// server must answer 206 with exactly that many bytes.
    pub fn fetch_range(&self, file: &str, start: u64, buf: &mut [u8]) -> Result<(), RepoError> {
        let what = self.location.describe(file);
        if buf.is_empty() {
            return Ok(());
        }
        let end = start + buf.len() as u64;
        match &self.location {
            Location::Dir(d) => {
                use std::os::unix::fs::FileExt;
                let path = d.join(file);
                let f = File::open(&path).map_err(|e| io(&path, e))?;
                f.read_exact_at(buf, start).map_err(|e| io(&path, e))
            }
            Location::Http(_) => {
                let resp = self
                    .agent
                    .get(&what)
                    .header("Range", &format!("bytes={start}-{}", end - 1))
                    .call()
                    .map_err(|e| request_failed(&what, e))?;
                match resp.status().as_u16() {
                    206 => {}
                    200 => return Err(RepoError::network(what, NetworkFailure::RangeIgnored)),
                    status => {
                        let failure = NetworkFailure::RangeStatus {
                            status,
                            start,
                            end: end - 1,
                        };
                        return Err(RepoError::network(what, failure));
                    }
                }
                let mut body = resp.into_body().into_reader().take(buf.len() as u64 + 1);
                let mut got = 0usize;
                loop {
                    if got == buf.len() {
                        // One byte more means the server sent another range.
                        let mut extra = [0u8; 1];
                        return match body.read(&mut extra) {
                            Ok(0) => Ok(()),
                            Ok(_) => Err(RepoError::invalid(
                                what,
                                format!("more than the {} bytes asked for", buf.len()),
                            )),
                            Err(source) => {
                                let size = buf.len() as u64;
                                let failure = NetworkFailure::Interrupted {
                                    got: size,
                                    size,
                                    source,
                                };
                                Err(RepoError::network(what, failure))
                            }
                        };
                    }
                    match body.read(&mut buf[got..]) {
                        Ok(0) => {
                            let failure = NetworkFailure::EndedEarly {
                                got: got as u64,
                                size: buf.len() as u64,
                            };
                            return Err(RepoError::network(what, failure));
                        }
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(source) => {
                            let failure = NetworkFailure::Interrupted {
                                got: got as u64,
                                size: buf.len() as u64,
                                source,
                            };
                            return Err(RepoError::network(what, failure));
                        }
                    }
                }
            }
        }
    }

    /// Downloads `file` of exactly `size` bytes into `dest`, resuming from
    /// what `dest` already holds. Calls `progress` with bytes received.
    /// Returns the digests of the whole file (SHA-256, and the BLAKE2b-512
    /// a signature covers), computed as it arrives.
    pub fn download(
        &self,
        file: &str,
        size: u64,
        dest: &Path,
        progress: &dyn Fn(u64),
    ) -> Result<FileDigest, RepoError> {
        let what = self.location.describe(file);
        let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        if have > size {
            std::fs::remove_file(dest).map_err(|e| io(dest, e))?;
            return self.download(file, size, dest, progress);
        }
        if have == size {
            return FileDigest::of_file(dest).map_err(|e| io(dest, e));
        }
        let (reader, append): (Box<dyn Read>, bool) = match &self.location {
            Location::Dir(d) => {
                let path = d.join(file);
                let mut f = File::open(&path).map_err(|e| io(&path, e))?;
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(have))
                    .map_err(|e| io(&path, e))?;
                (Box::new(f), true)
            }
            Location::Http(_) => {
                let mut req = self.agent.get(&what);
                if have > 0 {
                    req = req.header("Range", &format!("bytes={have}-"));
                }
                let resp = req.call().map_err(|e| request_failed(&what, e))?;
                let append = match resp.status().as_u16() {
                    206 if have > 0 => true,
                    200 => false,
                    s => return Err(RepoError::network(what, NetworkFailure::Status(s))),
                };
                (Box::new(resp.into_body().into_reader()), append)
            }
        };
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(dest)
            .map_err(|e| io(dest, e))?;
        let start = if append { have } else { 0 };
        let mut hasher = exos_root::digest::Hasher::new();
        if append {
            // The part already here, hashed once more.
            let mut prefix = File::open(dest).map_err(|e| io(dest, e))?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut left = have;
            while left > 0 {
                let n = prefix
                    .read(&mut buf[..left.min(256 * 1024) as usize])
                    .map_err(|e| io(dest, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
        }
        progress(start);
        // Never more than the index says: a server sending more is cut off.
        let mut limited = reader.take(size - start + 1);
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = start;
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    let _ = out.sync_all();
                    let failure = NetworkFailure::Interrupted { got, size, source };
                    return Err(RepoError::network(what, failure));
                }
            };
            got += n as u64;
            if got > size {
                drop(out);
                let _ = std::fs::remove_file(dest);
                return Err(RepoError::invalid(
                    what,
                    format!("larger than the {size} bytes the index gives"),
                ));
            }
            out.write_all(&buf[..n]).map_err(|e| io(dest, e))?;
            hasher.update(&buf[..n]);
            progress(got);
        }
        // Not synced here: the installer renames downloads into its store
        // and syncs them together before it commits.
        if got < size {
            return Err(RepoError::network(
                what,
                NetworkFailure::EndedEarly { got, size },
            ));
        }
        Ok(hasher.finish())
    }
}
