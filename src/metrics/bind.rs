//! Binding `metrics.bind`, which the workers of one service share: TCP
//! with `SO_REUSEPORT` (any worker answers a scrape), a UNIX socket by one
//! worker at a time: the one holding `PATH.lock`.
//!
//! `SO_REUSEPORT` lets any process of the same user join a port, so before
//! joining, the processes already listening there are found (from
//! `/proc/net` and each process's descriptors) and must all be workers of
//! this service: processes with a live file in the same metrics directory.
//! Another service on the same `metrics.bind`, the service's own port, or
//! a process of another user is refused with one line, instead of scrapes
//! landing on either at random.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::store::WORKER_PREFIX;
use crate::config::values::Endpoint;
use crate::error::Error;
use crate::server::listener::{resolve, Listener};
use crate::server::socket_file::OwnerLock;

/// The setting the endpoint comes from, for messages.
const WHAT: &str = "metrics.bind";

/// What binding `metrics.bind` came to.
pub(crate) enum Bound {
    /// This worker serves scrapes on it.
    Listener(Listener),
    /// A sibling worker (this pid, when known) serves the UNIX socket, or is
    /// about to; its scrapes sum this worker's file too.
    HeldBySibling(Option<i32>),
}

/// Binds `endpoint` for a worker writing its metrics in `dir`, if whoever
/// listens there already is a worker of the same service (see the module
/// docs).
pub(crate) fn bind(endpoint: &Endpoint, dir: &Path) -> Result<Bound, Error> {
    let inodes = match endpoint {
        Endpoint::Tcp { host, port } => tcp_listeners(resolve(host, *port, WHAT)?),
        Endpoint::Unix(path) => unix_listeners(path),
    };
    let holders = holders(&inodes);
    let me = std::process::id() as i32;
    let siblings = worker_pids(dir);
    for inode in &inodes {
        let refuse = |why: String| {
            Err(Error::new(format!(
                "cannot export metrics on {endpoint} ({WHAT}): {why}; give each service a \
                 metrics.bind of its own"
            )))
        };
        match holders.get(inode) {
            Some(&pid) if pid == me => {
                return refuse("it is the address this server itself listens on".into())
            }
            Some(pid) if siblings.contains(pid) => {}
            Some(&pid) => {
                return refuse(format!(
                    "pid {pid} ({}) listens there, and it is no worker of this service (it \
                     writes no metrics in {})",
                    command_name(pid),
                    dir.display()
                ))
            }
            None => {
                return refuse(
                    "a process this user cannot see (another user's) listens there".into(),
                )
            }
        }
    }
    match endpoint {
        Endpoint::Unix(path) => match inodes.first().and_then(|i| holders.get(i)) {
            Some(&sibling) => Ok(Bound::HeldBySibling(Some(sibling))),
            // Whoever takes the path's lock first binds it; the lock's
            // holder may not be listening yet.
            None => Ok(match Listener::bind_unix_owned(path, WHAT)? {
                Some(listener) => Bound::Listener(listener),
                None => Bound::HeldBySibling(OwnerLock::holder(path)),
            }),
        },
        Endpoint::Tcp { .. } => Listener::bind_shared(endpoint, WHAT).map(Bound::Listener),
    }
}

/// The socket inodes of TCP listeners a bind to `addr` would join or clash
/// with: the same port on the same address, or where either is a wildcard.
fn tcp_listeners(addr: SocketAddr) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local remote st ... inode (the 10th field).
            let (Some(local), Some(&"0A"), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let (Some(listening), Ok(inode)) = (parse_address(local), inode.parse()) else {
                continue;
            };
            if listening.port() == addr.port() && overlaps(listening.ip(), addr.ip()) {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// Whether sockets bound to `a` and `b` (same port) would share traffic.
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (a, b) = (canonical(a), canonical(b));
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// `/proc/net/tcp`'s `HEX_ADDRESS:HEX_PORT`: each 32-bit word of the
/// address is printed in host byte order.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in 0..address.len() / 8 {
        let word = u32::from_str_radix(address.get(word * 8..word * 8 + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The socket inodes of UNIX listeners bound at `path`.
fn unix_listeners(path: &Path) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    let Some(wanted) = path.to_str() else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Num RefCount Protocol Flags Type St Inode Path; a listener
            // has the accept flag (0x10000) and state 1 (unconnected).
            let listening = fields.get(3) == Some(&"00010000") && fields.get(5) == Some(&"01");
            (listening && fields.get(7) == Some(&wanted)).then(|| fields.get(6)?.parse().ok())?
        })
        .collect()
}

/// The process holding each of `inodes`, among the processes this user
/// may look into.
fn holders(inodes: &[u64]) -> HashMap<u64, i32> {
    let mut found = HashMap::new();
    if inodes.is_empty() {
        return found;
    }
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return found;
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(inode) = inode.filter(|i| inodes.contains(i)) {
                found.entry(inode).or_insert(pid);
            }
        }
        if found.len() == inodes.len() {
            break;
        }
    }
    found
}

/// The pids of the workers with a file in `dir` (named
/// `w-ID-PID-NANOS.db`), this one's included.
fn worker_pids(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name
                .to_str()?
                .strip_prefix(WORKER_PREFIX)?
                .strip_suffix(".db")?;
            let mut parts = name.rsplitn(3, '-');
            let _nanos = parts.next()?;
            parts.next()?.parse().ok()
        })
        .collect()
}

/// A process's command name, for messages.
fn command_name(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_are_read_in_host_order() {
        assert_eq!(
            parse_address("0100007F:17AC"),
            Some("127.0.0.1:6060".parse().unwrap())
        );
        assert_eq!(
            parse_address("00000000000000000000000001000000:1F90"),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(parse_address("nonsense"), None);
        assert!(overlaps(
            "0.0.0.0".parse().unwrap(),
            "127.0.0.1".parse().unwrap()
        ));
        assert!(overlaps(
            "::".parse().unwrap(),
            "127.0.0.1".parse().unwrap()
        ));
        assert!(!overlaps(
            "127.0.0.1".parse().unwrap(),
            "10.0.0.1".parse().unwrap()
        ));
    }

    #[test]
    fn a_listener_of_this_process_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inodes = tcp_listeners(listener.local_addr().unwrap());
        assert_eq!(inodes.len(), 1);
        assert_eq!(holders(&inodes)[&inodes[0]], std::process::id() as i32);
    }
}
