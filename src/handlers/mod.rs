//! Layers selectable with the server option `handler = NAME`, the Rust
//! counterpart of baseplate.py's custom WSGI handler classes.

pub(crate) mod access_log;
