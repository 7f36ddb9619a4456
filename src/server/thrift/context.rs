//! What a handler can learn about the call it is handling without being
//! handed the request: the THeader info headers the client sent. Sync
//! handlers see them through a thread-local, async handlers through a
//! task-local; [`request_header`] reads whichever is set.

use std::cell::RefCell;
use std::future::Future;

use crate::wire::codec::{header, Headers};

thread_local! {
    static THREAD: RefCell<Option<Headers>> = const { RefCell::new(None) };
}

tokio::task_local! {
    static TASK: Headers;
}

fn current<R>(f: impl FnOnce(Option<&Headers>) -> R) -> R {
    match TASK.try_with(|h| h.clone()) {
        Ok(headers) => f(Some(&headers)),
        Err(_) => THREAD.with(|t| f(t.borrow().as_ref())),
    }
}

/// The info headers of the call being handled here (empty outside a
/// handler, and for clients that do not speak THeader).
pub fn request_headers() -> Vec<(String, String)> {
    current(|h| h.map(|h| h.to_vec()).unwrap_or_default())
}

/// One info header of the current call, by name (ASCII case-insensitive).
pub fn request_header(name: &str) -> Option<String> {
    current(|h| h.and_then(|h| header(h, name)).map(str::to_string))
}

/// Runs `f` (a sync handler) with `headers` as this thread's call headers.
pub(crate) fn with_headers<R>(headers: Headers, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            THREAD.with(|t| *t.borrow_mut() = None);
        }
    }
    THREAD.with(|t| *t.borrow_mut() = Some(headers));
    let _reset = Reset;
    f()
}

/// Runs `future` (an async handler) with `headers` as its call headers.
pub(crate) async fn scope<F: Future>(headers: Headers, future: F) -> F::Output {
    TASK.scope(headers, future).await
}
