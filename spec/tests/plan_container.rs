//! The plan container: round trips, determinism, and that no byte of a plan goes
//! unchecked (every truncation, every bit flip, arbitrary mutations are refused).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use proptest::prelude::*;
use relaydc_spec::plan::container::{
    self, open, open_public, parse_header, read_header, source_digest, write, ContainerError,
    Flags, Header, FORMAT_VERSION, HEADER_LEN, REBUILD_COMMAND,
};
use sha2::{Digest, Sha256};

const VERSION: &str = "relaydc 0.1.0";

fn body() -> Vec<u8> {
    (0..300u32).map(|i| (i * 7 + 3) as u8).collect()
}

fn keys() -> Vec<u8> {
    b"-----BEGIN PRIVATE KEY-----\nnot really a key\n-----END PRIVATE KEY-----\n".to_vec()
}

fn digest() -> [u8; 32] {
    source_digest(&[
        ("relayd.conf", b"relay \"www\" {\n}\n"),
        ("tables.conf", b"table <web> { 127.0.0.1 }\n"),
    ])
}

fn sample() -> Vec<u8> {
    write(VERSION, Flags::LATE_BIND, digest(), &body(), &keys())
}

/// Recomputes the header digest after a deliberate header edit.
fn reseal(file: &mut [u8]) {
    let sha: [u8; 32] = Sha256::digest(&file[..HEADER_LEN - 32]).into();
    file[HEADER_LEN - 32..HEADER_LEN].copy_from_slice(&sha);
}

#[test]
fn round_trip() {
    let file = sample();
    assert_eq!(file.len(), HEADER_LEN + body().len() + keys().len());
    let opened = open(&file).unwrap();
    assert_eq!(opened.body, &body()[..]);
    assert_eq!(opened.keys, &keys()[..]);
    let h = &opened.header;
    assert_eq!(h.format_version, FORMAT_VERSION);
    assert_eq!(h.flags, Flags::LATE_BIND.union(Flags::HAS_KEYS));
    assert_eq!(h.compiler_version, VERSION);
    assert_eq!(h.source_digest, digest());
    assert_eq!(h.body_len, body().len() as u64);
    assert_eq!(h.keys_len, keys().len() as u64);
    let body_sha: [u8; 32] = Sha256::digest(body()).into();
    assert_eq!(h.body_sha256, body_sha);
    assert_eq!(read_header(&file).unwrap(), *h);
    assert_eq!(parse_header(&file[..HEADER_LEN]).unwrap(), *h);
    assert_eq!(h.file_len(), file.len() as u64);
}

#[test]
fn round_trip_empty_sections() {
    let file = write(VERSION, Flags::EMPTY, [0; 32], &[], &[]);
    assert_eq!(file.len(), HEADER_LEN);
    let opened = open(&file).unwrap();
    assert!(opened.body.is_empty() && opened.keys.is_empty());
    assert_eq!(opened.header.flags, Flags::EMPTY);
    let (h, b) = open_public(&file).unwrap();
    assert_eq!(h, opened.header);
    assert!(b.is_empty());
}

#[test]
fn has_keys_follows_the_keys_section() {
    let with = write(VERSION, Flags::EMPTY, [0; 32], b"b", b"k");
    assert!(open(&with).unwrap().header.flags.contains(Flags::HAS_KEYS));
    let without = write(VERSION, Flags::HAS_KEYS, [0; 32], b"b", b"");
    assert!(!open(&without)
        .unwrap()
        .header
        .flags
        .contains(Flags::HAS_KEYS));
}

#[test]
fn header_is_a_multiple_of_16() {
    assert_eq!(HEADER_LEN & 15, 0);
}

#[test]
fn compiler_version_is_cut_to_the_field() {
    let long = "relaydc 0.1.0 with a very long suffix ééé";
    let file = write(long, Flags::EMPTY, [0; 32], b"x", b"");
    let v = open(&file).unwrap().header.compiler_version;
    assert!(v.len() <= container::COMPILER_VERSION_LEN);
    assert!(long.starts_with(&v));
    // A multi-byte character straddling the 32-byte limit is dropped, not split.
    let tricky = format!("{}é", "a".repeat(31));
    let file = write(&tricky, Flags::EMPTY, [0; 32], b"x", b"");
    assert_eq!(open(&file).unwrap().header.compiler_version, "a".repeat(31));
    let nul = write("relaydc\0junk", Flags::EMPTY, [0; 32], b"x", b"");
    assert_eq!(open(&nul).unwrap().header.compiler_version, "relaydc");
}

#[test]
fn deterministic() {
    assert_eq!(sample(), sample());
    assert_ne!(
        sample(),
        write(VERSION, Flags::EMPTY, digest(), &body(), &keys())
    );
}

#[test]
fn source_digest_is_unambiguous() {
    let a = source_digest(&[("a", b"bc")]);
    let b = source_digest(&[("ab", b"c")]);
    let c = source_digest(&[("a", b""), ("b", b"c")]);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_ne!(b, c);
    assert_eq!(a, source_digest(&[("a", b"bc")]));
    // Order matters.
    assert_ne!(
        source_digest(&[("x", b"1"), ("y", b"2")]),
        source_digest(&[("y", b"2"), ("x", b"1")])
    );
}

#[test]
fn every_truncation_is_refused() {
    let file = sample();
    for len in 0..file.len() {
        let cut = &file[..len];
        assert!(open(cut).is_err(), "open accepted a cut at {len}");
        assert!(
            read_header(cut).is_err(),
            "read_header accepted a cut at {len}"
        );
    }
    // The public prefix: everything shorter than header + body is refused.
    let public = HEADER_LEN + body().len();
    for len in 0..public {
        assert!(open_public(&file[..len]).is_err(), "cut at {len}");
    }
    let err = open(&file[..file.len() - 1]).unwrap_err();
    assert_eq!(
        err,
        ContainerError::Truncated {
            len: file.len() as u64 - 1,
            expected: file.len() as u64
        }
    );
    assert!(err.to_string().contains(REBUILD_COMMAND));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut file = sample();
    file.push(0);
    let err = open(&file).unwrap_err();
    assert!(
        matches!(err, ContainerError::TrailingBytes { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(REBUILD_COMMAND));
    assert!(read_header(&file).is_err());
}

#[test]
fn every_bit_flip_is_refused() {
    let file = sample();
    let public = HEADER_LEN + body().len();
    for pos in 0..file.len() {
        for pattern in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
            let mut bad = file.clone();
            bad[pos] ^= pattern;
            let err = open(&bad).unwrap_err();
            if pos >= public {
                assert_eq!(err, ContainerError::KeysChecksum, "pos {pos}");
            } else if pos >= HEADER_LEN {
                assert_eq!(err, ContainerError::BodyChecksum, "pos {pos}");
                assert!(open_public(&bad[..public]).is_err(), "public, pos {pos}");
            } else {
                assert!(read_header(&bad).is_err(), "read_header, pos {pos}");
                assert!(open_public(&bad[..public]).is_err(), "public, pos {pos}");
            }
            assert!(!err.to_string().is_empty());
        }
    }
}

#[test]
fn wrong_version() {
    let mut file = sample();
    // A plan of the previous format (1: before `nodelay` could be left unset).
    file[8..12].copy_from_slice(&1u32.to_le_bytes());
    reseal(&mut file);
    let err = open(&file).unwrap_err();
    assert_eq!(err, ContainerError::WrongVersion { found: 1 });
    let msg = err.to_string();
    assert!(msg.contains("version 1"), "{msg}");
    assert!(msg.contains("reads version 2"), "{msg}");
    assert!(msg.contains(REBUILD_COMMAND), "{msg}");
    // Also without resealing: the version is judged before the checksum.
    let mut file = sample();
    file[8..12].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(
        read_header(&file).unwrap_err(),
        ContainerError::WrongVersion { found: 7 }
    );
}

#[test]
fn a_relayd_conf_is_not_a_plan() {
    let text = b"relay \"www\" {\n\tlisten on 127.0.0.1 port 80\n}\n";
    for input in [&text[..], &text[..13]] {
        let err = open(input).unwrap_err();
        assert!(matches!(err, ContainerError::NotAPlan { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("not a relaydc plan"), "{msg}");
        assert!(msg.contains("relay \\\"www\\\" {"), "{msg}");
        assert!(msg.contains("relayd.conf"), "{msg}");
        assert!(msg.contains(REBUILD_COMMAND), "{msg}");
    }
    let bin = open(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]).unwrap_err();
    assert!(bin.to_string().contains("7f 45 4c 46"), "{bin}");
}

#[test]
fn short_files() {
    assert_eq!(open(b"").unwrap_err(), ContainerError::TooShort { len: 0 });
    assert_eq!(
        open(b"RELAY").unwrap_err(),
        ContainerError::TooShort { len: 5 }
    );
    let file = sample();
    assert_eq!(
        open(&file[..100]).unwrap_err(),
        ContainerError::TooShort { len: 100 }
    );
    assert!(open(&file[..100])
        .unwrap_err()
        .to_string()
        .contains(REBUILD_COMMAND));
}

#[test]
fn resealed_header_edits_are_caught_by_their_own_checks() {
    let base = sample();
    // Unknown flag bit.
    let mut f = base.clone();
    f[12] |= 0x80;
    reseal(&mut f);
    assert_eq!(
        open(&f).unwrap_err(),
        ContainerError::UnknownFlags { bits: 0x80 }
    );
    // HAS_KEYS cleared although keys are present.
    let mut f = base.clone();
    f[12] &= !0x02;
    reseal(&mut f);
    assert!(matches!(
        open(&f).unwrap_err(),
        ContainerError::KeysFlagMismatch {
            has_keys_flag: false,
            ..
        }
    ));
    // Reserved byte.
    let mut f = base.clone();
    f[200] = 1;
    reseal(&mut f);
    assert_eq!(
        open(&f).unwrap_err(),
        ContainerError::ReservedNonZero { offset: 200 }
    );
    // Compiler version not UTF-8.
    let mut f = base.clone();
    f[16] = 0xff;
    reseal(&mut f);
    assert_eq!(open(&f).unwrap_err(), ContainerError::CompilerVersion);
    // Garbage after the NUL padding begins.
    let mut f = base.clone();
    f[47] = b'x';
    reseal(&mut f);
    assert_eq!(open(&f).unwrap_err(), ContainerError::CompilerVersion);
    // Lengths that overflow.
    let mut f = base.clone();
    f[80..88].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal(&mut f);
    assert_eq!(open(&f).unwrap_err(), ContainerError::TooLarge);
    // A body length that is merely wrong.
    let mut f = base.clone();
    f[80..88].copy_from_slice(&1_000_000u64.to_le_bytes());
    reseal(&mut f);
    assert!(matches!(
        open(&f).unwrap_err(),
        ContainerError::Truncated { .. }
    ));
}

#[test]
fn open_public_never_needs_the_keys() {
    let file = sample();
    let header = parse_header(&file[..HEADER_LEN]).unwrap();
    let public = usize::try_from(header.public_len()).unwrap();
    assert_eq!(public, HEADER_LEN + body().len());
    // The keys section is garbage here: open_public never sees it.
    let mut prefix = file[..public].to_vec();
    let (h, b) = open_public(&prefix).unwrap();
    assert_eq!(b, &body()[..]);
    assert_eq!(h.keys_len, keys().len() as u64);
    assert_eq!(h, open(&file).unwrap().header);
    // Handing it the whole file is refused: the relay must never read the keys.
    let err = open_public(&file).unwrap_err();
    assert!(
        matches!(err, ContainerError::PublicPrefixTooLong { .. }),
        "{err:?}"
    );
    // A corrupted keys section in the file does not matter to the public part.
    let mut whole = file.clone();
    let last = whole.len() - 1;
    whole[last] ^= 1;
    assert!(open_public(&whole[..public]).is_ok());
    assert_eq!(open(&whole).unwrap_err(), ContainerError::KeysChecksum);
    // But a corrupted body does.
    prefix[HEADER_LEN] ^= 1;
    assert_eq!(
        open_public(&prefix).unwrap_err(),
        ContainerError::BodyChecksum
    );
}

#[test]
fn every_message_is_one_sentence() {
    let errors = [
        ContainerError::TooShort { len: 3 },
        ContainerError::NotAPlan {
            first_bytes: b"relay".to_vec(),
        },
        ContainerError::NotAPlan {
            first_bytes: vec![0, 1, 2],
        },
        ContainerError::WrongVersion { found: 9 },
        ContainerError::HeaderChecksum,
        ContainerError::BodyChecksum,
        ContainerError::KeysChecksum,
        ContainerError::Truncated {
            len: 1,
            expected: 2,
        },
        ContainerError::TrailingBytes {
            len: 3,
            expected: 2,
        },
        ContainerError::TooLarge,
        ContainerError::UnknownFlags { bits: 4 },
        ContainerError::KeysFlagMismatch {
            has_keys_flag: true,
            keys_len: 0,
        },
        ContainerError::ReservedNonZero { offset: 170 },
        ContainerError::CompilerVersion,
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
        assert!(msg.contains(REBUILD_COMMAND), "{msg}");
    }
    let internal = ContainerError::PublicPrefixTooLong {
        len: 3,
        expected: 2,
    };
    assert!(internal.to_string().starts_with("internal error"));
}

fn check_any(bytes: &[u8]) {
    // None of these may panic, whatever the input.
    let _ = open(bytes).map_err(|e| e.to_string());
    let _ = read_header(bytes).map_err(|e| e.to_string());
    let _ = parse_header(bytes).map_err(|e| e.to_string());
    let _ = open_public(bytes).map_err(|e| e.to_string());
}

#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Xor(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Xor(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(file: &mut Vec<u8>, m: &Mutation) {
    let n = file.len();
    match m {
        Mutation::Set(i, b) if n > 0 => file[i % n] = *b,
        Mutation::Xor(i, b) if n > 0 => file[i % n] ^= *b,
        Mutation::Truncate(i) => file.truncate(i % (n + 1)),
        Mutation::Append(bytes) => file.extend_from_slice(bytes),
        Mutation::Insert(i, b) => file.insert(i % (n + 1), *b),
        Mutation::Remove(i) if n > 0 => {
            file.remove(i % n);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_any(&bytes);
        // And with a valid magic and version, so the deeper checks run too.
        let mut framed = b"RELAYDPL\x01\x00\x00\x00".to_vec();
        framed.extend_from_slice(&bytes);
        check_any(&framed);
        prop_assert!(open(&framed).is_err());
    }

    #[test]
    fn mutations_never_panic_and_only_the_original_opens(
        muts in proptest::collection::vec(mutation(), 1..6)
    ) {
        let original = sample();
        let mut file = original.clone();
        for m in &muts {
            apply(&mut file, m);
        }
        check_any(&file);
        prop_assert_eq!(open(&file).is_ok(), file == original);
    }

    #[test]
    fn any_sections_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        keys in proptest::collection::vec(any::<u8>(), 0..100),
        late in any::<bool>(),
        version in "[ -~]{0,40}",
        digest in any::<[u8; 32]>(),
    ) {
        let flags = if late { Flags::LATE_BIND } else { Flags::EMPTY };
        let file = write(&version, flags, digest, &body, &keys);
        let opened = open(&file).unwrap();
        prop_assert_eq!(opened.body, &body[..]);
        prop_assert_eq!(opened.keys, &keys[..]);
        prop_assert_eq!(opened.header.source_digest, digest);
        prop_assert_eq!(opened.header.flags.contains(Flags::LATE_BIND), late);
        prop_assert!(version.starts_with(&opened.header.compiler_version));
        let public = usize::try_from(opened.header.public_len()).unwrap();
        let (h, b): (Header, &[u8]) = open_public(&file[..public]).unwrap();
        prop_assert_eq!(h, opened.header.clone());
        prop_assert_eq!(b, &body[..]);
    }
}
