//! The request body HTTP apps receive: hyper's body with the server's
//! `max_body_size` and `body_timeout` applied while it streams, so an app
//! that buffers it can neither be made to hold more than the limit nor be
//! kept waiting forever by a client that stops sending.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};

use crate::error::BoxError;

/// A request body. Reading it yields an error once more than
/// `max_body_size` bytes arrive ([`LengthLimitError`], which axum answers
/// with `413`), or when no bytes arrive for `body_timeout`
/// ([`BodyTimeout`]).
pub struct RequestBody {
    inner: Limited<Incoming>,
    timeout: Duration,
    /// Started the first time a read has to wait; restarted after each frame.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    frame_arrived: bool,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RequestBody {
    /// Wraps `body` with a size limit and a read timeout.
    pub(crate) fn new(body: Incoming, max_size: u64, timeout: Duration) -> RequestBody {
        RequestBody {
            inner: Limited::new(body, usize::try_from(max_size).unwrap_or(usize::MAX)),
            timeout,
            deadline: None,
            frame_arrived: false,
        }
    }

    /// Whether `error`, from reading a body, means it was too large.
    pub fn is_too_large(error: &BoxError) -> bool {
        error.is::<LengthLimitError>()
    }

    /// Whether `error`, from reading a body, means the client stopped sending.
    pub fn is_timeout(error: &BoxError) -> bool {
        error.is::<BodyTimeout>()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.frame_arrived = true;
            return Poll::Ready(frame);
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if std::mem::take(&mut this.frame_arrived) {
            deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + timeout);
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// No part of a request body arrived for the server's `body_timeout`.
#[derive(Debug)]
pub struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no part of the request body arrived for {:?} (body_timeout)",
            self.0
        )
    }
}

impl std::error::Error for BodyTimeout {}
