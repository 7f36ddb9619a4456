//! The worker side of Einhorn: am I a worker, which socket did the master
//! pass me, and the ACK that tells the master I am ready.

use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::server::listener::Listener;

/// What the Einhorn master told this process through its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Worker {
    /// The master's pid (our parent).
    pub master_pid: i32,
    /// The master's command socket, for the ACK.
    pub sock_path: PathBuf,
    /// The first inherited listening socket, if any was passed.
    pub fd: Option<InheritedFd>,
}

/// A listening socket passed by the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InheritedFd {
    /// The descriptor number (`EINHORN_FD_0`).
    pub fd: RawFd,
    /// The family the master declared (`EINHORN_FD_FAMILY_0`), if it did.
    pub family: Option<String>,
}

const FAMILIES: &[&str] = &["AF_INET", "AF_INET6", "AF_UNIX"];

impl Worker {
    /// Reads the environment. `Ok(None)` when this process is not an Einhorn
    /// worker: `EINHORN_MASTER_PID` is unset or is not our parent's pid.
    pub(crate) fn from_env() -> Result<Option<Worker>, Error> {
        Worker::from_vars(
            |name| std::env::var(name).ok(),
            nix::unistd::getppid().as_raw(),
        )
    }

    /// [`Worker::from_env`] with the variables and parent pid given.
    pub(crate) fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        parent_pid: i32,
    ) -> Result<Option<Worker>, Error> {
        let Some(master) = var("EINHORN_MASTER_PID") else {
            return Ok(None);
        };
        let master_pid: i32 = master.trim().parse().map_err(|_| {
            Error::new(format!("EINHORN_MASTER_PID={master:?} is not a process id"))
        })?;
        if master_pid != parent_pid {
            return Ok(None);
        }
        let sock_path = var("EINHORN_SOCK_PATH").filter(|p| !p.is_empty()).ok_or_else(|| {
            Error::new(
                "EINHORN_SOCK_PATH is not set, but EINHORN_MASTER_PID says this is an Einhorn worker; \
                 the master's command socket is needed for the ACK",
            )
        })?;
        let count = match var("EINHORN_FD_COUNT") {
            None => 0,
            Some(text) => text.trim().parse::<u32>().map_err(|_| {
                Error::new(format!(
                    "EINHORN_FD_COUNT={text:?} is not a count of file descriptors"
                ))
            })?,
        };
        let fd = if count == 0 {
            None
        } else {
            let text = var("EINHORN_FD_0").ok_or_else(|| {
                Error::new(format!(
                    "EINHORN_FD_COUNT={count} but EINHORN_FD_0 is not set"
                ))
            })?;
            let fd = text
                .trim()
                .parse::<RawFd>()
                .ok()
                .filter(|&fd| fd >= 0)
                .ok_or_else(|| {
                    Error::new(format!(
                        "EINHORN_FD_0={text:?} is not a file descriptor number"
                    ))
                })?;
            let family = var("EINHORN_FD_FAMILY_0");
            if let Some(f) = &family {
                if !FAMILIES.contains(&f.as_str()) {
                    return Err(Error::new(format!(
                        "EINHORN_FD_FAMILY_0={f:?} is not supported; expected one of {}",
                        FAMILIES.join(", ")
                    )));
                }
            }
            Some(InheritedFd { fd, family })
        };
        Ok(Some(Worker {
            master_pid,
            sock_path: PathBuf::from(sock_path),
            fd,
        }))
    }

    /// Takes over the inherited socket, checking it is what the master said.
    pub(crate) fn adopt_listener(&self) -> Result<Option<Listener>, Error> {
        let Some(inherited) = &self.fd else {
            return Ok(None);
        };
        let what = format!("EINHORN_FD_0={}", inherited.fd);
        let listener = Listener::adopt(inherited.fd, &what)?;
        let is_unix = matches!(listener, Listener::Unix(..));
        if let Some(family) = &inherited.family {
            if (family == "AF_UNIX") != is_unix {
                return Err(Error::new(format!(
                    "{what}: EINHORN_FD_FAMILY_0 says {family}, but the socket is {}",
                    if is_unix {
                        "a UNIX socket"
                    } else {
                        "a TCP socket"
                    }
                )));
            }
        }
        Ok(Some(listener))
    }

    /// Tells the master this worker is ready: one JSON line on its command
    /// socket, exactly as baseplate.py sends it.
    pub(crate) fn ack(&self) -> Result<(), Error> {
        send_ack(&self.sock_path, std::process::id())
    }
}

/// The ACK line for `pid`.
pub(crate) fn ack_line(pid: u32) -> String {
    format!("{{\"command\": \"worker:ack\", \"pid\": {pid}}}\n")
}

fn send_ack(path: &Path, pid: u32) -> Result<(), Error> {
    let fail = |e: std::io::Error| {
        Error::io(
            format!(
                "cannot send the Einhorn ACK to EINHORN_SOCK_PATH={}",
                path.display()
            ),
            &e,
        )
    };
    let mut stream = UnixStream::connect(path).map_err(fail)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    stream.write_all(ack_line(pid).as_bytes()).map_err(fail)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn not_a_worker_unless_parent_matches() {
        assert_eq!(Worker::from_vars(vars(&[]), 10).unwrap(), None);
        assert_eq!(
            Worker::from_vars(vars(&[("EINHORN_MASTER_PID", "11")]), 10).unwrap(),
            None
        );
    }

    #[test]
    fn reads_socket_and_path() {
        let w = Worker::from_vars(
            vars(&[
                ("EINHORN_MASTER_PID", "10"),
                ("EINHORN_SOCK_PATH", "/tmp/e.sock"),
                ("EINHORN_FD_COUNT", "1"),
                ("EINHORN_FD_0", "7"),
            ]),
            10,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            w.fd,
            Some(InheritedFd {
                fd: 7,
                family: None
            })
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let e = Worker::from_vars(vars(&[("EINHORN_MASTER_PID", "abc")]), 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "EINHORN_MASTER_PID=\"abc\" is not a process id"
        );
        let e = Worker::from_vars(
            vars(&[
                ("EINHORN_MASTER_PID", "10"),
                ("EINHORN_SOCK_PATH", "/s"),
                ("EINHORN_FD_COUNT", "x"),
            ]),
            10,
        )
        .unwrap_err();
        assert!(e.to_string().contains("EINHORN_FD_COUNT=\"x\""));
        assert_eq!(ack_line(42), "{\"command\": \"worker:ack\", \"pid\": 42}\n");
    }
}
