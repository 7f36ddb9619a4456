//! The Thrift wire format, below both the server and the health checker (a
//! client): the five dialects and how a connection's first bytes tell
//! them apart ([`dialect`]), THeader frames ([`header`]), finding where a
//! message ends without decoding it ([`scanner`]), encoding and decoding in
//! either payload protocol (`codec`), and what a reply says of its call
//! ([`outcome`]).

pub(crate) mod codec;
pub mod dialect;
pub mod header;
pub mod outcome;
pub mod scanner;
