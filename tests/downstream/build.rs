//! Generates the Thrift code from `idl/` at build time, into `OUT_DIR`.

fn main() -> Result<(), baseplate::codegen::Error> {
    baseplate::codegen::Build::new()
        .include_dir("idl/vendor")
        .compile("idl/downstream.thrift")?;
    Ok(())
}
