//! What a synchronous Thrift handler can learn about the request it is
//! handling: the THeader info headers the client sent.

use std::cell::RefCell;

thread_local! {
    static HEADERS: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// The info headers of the request being handled on this thread (empty
/// outside a handler, and for clients that do not speak THeader).
pub fn request_headers() -> Vec<(String, String)> {
    HEADERS.with(|h| h.borrow().clone())
}

/// One info header of the current request, by name (ASCII case-insensitive).
pub fn request_header(name: &str) -> Option<String> {
    HEADERS.with(|h| {
        h.borrow()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    })
}

/// Runs `f` with `headers` as the current request's headers.
pub(crate) fn with_headers<R>(headers: Vec<(String, String)>, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            HEADERS.with(|h| h.borrow_mut().clear());
        }
    }
    HEADERS.with(|h| *h.borrow_mut() = headers);
    let _reset = Reset;
    f()
}
