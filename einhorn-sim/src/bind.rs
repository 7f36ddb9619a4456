//! Listening sockets the master binds (`-b`) and passes to every worker.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{
    bind, getsockname, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag,
    SockType, SockaddrIn, SockaddrIn6, SockaddrStorage, UnixAddr,
};

/// What to bind: `HOST:PORT`, `[V6]:PORT` or `unix:PATH`, with flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindSpec {
    /// The address.
    pub address: BindAddress,
    /// Lowercased flags as given (`r`/`so_reuseaddr`, `n`/`o_nonblock`;
    /// others are ignored, as in Einhorn).
    pub flags: Vec<String>,
}

/// The address part of a [`BindSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddress {
    /// A TCP host (name or literal, IPv6 without brackets) and port.
    Tcp(String, u16),
    /// A UNIX socket path.
    Unix(PathBuf),
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddress::Tcp(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindAddress::Tcp(host, port) => write!(f, "{host}:{port}"),
            BindAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl BindSpec {
    /// Parses `-b` values.
    pub fn parse(text: &str) -> Result<BindSpec, String> {
        let invalid = || {
            format!(
                "invalid value {text:?}: bind address must be of the form address:port[,flags...] ([v6]:port and unix:path too)"
            )
        };
        let mut parts = text.split(',');
        let address = parts.next().unwrap_or_default();
        let flags = parts.map(str::to_lowercase).collect();
        let address = if let Some(path) = address.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid());
            }
            BindAddress::Unix(PathBuf::from(path))
        } else {
            let (host, port) = if let Some(rest) = address.strip_prefix('[') {
                let (host, port) = rest.split_once("]:").ok_or_else(invalid)?;
                host.parse::<std::net::Ipv6Addr>().map_err(|_| invalid())?;
                (host, port)
            } else {
                let (host, port) = address.split_once(':').ok_or_else(invalid)?;
                if host.is_empty() || host.contains(':') {
                    return Err(invalid());
                }
                (host, port)
            };
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            let port = port.parse::<u16>().map_err(|_| invalid())?;
            BindAddress::Tcp(host.to_string(), port)
        };
        Ok(BindSpec { address, flags })
    }

    fn has_flag(&self, short: &str, long: &str) -> bool {
        self.flags.iter().any(|f| f == short || f == long)
    }
}

/// A bound, listening socket, open for the master's whole life.
#[derive(Debug)]
pub struct BoundSocket {
    /// What was asked for.
    pub spec: BindSpec,
    /// The socket (close-on-exec in the master; cleared for workers).
    pub fd: OwnedFd,
    /// The port actually bound (0 for UNIX sockets).
    pub port: u16,
    /// `AF_INET`, `AF_INET6` or `AF_UNIX`.
    pub family: &'static str,
}

impl BoundSocket {
    /// The descriptor number workers find in `EINHORN_FD_n`.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Binds and listens on `spec` with Einhorn's flags.
pub fn bind_socket(spec: &BindSpec, backlog: i32) -> Result<BoundSocket, String> {
    let fail = |what: &str, e: nix::Error| format!("cannot {what} {}: {}", spec.address, e.desc());
    let (fd, family) = match &spec.address {
        BindAddress::Tcp(host, port) => {
            let addr: SocketAddr = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {}: {e}", spec.address))?
                .find(|a| a.is_ipv4() != host.contains(':'))
                .ok_or_else(|| {
                    format!(
                        "cannot resolve {}: no address of the right family",
                        spec.address
                    )
                })?;
            let family = if addr.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
                .map_err(|e| fail("create a socket for", e))?;
            if spec.has_flag("r", "so_reuseaddr") {
                setsockopt(&fd, sockopt::ReuseAddr, &true)
                    .map_err(|e| fail("set SO_REUSEADDR on", e))?;
            }
            let bound = match addr {
                SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(v4)),
                SocketAddr::V6(v6) => bind(fd.as_raw_fd(), &SockaddrIn6::from(v6)),
            };
            bound.map_err(|e| fail("bind", e))?;
            (
                fd,
                if addr.is_ipv4() {
                    "AF_INET"
                } else {
                    "AF_INET6"
                },
            )
        }
        BindAddress::Unix(path) => {
            let fd = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(|e| fail("create a socket for", e))?;
            let addr = UnixAddr::new(path).map_err(|e| fail("use the path", e))?;
            bind(fd.as_raw_fd(), &addr).map_err(|e| fail("bind", e))?;
            (fd, "AF_UNIX")
        }
    };
    let backlog = Backlog::new(backlog.max(1)).map_err(|e| fail("use the backlog for", e))?;
    listen(&fd, backlog).map_err(|e| fail("listen on", e))?;
    if spec.has_flag("n", "o_nonblock") {
        let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(|e| fail("read flags of", e))?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(flags)).map_err(|e| fail("set O_NONBLOCK on", e))?;
    }
    let port = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| v4.port())
                .or_else(|| a.as_sockaddr_in6().map(|v6| v6.port()))
        })
        .unwrap_or(0);
    Ok(BoundSocket {
        spec: spec.clone(),
        fd,
        port,
        family,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bind_specs() {
        let s = BindSpec::parse("127.0.0.1:0,r,N,rn").unwrap();
        assert_eq!(s.address, BindAddress::Tcp("127.0.0.1".into(), 0));
        assert_eq!(s.flags, vec!["r", "n", "rn"]);
        assert_eq!(
            BindSpec::parse("[::1]:80").unwrap().address.to_string(),
            "[::1]:80"
        );
        assert_eq!(
            BindSpec::parse("unix:/tmp/x.sock")
                .unwrap()
                .address
                .to_string(),
            "unix:/tmp/x.sock"
        );
        for bad in [
            "", "host", ":80", "h:", "h:x", "h:70000", "a:b:1", "[zz]:1", "unix:",
        ] {
            assert!(BindSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binds_with_flags() {
        let s = bind_socket(&BindSpec::parse("127.0.0.1:0,r,n").unwrap(), 100).unwrap();
        assert!(s.port > 0);
        assert_eq!(s.family, "AF_INET");
    }
}
