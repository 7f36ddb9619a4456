//! The OS's words for an I/O error, for messages users read.

/// The OS's description of an I/O error without Rust's `(os error N)` tail.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
