//! Property tests of the Thrift framing code: the dialect detector, the
//! THeader decoder and the unframed scanner never panic on arbitrary bytes,
//! and every strict prefix of a valid message asks for more bytes.

use baseplate::wire::dialect::{classify_frame, detect, Protocol};
use baseplate::wire::header::{decode, encode, ZLIB};
use baseplate::wire::scanner::{scan, Scan};
use proptest::prelude::*;
use thrift::protocol::{
    TBinaryOutputProtocol, TCompactOutputProtocol, TFieldIdentifier, TListIdentifier,
    TMapIdentifier, TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};

/// A value to write inside a message.
#[derive(Debug, Clone)]
enum Value {
    Bool(bool),
    I32(i32),
    I64(i64),
    Double(f64),
    Str(String),
    List(Vec<i64>),
    Map(Vec<(String, bool)>),
    Struct(Vec<Value>),
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::I32),
        any::<i64>().prop_map(Value::I64),
        any::<f64>().prop_map(Value::Double),
        ".{0,40}".prop_map(Value::Str),
        proptest::collection::vec(any::<i64>(), 0..20).prop_map(Value::List),
        proptest::collection::vec((".{0,8}", any::<bool>()), 0..6).prop_map(Value::Map),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        proptest::collection::vec(inner, 0..5).prop_map(Value::Struct)
    })
}

fn write_value(out: &mut dyn TOutputProtocol, v: &Value) {
    match v {
        Value::Bool(b) => out.write_bool(*b).unwrap(),
        Value::I32(n) => out.write_i32(*n).unwrap(),
        Value::I64(n) => out.write_i64(*n).unwrap(),
        Value::Double(d) => out.write_double(*d).unwrap(),
        Value::Str(s) => out.write_string(s).unwrap(),
        Value::List(items) => {
            out.write_list_begin(&TListIdentifier::new(TType::I64, items.len() as i32))
                .unwrap();
            for i in items {
                out.write_i64(*i).unwrap();
            }
            out.write_list_end().unwrap();
        }
        Value::Map(pairs) => {
            out.write_map_begin(&TMapIdentifier::new(
                TType::String,
                TType::Bool,
                pairs.len() as i32,
            ))
            .unwrap();
            for (k, b) in pairs {
                out.write_string(k).unwrap();
                out.write_bool(*b).unwrap();
            }
            out.write_map_end().unwrap();
        }
        Value::Struct(fields) => write_struct(out, fields),
    }
}

fn ttype(v: &Value) -> TType {
    match v {
        Value::Bool(_) => TType::Bool,
        Value::I32(_) => TType::I32,
        Value::I64(_) => TType::I64,
        Value::Double(_) => TType::Double,
        Value::Str(_) => TType::String,
        Value::List(_) => TType::List,
        Value::Map(_) => TType::Map,
        Value::Struct(_) => TType::Struct,
    }
}

fn write_struct(out: &mut dyn TOutputProtocol, fields: &[Value]) {
    out.write_struct_begin(&TStructIdentifier::new("s"))
        .unwrap();
    for (i, f) in fields.iter().enumerate() {
        // Field ids with gaps exercise the compact protocol's long form.
        out.write_field_begin(&TFieldIdentifier::new("f", ttype(f), (i as i16) * 20 + 1))
            .unwrap();
        write_value(out, f);
        out.write_field_end().unwrap();
    }
    out.write_field_stop().unwrap();
    out.write_struct_end().unwrap();
}

fn message(protocol: Protocol, name: &str, fields: &[Value]) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut out: Box<dyn TOutputProtocol + '_> = match protocol {
            Protocol::Binary => Box::new(TBinaryOutputProtocol::new(&mut bytes, true)),
            Protocol::Compact => Box::new(TCompactOutputProtocol::new(&mut bytes)),
        };
        out.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Call, 3))
            .unwrap();
        write_struct(&mut *out, fields);
        out.write_message_end().unwrap();
        out.flush().unwrap();
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn scanner_measures_valid_messages_and_asks_for_more_on_prefixes(
        compact in any::<bool>(),
        name in "[a-z_]{1,20}",
        fields in proptest::collection::vec(value(), 0..6),
    ) {
        let protocol = if compact { Protocol::Compact } else { Protocol::Binary };
        let bytes = message(protocol, &name, &fields);
        prop_assert_eq!(scan(protocol, &bytes, 1 << 24), Ok(Scan::Complete(bytes.len())));
        for end in 0..bytes.len() {
            match scan(protocol, &bytes[..end], 1 << 24) {
                Ok(Scan::NeedMore(n)) => prop_assert!(n > end && n <= bytes.len()),
                other => prop_assert!(false, "prefix of {} bytes: {:?}", end, other),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), limit in 0usize..400) {
        let _ = detect(&bytes);
        let _ = classify_frame(&bytes);
        let _ = decode(&bytes, limit);
        let _ = scan(Protocol::Binary, &bytes, limit);
        let _ = scan(Protocol::Compact, &bytes, limit);
    }

    #[test]
    fn header_frames_round_trip_and_truncations_fail_cleanly(
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        info in proptest::collection::vec(("[ -~]{0,10}", "[ -~]{0,10}"), 0..4),
        zlib in any::<bool>(),
        flags in any::<u16>(),
        seq in any::<u32>(),
    ) {
        let transforms: Vec<u32> = if zlib { vec![ZLIB] } else { vec![] };
        let frame = encode(Protocol::Binary, flags, seq, &transforms, &info, &payload);
        let decoded = decode(&frame[4..], 1 << 20).unwrap();
        prop_assert_eq!(&decoded.payload, &payload);
        prop_assert_eq!(&decoded.info, &info);
        prop_assert_eq!((decoded.flags, decoded.seq_id), (flags, seq));
        for end in 4..frame.len() {
            let _ = decode(&frame[4..end], 1 << 20);
        }
    }
}
