//! Property tests of the command-socket wire format.

use einhorn_sim::protocol::{self, decode, encode, escape, unescape, Line, LineReader};
use proptest::prelude::*;
use serde_norway::{Mapping, Value};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        "[ -~\n%]{0,40}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn message() -> impl Strategy<Value = Value> {
    let leaf = scalar();
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Sequence),
            proptest::collection::vec(("[a-z_:]{1,10}", inner), 0..5).prop_map(|pairs| {
                let mut map = Mapping::new();
                for (k, v) in pairs {
                    map.insert(Value::from(k), v);
                }
                Value::Mapping(map)
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn escaping_round_trips(text in any::<String>()) {
        let escaped = escape(&text);
        prop_assert!(!escaped.contains('\n'));
        prop_assert_eq!(unescape(&escaped), text);
    }

    #[test]
    fn messages_round_trip_through_the_wire(value in message()) {
        let line = encode(&value);
        prop_assert!(line.ends_with('\n'));
        prop_assert_eq!(line.matches('\n').count(), 1);
        let back = decode(line.trim_end_matches('\n').as_bytes());
        prop_assert_eq!(back, Some(value));
    }

    #[test]
    fn json_requests_decode(command in "[a-z:_]{1,12}", id in any::<u32>(), args in proptest::collection::vec("[ -~]{0,12}", 0..4)) {
        let json = serde_json::json!({"id": id, "command": command, "args": args}).to_string();
        let request = protocol::Request::from_value(decode(json.as_bytes()).unwrap()).unwrap();
        prop_assert_eq!(request.command(), Some(command.as_str()));
        prop_assert_eq!(request.id().and_then(Value::as_u64), Some(u64::from(id)));
    }

    #[test]
    fn random_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let mut reader = LineReader::default();
        for chunk in &chunks {
            reader.push(chunk);
            while let Some(line) = reader.next_line() {
                match line {
                    Line::Complete(bytes) => {
                        if let Some(value) = decode(&bytes) {
                            let _ = protocol::Request::from_value(value);
                        }
                    }
                    Line::TooLong => break,
                }
            }
        }
    }
}
