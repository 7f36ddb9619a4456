//! The Thrift server's answer to health probes: any call of `is_healthy`,
//! in both of baseplate.thrift's forms (`BaseplateService.is_healthy()` and
//! `BaseplateServiceV2.is_healthy(1: IsHealthyRequest request)`, which
//! share the method name on the wire), answered from [`Health`], also when
//! a multiplexing client names a service (`Service:is_healthy`). Every
//! other call goes to the app (and so does this one with
//! `health.answered_by = app`).

use thrift::protocol::{
    TFieldIdentifier, TInputProtocol, TOutputProtocol, TStructIdentifier, TType,
};

use super::{Health, Probe};
use crate::app::thrift::{ThriftRequest, ThriftResponse};

/// The method both health services define.
pub(crate) const METHOD: &str = "is_healthy";

/// The server's answer to `is_healthy`, from `health`. The Thrift
/// connection asks it before the app, so other calls pay one comparison.
#[derive(Clone)]
pub(crate) struct ThriftProbes {
    health: Health,
}

impl ThriftProbes {
    pub(crate) fn new(health: Health) -> ThriftProbes {
        ThriftProbes { health }
    }

    /// Whether `request` is a probe.
    pub(crate) fn is_probe(&self, request: &ThriftRequest) -> bool {
        request.method_name() == METHOD && !request.is_oneway()
    }

    /// The answer to a probe.
    pub(crate) async fn answer(&self, request: ThriftRequest) -> ThriftResponse {
        let probe = match request.read_args(read_args) {
            Ok(probe) => probe,
            Err(e) => return request.error_reply(e),
        };
        let report = self.health.check(probe).await;
        if !report.is_healthy() {
            tracing::debug!(probe = %probe, failed = ?report.failures, "is_healthy: false");
        }
        request
            .reply(|o| write_result(o, report.is_healthy()))
            .unwrap_or_else(|e| request.error_reply(e))
    }
}

/// The probe of `is_healthy`'s arguments: field 1, an `IsHealthyRequest`
/// whose field 1 is the probe. No arguments (the V1 method) or no probe
/// means readiness.
pub(crate) fn read_args(input: &mut dyn TInputProtocol) -> thrift::Result<Probe> {
    let mut probe = Probe::Readiness;
    read_struct(input, |input, id, field_type| match (id, field_type) {
        (Some(1), TType::Struct) => {
            probe = read_request(input)?;
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok(probe)
}

fn read_request(input: &mut dyn TInputProtocol) -> thrift::Result<Probe> {
    let mut probe = Probe::Readiness;
    read_struct(input, |input, id, field_type| match (id, field_type) {
        (Some(1), TType::I32) => {
            probe = Probe::from_number(input.read_i32()?.into());
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok(probe)
}

/// Reads a struct, handing each field to `field`, which reads it and says
/// `true`, or says `false` to have it skipped.
pub(crate) fn read_struct(
    input: &mut dyn TInputProtocol,
    mut field: impl FnMut(&mut dyn TInputProtocol, Option<i16>, TType) -> thrift::Result<bool>,
) -> thrift::Result<()> {
    input.read_struct_begin()?;
    loop {
        let ident = input.read_field_begin()?;
        if ident.field_type == TType::Stop {
            break;
        }
        if !field(input, ident.id, ident.field_type)? {
            input.skip(ident.field_type)?;
        }
        input.read_field_end()?;
    }
    input.read_struct_end()
}

/// Writes `is_healthy_result` with `success` set.
fn write_result(output: &mut dyn TOutputProtocol, healthy: bool) -> thrift::Result<()> {
    output.write_struct_begin(&TStructIdentifier::new("is_healthy_result"))?;
    output.write_field_begin(&TFieldIdentifier::new("success", TType::Bool, 0))?;
    output.write_bool(healthy)?;
    output.write_field_end()?;
    output.write_field_stop()?;
    output.write_struct_end()
}

/// Writes `is_healthy_args` for `probe`: the V2 form.
pub(crate) fn write_args(output: &mut dyn TOutputProtocol, probe: Probe) -> thrift::Result<()> {
    output.write_struct_begin(&TStructIdentifier::new("is_healthy_args"))?;
    output.write_field_begin(&TFieldIdentifier::new("request", TType::Struct, 1))?;
    output.write_struct_begin(&TStructIdentifier::new("IsHealthyRequest"))?;
    output.write_field_begin(&TFieldIdentifier::new("probe", TType::I32, 1))?;
    output.write_i32(probe.number())?;
    output.write_field_end()?;
    output.write_field_stop()?;
    output.write_struct_end()?;
    output.write_field_end()?;
    output.write_field_stop()?;
    output.write_struct_end()
}

/// Reads `is_healthy_result`: `Some(success)`, or `None` when it has no
/// `success` field.
pub(crate) fn read_result(input: &mut dyn TInputProtocol) -> thrift::Result<Option<bool>> {
    let mut success = None;
    read_struct(input, |input, id, field_type| match (id, field_type) {
        (Some(0), TType::Bool) => {
            success = Some(input.read_bool()?);
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok(success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::{with_input, with_output};
    use crate::wire::dialect::Protocol;

    #[test]
    fn the_v2_arguments_carry_the_probe_and_v1_has_none() {
        for protocol in [Protocol::Binary, Protocol::Compact] {
            for probe in Probe::ALL {
                let bytes = with_output(protocol, |o| write_args(o, probe)).unwrap();
                let read = with_input(protocol, &bytes, 1024, read_args).unwrap();
                assert_eq!(read, probe);
            }
            let empty = with_output(protocol, |o| {
                o.write_struct_begin(&TStructIdentifier::new("is_healthy_args"))?;
                o.write_field_stop()?;
                o.write_struct_end()
            })
            .unwrap();
            assert_eq!(
                with_input(protocol, &empty, 1024, read_args).unwrap(),
                Probe::Readiness
            );
            let result = with_output(protocol, |o| write_result(o, false)).unwrap();
            assert_eq!(
                with_input(protocol, &result, 1024, read_result).unwrap(),
                Some(false)
            );
        }
    }
}
