//! What a Thrift reply says of its call: success, or which exception it
//! raised and its baseplate code. The wire carries no type names, but
//! every processor writes its reply through a `TOutputProtocol`, naming
//! each struct as it goes, so `Recorder` reads them off the writes: a
//! result struct whose field is not `0` (success) is a declared exception,
//! the next struct begun is its type, and an `i32` field 1 named `code` in
//! it is baseplate.thrift's `Error.code`.

use thrift::protocol::{
    TFieldIdentifier, TListIdentifier, TMapIdentifier, TMessageIdentifier, TMessageType,
    TOutputProtocol, TSetIdentifier, TStructIdentifier, TType,
};

/// How a call ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOutcome {
    /// The exception the call raised; `None` for success.
    pub exception: Option<RaisedException>,
}

/// An exception a call raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedException {
    /// Its type: the IDL name of a declared exception, or
    /// `TApplicationException` for any other failure.
    pub type_name: String,
    /// Its baseplate `code` field, if it has one.
    pub code: Option<i32>,
}

impl CallOutcome {
    /// A failure answered with a `TApplicationException`.
    pub(crate) fn application_exception() -> CallOutcome {
        CallOutcome {
            exception: Some(RaisedException {
                type_name: "TApplicationException".to_string(),
                code: None,
            }),
        }
    }
}

/// Where the recorder is in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the result struct, or in a success reply.
    Watching,
    /// The result struct began an exception field: the next struct is it.
    ExceptionField,
    /// Inside the exception struct (its depth), looking for `code`.
    InException(u32),
    /// In the exception's `code` field: the next `i32` is it.
    CodeField(u32),
    /// Nothing more to learn.
    Done,
}

/// A `TOutputProtocol` that passes every write through to `inner` and
/// notes what the reply says about the call's outcome.
pub(crate) struct Recorder<'a> {
    inner: &'a mut dyn TOutputProtocol,
    /// How many structs are open.
    depth: u32,
    state: State,
    outcome: CallOutcome,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(inner: &'a mut dyn TOutputProtocol) -> Recorder<'a> {
        Recorder {
            inner,
            depth: 0,
            state: State::Watching,
            outcome: CallOutcome::default(),
        }
    }

    /// The outcome seen.
    pub(crate) fn outcome(self) -> CallOutcome {
        self.outcome
    }
}

impl TOutputProtocol for Recorder<'_> {
    fn write_message_begin(&mut self, identifier: &TMessageIdentifier) -> thrift::Result<()> {
        if identifier.message_type == TMessageType::Exception {
            self.outcome = CallOutcome::application_exception();
            self.state = State::Done;
        }
        self.inner.write_message_begin(identifier)
    }

    fn write_message_end(&mut self) -> thrift::Result<()> {
        self.inner.write_message_end()
    }

    fn write_struct_begin(&mut self, identifier: &TStructIdentifier) -> thrift::Result<()> {
        self.depth += 1;
        if self.state == State::ExceptionField {
            self.outcome = CallOutcome {
                exception: Some(RaisedException {
                    type_name: identifier.name.clone(),
                    code: None,
                }),
            };
            self.state = State::InException(self.depth);
        }
        self.inner.write_struct_begin(identifier)
    }

    fn write_struct_end(&mut self) -> thrift::Result<()> {
        if matches!(self.state, State::InException(d) if d == self.depth) {
            self.state = State::Done;
        }
        self.depth = self.depth.saturating_sub(1);
        self.inner.write_struct_end()
    }

    fn write_field_begin(&mut self, identifier: &TFieldIdentifier) -> thrift::Result<()> {
        match self.state {
            // The result struct's field: 0 is success, any other a declared
            // exception.
            State::Watching if self.depth == 1 => {
                self.state = match (identifier.id, identifier.field_type) {
                    (Some(id), TType::Struct) if id != 0 => State::ExceptionField,
                    _ => State::Done,
                };
            }
            State::InException(d) if d == self.depth => {
                let is_code = identifier.id == Some(1)
                    && identifier.field_type == TType::I32
                    && identifier.name.as_deref().is_none_or(|n| n == "code");
                if is_code {
                    self.state = State::CodeField(d);
                }
            }
            _ => {}
        }
        self.inner.write_field_begin(identifier)
    }

    fn write_field_end(&mut self) -> thrift::Result<()> {
        if let State::CodeField(d) = self.state {
            self.state = State::InException(d);
        }
        self.inner.write_field_end()
    }

    fn write_field_stop(&mut self) -> thrift::Result<()> {
        self.inner.write_field_stop()
    }

    fn write_bool(&mut self, b: bool) -> thrift::Result<()> {
        self.inner.write_bool(b)
    }

    fn write_bytes(&mut self, b: &[u8]) -> thrift::Result<()> {
        self.inner.write_bytes(b)
    }

    fn write_i8(&mut self, i: i8) -> thrift::Result<()> {
        self.inner.write_i8(i)
    }

    fn write_i16(&mut self, i: i16) -> thrift::Result<()> {
        self.inner.write_i16(i)
    }

    fn write_i32(&mut self, i: i32) -> thrift::Result<()> {
        if let State::CodeField(d) = self.state {
            if let Some(exception) = &mut self.outcome.exception {
                exception.code = Some(i);
            }
            self.state = State::InException(d);
        }
        self.inner.write_i32(i)
    }

    fn write_i64(&mut self, i: i64) -> thrift::Result<()> {
        self.inner.write_i64(i)
    }

    fn write_double(&mut self, d: f64) -> thrift::Result<()> {
        self.inner.write_double(d)
    }

    fn write_uuid(&mut self, uuid: &uuid::Uuid) -> thrift::Result<()> {
        self.inner.write_uuid(uuid)
    }

    fn write_string(&mut self, s: &str) -> thrift::Result<()> {
        self.inner.write_string(s)
    }

    fn write_list_begin(&mut self, identifier: &TListIdentifier) -> thrift::Result<()> {
        self.inner.write_list_begin(identifier)
    }

    fn write_list_end(&mut self) -> thrift::Result<()> {
        self.inner.write_list_end()
    }

    fn write_set_begin(&mut self, identifier: &TSetIdentifier) -> thrift::Result<()> {
        self.inner.write_set_begin(identifier)
    }

    fn write_set_end(&mut self) -> thrift::Result<()> {
        self.inner.write_set_end()
    }

    fn write_map_begin(&mut self, identifier: &TMapIdentifier) -> thrift::Result<()> {
        self.inner.write_map_begin(identifier)
    }

    fn write_map_end(&mut self) -> thrift::Result<()> {
        self.inner.write_map_end()
    }

    fn flush(&mut self) -> thrift::Result<()> {
        self.inner.flush()
    }

    fn write_byte(&mut self, b: u8) -> thrift::Result<()> {
        self.inner.write_byte(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::with_output;
    use crate::wire::dialect::Protocol;

    fn record(write: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>) -> CallOutcome {
        let mut outcome = None;
        with_output(Protocol::Binary, |o| {
            let mut recorder = Recorder::new(o);
            write(&mut recorder)?;
            outcome = Some(recorder.outcome());
            Ok(())
        })
        .unwrap();
        outcome.unwrap()
    }

    fn result(field: i16, exception: Option<(&str, Option<i32>)>) -> CallOutcome {
        record(|o| {
            o.write_message_begin(&TMessageIdentifier::new("m", TMessageType::Reply, 1))?;
            o.write_struct_begin(&TStructIdentifier::new("m_result"))?;
            match exception {
                None => {
                    o.write_field_begin(&TFieldIdentifier::new("success", TType::I32, field))?;
                    o.write_i32(7)?;
                    o.write_field_end()?;
                }
                Some((name, code)) => {
                    o.write_field_begin(&TFieldIdentifier::new("e", TType::Struct, field))?;
                    o.write_struct_begin(&TStructIdentifier::new(name))?;
                    if let Some(code) = code {
                        o.write_field_begin(&TFieldIdentifier::new("code", TType::I32, 1))?;
                        o.write_i32(code)?;
                        o.write_field_end()?;
                    }
                    o.write_field_begin(&TFieldIdentifier::new("message", TType::String, 2))?;
                    o.write_string("no")?;
                    o.write_field_end()?;
                    o.write_field_stop()?;
                    o.write_struct_end()?;
                    o.write_field_end()?;
                }
            }
            o.write_field_stop()?;
            o.write_struct_end()?;
            o.write_message_end()
        })
    }

    #[test]
    fn replies_say_success_or_which_exception_with_its_code() {
        assert_eq!(result(0, None), CallOutcome::default());
        assert_eq!(
            result(1, Some(("Oops", None))).exception,
            Some(RaisedException {
                type_name: "Oops".into(),
                code: None
            })
        );
        assert_eq!(
            result(2, Some(("Error", Some(429)))).exception,
            Some(RaisedException {
                type_name: "Error".into(),
                code: Some(429)
            })
        );
        let failed = record(|o| {
            o.write_message_begin(&TMessageIdentifier::new("m", TMessageType::Exception, 1))
        });
        assert_eq!(failed, CallOutcome::application_exception());
    }
}
