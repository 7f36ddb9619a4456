//! App code's panics, caught where a server calls it, so a panic costs only
//! its own request or call. Shared by the HTTP and Thrift servers.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A panic caught in app code, with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Panicked(pub(crate) String);

impl Panicked {
    fn from_payload(payload: Box<dyn Any + Send>) -> Panicked {
        Panicked(
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string()),
        )
    }
}

/// Runs `f`, catching a panic.
pub(crate) fn call<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(Panicked::from_payload)
}

/// A future whose panics are caught, as [`call`] does for a closure.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match call(|| Pin::new(inner).poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn catches_panics_in_calls_and_futures() {
        assert_eq!(call(|| 1), Ok(1));
        assert_eq!(
            call(|| -> i32 { panic!("boom {}", 1) }),
            Err(Panicked("boom 1".into()))
        );
        let ok = CatchUnwind(Box::pin(async { 2 })).await;
        assert_eq!(ok, Ok(2));
        let panicked = CatchUnwind(Box::pin(async { panic!("late") })).await;
        assert_eq!(panicked, Err::<(), _>(Panicked("late".into())));
    }
}
