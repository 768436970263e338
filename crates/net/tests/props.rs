//! Property tests: any value round-trips; arbitrary bytes never panic a receiver.

mod common;

use ppml_net::{NetConfig, NetError, decode, decode_frame_header, in_memory_pair, read_frame};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Kind {
    Unit,
    Share(u64),
    Named { name: String, weights: Vec<i64> },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Msg {
    id: u32,
    round: u64,
    flag: bool,
    shares: Vec<u64>,
    label: String,
    maybe: Option<i16>,
    kind: Kind,
    table: BTreeMap<u8, Vec<u8>>,
    pair: (i128, char),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Unit),
        any::<u64>().prop_map(Kind::Share),
        (".{0,20}", proptest::collection::vec(any::<i64>(), 0..20))
            .prop_map(|(name, weights)| Kind::Named { name, weights }),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(any::<u64>(), 0..100),
        ".{0,40}",
        any::<Option<i16>>(),
        kind(),
        proptest::collection::btree_map(
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..10),
            0..5,
        ),
        (any::<i128>(), any::<char>()),
    )
        .prop_map(
            |(id, round, flag, shares, label, maybe, kind, table, pair)| Msg {
                id,
                round,
                flag,
                shares,
                label,
                maybe,
                kind,
                table,
                pair,
            },
        )
}

fn cfg() -> NetConfig {
    NetConfig::default().with_timeout(Duration::from_secs(5))
}

proptest! {
    #[test]
    fn any_message_round_trips_in_memory(m in msg(), f in any::<f64>(), v in proptest::collection::vec(any::<u64>(), 0..500)) {
        let (mut a, mut b) = in_memory_pair(&cfg());
        a.send(&m).unwrap();
        a.send(&f).unwrap();
        a.send_u64s(&v).unwrap();
        a.send(&v).unwrap();
        prop_assert_eq!(b.recv::<Msg>().unwrap(), m);
        prop_assert_eq!(b.recv::<f64>().unwrap().to_bits(), f.to_bits());
        prop_assert_eq!(b.recv_u64s().unwrap(), v.clone());
        prop_assert_eq!(b.recv::<Vec<u64>>().unwrap(), v);
    }

    #[test]
    fn arbitrary_frames_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (mut a, mut b) = in_memory_pair(&cfg());
        for _ in 0..4 {
            a.send_bytes(bytes.clone()).unwrap();
        }
        let check = |r: Result<(), NetError>| match r {
            Ok(()) | Err(NetError::Decode(_)) => Ok(()),
            Err(e) => Err(TestCaseError::fail(format!("unexpected {e:?}"))),
        };
        check(b.recv::<Msg>().map(drop))?;
        check(b.recv::<Kind>().map(drop))?;
        check(b.recv::<(String, Vec<u64>)>().map(drop))?;
        check(b.recv_u64s().map(drop))?;
        // The pure decoder agrees with the channel and never panics either.
        prop_assert!(matches!(decode::<Msg>(&bytes), Ok(_) | Err(NetError::Decode(_))));
    }

    #[test]
    fn arbitrary_byte_streams_frame_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..400) {
        let mut stream: &[u8] = &bytes;
        loop {
            match read_frame(&mut stream, max, "fuzz") {
                Ok(frame) => prop_assert!(frame.len() <= max),
                Err(NetError::Disconnected { .. }) => { prop_assert!(stream.is_empty()); break }
                Err(NetError::Truncated { expected, got }) => { prop_assert!(got < expected); break }
                Err(NetError::FrameTooLarge { len, max: m }) => { prop_assert!(len > m as u64); break }
                Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
            }
        }
        match decode_frame_header(&bytes, max) {
            Ok(len) => prop_assert!(bytes.len() >= 4 && len <= max),
            Err(NetError::Truncated { .. }) => prop_assert!(bytes.len() < 4),
            Err(NetError::FrameTooLarge { .. }) => prop_assert!(bytes.len() >= 4),
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_message_round_trips_over_tcp(m in msg(), v in proptest::collection::vec(any::<u64>(), 0..2000)) {
        let (mut a, mut b) = common::tcp_pair(&cfg());
        a.send(&m).unwrap();
        a.send_u64s(&v).unwrap();
        prop_assert_eq!(b.recv::<Msg>().unwrap(), m.clone());
        prop_assert_eq!(b.recv_u64s().unwrap(), v);
        b.send(&m).unwrap();
        prop_assert_eq!(a.recv::<Msg>().unwrap(), m);
        prop_assert_eq!(a.stats().bytes_sent, b.stats().bytes_received);
    }
}
