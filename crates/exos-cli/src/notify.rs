//! Readiness for a service manager: systemd's `Type=notify` protocol
//! (sd_notify(3)) — one datagram of `KEY=VALUE` lines to the socket named
//! by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). No
//! socket: nothing is sent.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;

/// Where `$NOTIFY_SOCKET` says the service manager listens.
#[derive(Debug, Clone, Default)]
pub struct ServiceManager {
    socket: Option<OsString>,
}

impl ServiceManager {
    /// The manager listening at `socket` (`$NOTIFY_SOCKET`), if any.
    pub fn new(socket: Option<OsString>) -> ServiceManager {
        ServiceManager { socket }
    }

    /// Sends `state` (e.g. `READY=1\nSTATUS=…`); errors are returned for
    /// the caller to log — a service manager that went away is no reason
    /// to stop serving.
    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let sock = UnixDatagram::unbound()?;
        let bytes = socket.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), socket)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reaches_the_socket_and_no_socket_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        ServiceManager::new(Some(path.clone().into()))
            .notify("READY=1\nSTATUS=serving")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        ServiceManager::new(None).notify("READY=1").unwrap();
    }
}
