fn main() {
    // Generates the example IDL's types and service from volo.yml.
    if let Err(e) = volo_build::ConfigBuilder::default().write() {
        eprintln!("volo-peer: cannot generate code from volo.yml: {e}");
        std::process::exit(1);
    }
}
