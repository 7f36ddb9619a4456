//! A synchronous processor (code from `thrift --gen rs`) as a
//! [`ThriftService`](super::ThriftService): each call runs on the handler
//! threads ([`super::threads`]), never on an async worker, unless the
//! server asks for `execution = inline`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use thrift::server::TProcessor;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::{debug, warn, Span};

use super::context;
use super::errors::{HandlerPanicked, MalformedCall};
use super::threads::HandlerThreads;
use crate::app::thrift::{ThriftRequest, ThriftResponse, ThriftService};
use crate::error::BoxError;
use crate::server::catch_unwind;
use crate::trace;
use crate::wire::codec::{recorded_output, with_input, with_output};

/// A Thrift app as its factory returns it: any sync processor, and the
/// IDL service its type names, for the call's exported span.
#[derive(Clone)]
pub(crate) struct ThriftProcessor {
    processor: Processor,
    service: Option<&'static str>,
}

type Processor = Arc<dyn TProcessor + Send + Sync>;

impl ThriftProcessor {
    pub(crate) fn new<P: TProcessor + Send + Sync + 'static>(processor: P) -> ThriftProcessor {
        ThriftProcessor {
            processor: Arc::new(processor),
            service: service_named_by(std::any::type_name::<P>()),
        }
    }
}

/// The IDL service a processor's type names: `Example` for
/// `my_crate::example::ExampleSyncProcessor<Handler>`, as `thrift --gen rs`
/// and `baseplate-thrift` name their sync processors; `None` for any other
/// type (a multiplexed processor's callers name the service themselves).
fn service_named_by(type_name: &'static str) -> Option<&'static str> {
    let path = type_name.split('<').next()?;
    let name = path.rsplit("::").next()?;
    name.strip_suffix("SyncProcessor").filter(|s| !s.is_empty())
}

/// Serves calls with a sync processor (see the module docs).
#[derive(Clone)]
pub(crate) struct SyncProcessor {
    processor: ThriftProcessor,
    /// `None` for `execution = inline`: the call runs on the async worker.
    threads: Option<HandlerThreads>,
}

impl SyncProcessor {
    pub(crate) fn new(
        processor: ThriftProcessor,
        execution: Execution,
        max_threads: usize,
    ) -> SyncProcessor {
        SyncProcessor {
            processor,
            threads: match execution {
                Execution::Threads => Some(HandlerThreads::new(max_threads)),
                Execution::Inline => None,
            },
        }
    }
}

/// What a handler thread sends back: the processor's reply, or its panic.
type Outcome = Result<Result<ThriftResponse, BoxError>, catch_unwind::Panicked>;

/// The reply of a call on a handler thread.
pub(crate) struct Pending(PendingState);

enum PendingState {
    Ready(Option<Result<ThriftResponse, BoxError>>),
    Waiting(oneshot::Receiver<Outcome>),
    /// Every handler slot of the call's connection is taken: waits for one,
    /// then for the reply.
    Queued(Pin<Box<dyn Future<Output = Result<ThriftResponse, BoxError>> + Send>>),
}

impl Future for Pending {
    type Output = Result<ThriftResponse, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            PendingState::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err("polled after completion".into())),
            ),
            PendingState::Waiting(rx) => Pin::new(rx).poll(cx).map(received),
            PendingState::Queued(future) => future.as_mut().poll(cx),
        }
    }
}

/// The call's result from what its handler thread sent.
fn received(
    received: Result<Outcome, oneshot::error::RecvError>,
) -> Result<ThriftResponse, BoxError> {
    match received {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err(HandlerPanicked.into()),
        Err(_) => Err("the handler thread exited without a reply".into()),
    }
}

impl tower::Service<ThriftRequest> for SyncProcessor {
    type Response = ThriftResponse;
    type Error = BoxError;
    type Future = Pending;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ThriftRequest) -> Pending {
        if let Some(service) = self.processor.service {
            request.record_service_name(service);
        }
        let processor = Arc::clone(&self.processor.processor);
        let Some(threads) = &self.threads else {
            // Inline: a panic unwinds into the server, which answers it.
            return Pending(PendingState::Ready(Some(run(&*processor, &request))));
        };
        let slot = match &request.connection_slots {
            None => None,
            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    // The connection's calls hold all their slots: wait for
                    // one (the server's deadline still bounds the wait).
                    let slots = Arc::clone(slots);
                    let threads = threads.clone();
                    return Pending(PendingState::Queued(Box::pin(async move {
                        let slot = slots
                            .acquire_owned()
                            .await
                            .map_err(|_| "the connection's handler slots are closed")?;
                        received(start(&threads, processor, request, Some(slot)).await)
                    })));
                }
            },
        };
        Pending(PendingState::Waiting(start(
            threads, processor, request, slot,
        )))
    }
}

/// Hands the call to a handler thread, holding `slot` until the handler
/// ends. A call whose caller is gone by the time a thread takes it (its
/// deadline passed, or its connection closed, while it was queued) is
/// never started.
fn start(
    threads: &HandlerThreads,
    processor: Processor,
    request: ThriftRequest,
    slot: Option<OwnedSemaphorePermit>,
) -> oneshot::Receiver<Outcome> {
    let (tx, rx) = oneshot::channel();
    // The call's span, so the handler's log lines carry its trace id.
    let span = Span::current();
    threads.run(move || {
        let _slot = slot;
        let expired = request.deadline.is_some_and(|d| d.at <= Instant::now());
        if tx.is_closed() || expired {
            span.in_scope(|| {
                debug!(
                    "{}: the caller was answered or left while the call was queued; not started",
                    request.method
                )
            });
            return;
        }
        let result = span.in_scope(|| catch_unwind::call(|| run(&*processor, &request)));
        if tx.send(result).is_err() {
            span.in_scope(|| {
                warn!(
                    "the handler of {} finished after its caller was answered (timed out) or left; its reply was dropped",
                    request.method
                )
            });
        }
    });
    rx
}

/// Runs the processor over one call, with the call's headers and trace id
/// as this thread's.
fn run(
    processor: &(dyn TProcessor + Send + Sync),
    request: &ThriftRequest,
) -> Result<ThriftResponse, BoxError> {
    context::with_headers(request.headers.clone(), || {
        trace::with_thread(request.trace.trace_id.clone(), || {
            let mut failure = None;
            let process = |output: &mut dyn thrift::protocol::TOutputProtocol| {
                with_input(
                    request.protocol,
                    &request.message,
                    request.max_size,
                    |input| {
                        if let Err(e) = processor.process(input, output) {
                            failure = Some(e);
                        }
                    },
                );
                Ok(())
            };
            let (out, outcome) = if request.record_outcome {
                let (out, outcome) = recorded_output(request.protocol, process).unwrap_or_default();
                (out, Some(outcome))
            } else {
                (
                    with_output(request.protocol, process).unwrap_or_default(),
                    None,
                )
            };
            match failure {
                // The processor answers every error it can with an
                // exception; with nothing written, the message was unreadable.
                Some(e) if out.is_empty() && !request.is_oneway() => {
                    Err(MalformedCall(e.to_string()).into())
                }
                _ => {
                    let response = ThriftResponse::encoded(out);
                    Ok(match outcome {
                        Some(outcome) => response.with_outcome(outcome),
                        None => response,
                    })
                }
            }
        })
    })
}

/// Where a synchronous processor runs (server option `execution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Execution {
    /// On the handler threads, never on an async worker: a handler that
    /// blocks delays only its own call. The default.
    #[default]
    #[serde(alias = "blocking")]
    Threads,
    /// On the async worker that read the call: no thread handoff, but a
    /// handler that blocks stalls every connection that worker serves.
    /// Only for handlers that never block.
    Inline,
}

/// A sync processor as a [`ThriftService`], run as `execution` says, on at
/// most `max_threads` handler threads.
pub(crate) fn processor_service(
    processor: ThriftProcessor,
    execution: Execution,
    max_threads: usize,
) -> ThriftService {
    ThriftService::new(SyncProcessor::new(processor, execution, max_threads))
}

#[cfg(test)]
mod tests {
    use super::service_named_by;

    #[test]
    fn a_generated_sync_processor_names_its_service() {
        use crate::example_apps::example_thrift::ExampleSyncProcessor;
        use crate::example_apps::thrift::ExampleHandler;
        let name = std::any::type_name::<ExampleSyncProcessor<ExampleHandler>>();
        assert_eq!(service_named_by(name), Some("Example"), "{name}");
    }

    #[test]
    fn other_processors_name_none() {
        let multiplexed = std::any::type_name::<thrift::server::TMultiplexedProcessor>();
        assert_eq!(service_named_by(multiplexed), None);
        assert_eq!(service_named_by("app::SyncProcessor"), None);
        assert_eq!(
            service_named_by("app::Mine<app::ExampleSyncProcessor>"),
            None
        );
    }
}
