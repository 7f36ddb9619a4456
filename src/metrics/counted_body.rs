//! A response body whose size is not known up front (streamed), counted as
//! it is sent: its size is recorded when it ends, or when it is dropped
//! unfinished (a client that went away).

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Bytes;

use super::http::LateSize;
use crate::app::HttpBody;
use crate::error::BoxError;

/// `body`, counted into `late` as it is sent.
pub(crate) fn counted(body: HttpBody, late: LateSize) -> HttpBody {
    Counted {
        inner: body,
        sent: 0,
        late: Some(late),
    }
    .boxed_unsync()
}

struct Counted {
    inner: HttpBody,
    sent: u64,
    late: Option<LateSize>,
}

impl Counted {
    fn record(&mut self) {
        if let Some(late) = self.late.take() {
            late.record(self.sent);
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.record(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.record();
    }
}
