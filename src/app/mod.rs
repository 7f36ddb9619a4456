//! What an app is once its factory has run: a type-erased tower service
//! the server clones per connection ([`HttpService`] for HTTP,
//! [`ThriftService`] for Thrift), the requests and responses it serves,
//! and the traits that write the bound on the services and layers users
//! register once ([`HttpApp`], [`ThriftApp`]).

pub mod thrift;

pub use self::thrift::{ThriftApp, ThriftRequest, ThriftResponse, ThriftService};

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder};

use crate::error::BoxError;

/// The request type HTTP apps receive.
pub type HttpRequest = http::Request<crate::body::RequestBody>;

/// The response body every HTTP app's body is converted into.
pub type HttpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The response type after conversion.
pub type HttpResponse = http::Response<HttpBody>;

/// An HTTP app as the server holds it: any tower service, boxed.
pub type HttpService = BoxCloneService<HttpRequest, HttpResponse, BoxError>;

/// A body with fixed contents, converted to [`HttpBody`].
pub fn full_body(bytes: impl Into<Bytes>) -> HttpBody {
    Full::new(bytes.into())
        .map_err(|e: Infallible| -> BoxError { match e {} })
        .boxed_unsync()
}

/// What an HTTP app is: any tower service over [`HttpRequest`] that can be
/// cloned per connection and sent across threads, with any body (an
/// `axum::Router`, a `service_fn`, a stack of layers). The bound is written
/// here once; [`Serve::http_app`](crate::Serve::http_app) and
/// [`Serve::http_layer`](crate::Serve::http_layer) take any `HttpApp`.
pub trait HttpApp: Clone + Send + 'static {
    /// Boxes the app into the server's [`HttpService`].
    fn into_http_service(self) -> HttpService;
}

impl<S, B> HttpApp for S
where
    S: Service<HttpRequest, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn into_http_service(self) -> HttpService {
        let service = ServiceBuilder::new()
            .map_err(Into::into)
            .map_response(|res: http::Response<B>| {
                res.map(|b| b.map_err(Into::into).boxed_unsync())
            })
            .service(self);
        BoxCloneService::new(service)
    }
}
