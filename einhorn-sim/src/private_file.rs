//! The master's own files (pidfile, lockfile), made safe for a shared
//! directory such as `/tmp`: never opened through a symlink, never one that
//! another user owns, and the pidfile written whole or not at all.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::unistd::geteuid;

/// Refuses `path` if it is a symlink, not a regular file, or owned by
/// another user. `what` names it in the message ("pidfile").
fn check_existing(path: &Path, what: &str, flag: &str) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let shown = path.display();
    if meta.file_type().is_symlink() {
        return Err(format!(
            "the {what} {shown} is a symlink; refusing to follow it (remove it, or pass {flag} PATH)"
        ));
    }
    if !meta.file_type().is_file() {
        return Err(format!(
            "the {what} {shown} is not a regular file (remove it, or pass {flag} PATH)"
        ));
    }
    let me = geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "the {what} {shown} belongs to uid {}, not to this user (uid {me}); refusing to use it \
             (pass {flag} PATH, or -d to keep the master's files in a private directory)",
            meta.uid()
        ));
    }
    Ok(())
}

/// Opens (creating it with mode 0600) the lockfile at `path`, checked as
/// above; `O_NOFOLLOW` closes the race between the check and the open.
pub fn open_lockfile(path: &Path) -> Result<File, String> {
    check_existing(path, "lockfile", "-f")?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc_nofollow())
        .open(path)
        .map_err(|e| format!("cannot open the lockfile {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect the lockfile {}: {e}", path.display()))?;
    if meta.uid() != geteuid().as_raw() {
        return Err(format!(
            "the lockfile {} changed owner while it was opened; refusing it",
            path.display()
        ));
    }
    Ok(file)
}

/// Writes `pid` to the pidfile at `path` atomically: into a new private
/// file beside it (`O_EXCL`, `O_NOFOLLOW`), then renamed over it, so no
/// reader sees half a pid and no symlink or foreign file is written through.
pub fn write_pidfile(path: &Path, pid: u32) -> Result<(), String> {
    check_existing(path, "pidfile", "-e")?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "einhorn.pid".into());
    let temp = path.with_file_name(format!(".{name}.{pid}.tmp"));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o644)
            .custom_flags(libc_nofollow())
            .open(&temp)
            .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
        file.write_all(pid.to_string().as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
        std::fs::rename(&temp, path)
            .map_err(|e| format!("cannot write the pidfile {}: {e}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "einhorn-private-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_pidfiles_and_refuses_symlinks() {
        let d = dir();
        let pidfile = d.join("m.pid");
        write_pidfile(&pidfile, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), "42");
        write_pidfile(&pidfile, 43).unwrap();
        assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), "43");

        let target = d.join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let planted = d.join("planted.pid");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let e = write_pidfile(&planted, 44).unwrap_err();
        assert!(e.contains("is a symlink; refusing to follow it"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        let e = open_lockfile(&planted).unwrap_err();
        assert!(e.contains("lockfile"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
