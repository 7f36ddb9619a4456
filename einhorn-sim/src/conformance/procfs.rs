//! What `/proc` says about a worker's sockets.

use std::collections::HashSet;

/// One line of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpEntry {
    /// The local port.
    pub local_port: u16,
    /// The remote port.
    pub remote_port: u16,
    /// The TCP state (`0A` is LISTEN, `01` ESTABLISHED).
    pub state: u8,
    /// Bytes received but not read by the application (for a listener:
    /// connections waiting to be accepted).
    pub rx_queue: u32,
    /// The socket's inode.
    pub inode: u64,
}

/// TCP state LISTEN.
pub const LISTEN: u8 = 0x0A;
/// TCP state ESTABLISHED.
pub const ESTABLISHED: u8 = 0x01;

fn port(field: &str) -> Option<u16> {
    u16::from_str_radix(field.rsplit(':').next()?, 16).ok()
}

/// Parses one line of `/proc/net/tcp` (or `tcp6`), not the header.
fn parse_line(line: &str) -> Option<TcpEntry> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let queues = f.get(4)?;
    Some(TcpEntry {
        local_port: port(f.get(1)?)?,
        remote_port: port(f.get(2)?)?,
        state: u8::from_str_radix(f.get(3)?, 16).ok()?,
        rx_queue: u32::from_str_radix(queues.split(':').nth(1)?, 16).ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

/// Parses the text of `/proc/net/tcp` (or `tcp6`).
pub fn parse_tcp(text: &str) -> Vec<TcpEntry> {
    text.lines().skip(1).filter_map(parse_line).collect()
}

const TCP_TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// Every TCP socket of this network namespace, IPv4 and IPv6.
pub fn tcp_entries() -> Vec<TcpEntry> {
    TCP_TABLES
        .iter()
        .flat_map(|path| parse_tcp(&std::fs::read_to_string(path).unwrap_or_default()))
        .collect()
}

/// The server side of the connection from `client_port` to `server_port`,
/// once it is established. One read of the tables, stopping at the match:
/// a machine that has run many tests holds thousands of TIME_WAIT lines,
/// and the scenarios poll this while a request is in flight.
pub fn server_side(server_port: u16, client_port: u16) -> Option<TcpEntry> {
    TCP_TABLES.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().skip(1).filter_map(parse_line).find(|e| {
            e.state == ESTABLISHED && e.local_port == server_port && e.remote_port == client_port
        })
    })
}

/// A process's state letter from `/proc/PID/stat` (`T` when stopped).
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: the state follows its last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The inodes of the sockets a process has open.
pub fn socket_inodes(pid: i32) -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The TCP ports a process listens on.
pub fn listening_ports(pid: i32) -> Vec<u16> {
    let inodes = socket_inodes(pid);
    let mut ports: Vec<u16> = tcp_entries()
        .into_iter()
        .filter(|e| e.state == LISTEN && inodes.contains(&e.inode))
        .map(|e| e.local_port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(
            parse_tcp(text),
            vec![TcpEntry {
                local_port: 8080,
                remote_port: 0,
                state: LISTEN,
                rx_queue: 2,
                inode: 12345
            }]
        );
    }

    #[test]
    fn sees_our_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening_ports(std::process::id() as i32).contains(&port));
    }
}
