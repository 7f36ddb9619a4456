//! The errors a Thrift call can end in that the server answers itself.

/// The error a call gets when its handler panicked (the server answers it
/// with `INTERNAL_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerPanicked;

impl std::fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the handler panicked")
    }
}

impl std::error::Error for HandlerPanicked {}

/// A message the processor could not read at all: the connection closes.
#[derive(Debug)]
pub(crate) struct MalformedCall(pub(crate) String);

impl std::fmt::Display for MalformedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MalformedCall {}
