//! The process shell around the server core: everything that belongs to
//! the process rather than to serving connections. It maps signals onto
//! the core's controls, talks to systemd and to an Einhorn master, chooses
//! the listening socket, and restarts the process for `--reload` and
//! SIGHUP. Nothing under `server/` reaches into it.

pub(crate) mod einhorn;
pub(crate) mod reload;
pub(crate) mod signals;
pub(crate) mod socket;
pub(crate) mod systemd;
