//! `baseplate-serve`: the server with the built-in example apps.

fn main() -> std::process::ExitCode {
    baseplate::Serve::new().with_examples().main()
}
