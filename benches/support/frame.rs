//! The calls both Thrift load generators send to the example service, and
//! their framing: a 4-byte length, then the binary-protocol message, or a
//! THeader frame holding it (no transforms, no info headers).

use thrift::protocol::{
    TBinaryOutputProtocol, TFieldIdentifier, TMessageIdentifier, TMessageType, TOutputProtocol,
    TStructIdentifier, TType,
};

/// A framed call of the example service: `add(1, 2)` (`add`), `echo` of
/// 1 KiB (`echo1k`), or `is_healthy()` (`is_healthy`, which the server
/// answers itself unless `health.answered_by = app`).
pub fn example_call(header: bool, method: &str) -> Result<Vec<u8>, String> {
    let name = match method {
        "add" => "add",
        "echo1k" => "echo",
        "is_healthy" => "is_healthy",
        other => {
            return Err(format!(
                "unknown method {other:?}: add, echo1k or is_healthy"
            ))
        }
    };
    let mut payload = Vec::new();
    let mut out = TBinaryOutputProtocol::new(&mut payload, true);
    let write = |out: &mut TBinaryOutputProtocol<&mut Vec<u8>>| -> thrift::Result<()> {
        out.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Call, 1))?;
        out.write_struct_begin(&TStructIdentifier::new("args"))?;
        match name {
            "add" => {
                for id in [1, 2] {
                    out.write_field_begin(&TFieldIdentifier::new("n", TType::I32, id))?;
                    out.write_i32(i32::from(id))?;
                    out.write_field_end()?;
                }
            }
            "echo" => {
                out.write_field_begin(&TFieldIdentifier::new("message", TType::String, 1))?;
                out.write_string(&"x".repeat(1024))?;
                out.write_field_end()?;
            }
            _ => {}
        }
        out.write_field_stop()?;
        out.write_struct_end()?;
        out.write_message_end()
    };
    write(&mut out).map_err(|e| e.to_string())?;
    Ok(frame(header, payload))
}

/// `payload` framed, THeader when `header`.
pub fn frame(header: bool, payload: Vec<u8>) -> Vec<u8> {
    let body = if header {
        let mut frame = vec![0x0F, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0];
        frame.extend_from_slice(&payload);
        frame
    } else {
        payload
    };
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    framed
}
