//! Generates the Thrift code from `idl/` at build time, into `OUT_DIR`:
//! the service's own IDL tree, and the IDL corpus (vendored with the
//! example IDL), which the corpus test builds and calls.

fn main() -> Result<(), baseplate::codegen::Error> {
    let build = baseplate::codegen::Build::new().include_dir("idl/vendor");
    build.compile("idl/downstream.thrift")?;
    build.compile("idl/vendor/corpus/services.thrift")?;
    build.compile("idl/vendor/corpus/chain/a.thrift")?;
    Ok(())
}
