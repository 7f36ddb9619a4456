//! The framing both Thrift load generators put around a binary-protocol
//! message: a 4-byte length, then the message, or a THeader frame holding
//! it (binary protocol, no transforms, no info headers).

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
