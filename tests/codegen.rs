//! `baseplate-thrift`'s async layer: the committed example code is what
//! the generator makes today, and bad IDL gets one located error line.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_example_matches_the_generator() {
    let idl = std::fs::read_to_string(root().join("fixtures/thrift/example.thrift")).unwrap();
    let generated = baseplate::codegen::generate(&idl, &Default::default()).unwrap();
    let committed = std::fs::read_to_string(root().join("src/examples/example_thrift.rs")).unwrap();
    assert!(
        committed.ends_with(&generated),
        "src/examples/example_thrift.rs is stale: run fixtures/thrift/regenerate.sh"
    );
}

#[test]
fn async_only_output_and_errors() {
    let dir = std::env::temp_dir().join(format!("bp-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let idl = dir.join("svc.thrift");
    std::fs::write(
        &idl,
        "exception Nope { 1: string why }\nservice Svc {\n  i64 count(1: list<string> words) throws (1: Nope nope)\n}\n",
    )
    .unwrap();
    let out = dir.join("svc_async.rs");
    let status = Command::new(env!("CARGO_BIN_EXE_baseplate-thrift"))
        .arg(&idl)
        .arg("-o")
        .arg(&out)
        .arg("--async-only")
        .status()
        .unwrap();
    assert!(status.success());
    let code = std::fs::read_to_string(&out).unwrap();
    assert!(code.contains("pub trait SvcAsyncHandler"), "{code}");
    assert!(
        code.contains("fn handle_count(&self, words: Vec<String>) -> impl ::std::future::Future<Output = ::baseplate::thrift::Result<i64>> + Send;"),
        "{code}"
    );
    assert!(code.contains("e.downcast::<Nope>()"), "{code}");

    std::fs::write(&idl, "service Svc {\n  void f(1: i32 a\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_baseplate-thrift"))
        .arg(&idl)
        .arg("-o")
        .arg(&out)
        .arg("--async-only")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("error: {}: line 2: expected ')'\n", idl.display())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
