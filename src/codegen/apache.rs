//! Runs the Apache Thrift compiler (`thrift -r --gen rs`) over an IDL tree
//! in a private directory made for this run, and reads back the one file
//! it writes for each IDL file.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable naming the Apache Thrift compiler, as
/// `PROTOC` names protoc for prost-build.
pub(crate) const COMPILER_ENV: &str = "THRIFT";

/// The compiler to run: `$THRIFT` if set, else `thrift` from `PATH`.
pub(crate) fn default_compiler() -> PathBuf {
    std::env::var_os(COMPILER_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("thrift"), PathBuf::from)
}

/// A new directory under a name no one can predict, that only this user
/// can enter (0700, whatever the umask): nothing planted in a shared
/// temporary directory is read back as generated code. Removed on drop.
pub(crate) fn private_dir(prefix: &str) -> Result<tempfile::TempDir, String> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    builder
        .tempdir()
        .map_err(|e| format!("cannot create a private temporary directory: {e}"))
}

/// What `thrift -r --gen rs` writes for `root` and every file it includes:
/// the text of `MODULE.rs` for each of `modules`, in that order.
pub(crate) fn generate(
    compiler: &Path,
    root: &Path,
    include_dirs: &[PathBuf],
    modules: &[&str],
) -> Result<Vec<String>, String> {
    let dir = private_dir("baseplate-thrift-")?;
    let mut command = Command::new(compiler);
    command.args(["-r", "--gen", "rs", "-out"]).arg(dir.path());
    for include in include_dirs {
        command.arg("-I").arg(include);
    }
    command.arg(root);
    let output = command.output().map_err(|e| {
        format!(
            "cannot run the Thrift compiler `{}`: {e}; install it (Debian and Ubuntu: \
             `apt-get install thrift-compiler`; macOS: `brew install thrift`), or name it with \
             the {COMPILER_ENV} environment variable",
            compiler.display()
        )
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(5)
            .collect();
        return Err(format!(
            "`{} --gen rs` failed ({}): {}",
            compiler.display(),
            output.status,
            said.join(" | ")
        ));
    }
    modules
        .iter()
        .map(|module| {
            let path = dir.path().join(format!("{module}.rs"));
            std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "`{} --gen rs` wrote no readable {module}.rs ({e}); is it Apache Thrift 0.17 or later?",
                    compiler.display()
                )
            })
        })
        .collect()
}
