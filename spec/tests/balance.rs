//! Balancing (`relaydc_spec::balance`): SipHash-2-4 known answers, the bytes each mode
//! hashes, every mode's choice against relayd's `relay_from_table`, table selection, and
//! the laws (never a down host, `Some` iff a host is up, round-robin visits in order).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use proptest::prelude::*;
use relaydc_spec::balance::{
    choose_table, counts_as_up, hash_index, pick, sip_key, Hasher, PickInputs, TableState,
    TableStatus, MAX_HASH_TRIES, MAX_HOSTS,
};
use relaydc_spec::plan::Mode;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The SipHash paper's test vectors (reference implementation `vectors.h`): SipHash-2-4
/// with key 00 01 … 0f of the message 00 01 … (n−1), n = 0..64, as output bytes.
#[rustfmt::skip]
const VECTORS: [[u8; 8]; 64] = [
    [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72],
    [0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74],
    [0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d],
    [0x2d, 0x7e, 0xfb, 0xd7, 0x96, 0x66, 0x67, 0x85],
    [0xb7, 0x87, 0x71, 0x27, 0xe0, 0x94, 0x27, 0xcf],
    [0x8d, 0xa6, 0x99, 0xcd, 0x64, 0x55, 0x76, 0x18],
    [0xce, 0xe3, 0xfe, 0x58, 0x6e, 0x46, 0xc9, 0xcb],
    [0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab],
    [0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93],
    [0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e],
    [0xf3, 0xb9, 0xdd, 0x94, 0xc5, 0xbb, 0x5d, 0x7a],
    [0xa7, 0xad, 0x6b, 0x22, 0x46, 0x2f, 0xb3, 0xf4],
    [0xfb, 0xe5, 0x0e, 0x86, 0xbc, 0x8f, 0x1e, 0x75],
    [0x90, 0x3d, 0x84, 0xc0, 0x27, 0x56, 0xea, 0x14],
    [0xee, 0xf2, 0x7a, 0x8e, 0x90, 0xca, 0x23, 0xf7],
    [0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1],
    [0xdb, 0x9b, 0xc2, 0x57, 0x7f, 0xcc, 0x2a, 0x3f],
    [0x94, 0x47, 0xbe, 0x2c, 0xf5, 0xe9, 0x9a, 0x69],
    [0x9c, 0xd3, 0x8d, 0x96, 0xf0, 0xb3, 0xc1, 0x4b],
    [0xbd, 0x61, 0x79, 0xa7, 0x1d, 0xc9, 0x6d, 0xbb],
    [0x98, 0xee, 0xa2, 0x1a, 0xf2, 0x5c, 0xd6, 0xbe],
    [0xc7, 0x67, 0x3b, 0x2e, 0xb0, 0xcb, 0xf2, 0xd0],
    [0x88, 0x3e, 0xa3, 0xe3, 0x95, 0x67, 0x53, 0x93],
    [0xc8, 0xce, 0x5c, 0xcd, 0x8c, 0x03, 0x0c, 0xa8],
    [0x94, 0xaf, 0x49, 0xf6, 0xc6, 0x50, 0xad, 0xb8],
    [0xea, 0xb8, 0x85, 0x8a, 0xde, 0x92, 0xe1, 0xbc],
    [0xf3, 0x15, 0xbb, 0x5b, 0xb8, 0x35, 0xd8, 0x17],
    [0xad, 0xcf, 0x6b, 0x07, 0x63, 0x61, 0x2e, 0x2f],
    [0xa5, 0xc9, 0x1d, 0xa7, 0xac, 0xaa, 0x4d, 0xde],
    [0x71, 0x65, 0x95, 0x87, 0x66, 0x50, 0xa2, 0xa6],
    [0x28, 0xef, 0x49, 0x5c, 0x53, 0xa3, 0x87, 0xad],
    [0x42, 0xc3, 0x41, 0xd8, 0xfa, 0x92, 0xd8, 0x32],
    [0xce, 0x7c, 0xf2, 0x72, 0x2f, 0x51, 0x27, 0x71],
    [0xe3, 0x78, 0x59, 0xf9, 0x46, 0x23, 0xf3, 0xa7],
    [0x38, 0x12, 0x05, 0xbb, 0x1a, 0xb0, 0xe0, 0x12],
    [0xae, 0x97, 0xa1, 0x0f, 0xd4, 0x34, 0xe0, 0x15],
    [0xb4, 0xa3, 0x15, 0x08, 0xbe, 0xff, 0x4d, 0x31],
    [0x81, 0x39, 0x62, 0x29, 0xf0, 0x90, 0x79, 0x02],
    [0x4d, 0x0c, 0xf4, 0x9e, 0xe5, 0xd4, 0xdc, 0xca],
    [0x5c, 0x73, 0x33, 0x6a, 0x76, 0xd8, 0xbf, 0x9a],
    [0xd0, 0xa7, 0x04, 0x53, 0x6b, 0xa9, 0x3e, 0x0e],
    [0x92, 0x59, 0x58, 0xfc, 0xd6, 0x42, 0x0c, 0xad],
    [0xa9, 0x15, 0xc2, 0x9b, 0xc8, 0x06, 0x73, 0x18],
    [0x95, 0x2b, 0x79, 0xf3, 0xbc, 0x0a, 0xa6, 0xd4],
    [0xf2, 0x1d, 0xf2, 0xe4, 0x1d, 0x45, 0x35, 0xf9],
    [0x87, 0x57, 0x75, 0x19, 0x04, 0x8f, 0x53, 0xa9],
    [0x10, 0xa5, 0x6c, 0xf5, 0xdf, 0xcd, 0x9a, 0xdb],
    [0xeb, 0x75, 0x09, 0x5c, 0xcd, 0x98, 0x6c, 0xd0],
    [0x51, 0xa9, 0xcb, 0x9e, 0xcb, 0xa3, 0x12, 0xe6],
    [0x96, 0xaf, 0xad, 0xfc, 0x2c, 0xe6, 0x66, 0xc7],
    [0x72, 0xfe, 0x52, 0x97, 0x5a, 0x43, 0x64, 0xee],
    [0x5a, 0x16, 0x45, 0xb2, 0x76, 0xd5, 0x92, 0xa1],
    [0xb2, 0x74, 0xcb, 0x8e, 0xbf, 0x87, 0x87, 0x0a],
    [0x6f, 0x9b, 0xb4, 0x20, 0x3d, 0xe7, 0xb3, 0x81],
    [0xea, 0xec, 0xb2, 0xa3, 0x0b, 0x22, 0xa8, 0x7f],
    [0x99, 0x24, 0xa4, 0x3c, 0xc1, 0x31, 0x57, 0x24],
    [0xbd, 0x83, 0x8d, 0x3a, 0xaf, 0xbf, 0x8d, 0xb7],
    [0x0b, 0x1a, 0x2a, 0x32, 0x65, 0xd5, 0x1a, 0xea],
    [0x13, 0x50, 0x79, 0xa3, 0x23, 0x1c, 0xe6, 0x60],
    [0x93, 0x2b, 0x28, 0x46, 0xe4, 0xd7, 0x06, 0x66],
    [0xe1, 0x91, 0x5f, 0x5c, 0xb1, 0xec, 0xa4, 0x6c],
    [0xf3, 0x25, 0x96, 0x5c, 0xa1, 0x6d, 0x62, 0x9f],
    [0x57, 0x5f, 0xf2, 0x8e, 0x60, 0x38, 0x1b, 0xe5],
    [0x72, 0x45, 0x06, 0xeb, 0x4c, 0x32, 0x8a, 0x95],
];

const PAPER_KEY: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];

fn message(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A stand-alone SipHash-2-4 of `bytes` with standard key bytes, for expected values.
fn sip(key: &[u8; 16], bytes: &[u8]) -> u64 {
    let mut h = Hasher::from_sip_key(key);
    h.feed(bytes);
    h.finish()
}

/// `pick` with the hash inputs spelled out.
fn pick_with(
    mode: &Mode,
    up: &[bool],
    state: &mut TableState,
    hasher: &mut Hasher,
    client: IpAddr,
    listen: (IpAddr, u16),
    random: u64,
) -> Option<usize> {
    pick(
        mode,
        up,
        state,
        PickInputs {
            hasher,
            client,
            listen: listen.0,
            listen_port: listen.1,
            random,
        },
    )
}

const LISTEN: (IpAddr, u16) = (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 80);
const KEY: [u8; 16] = *b"relaydc test key";

// ---------------------------------------------------------------------------------------
// SipHash-2-4

#[test]
fn siphash_reference_vectors() {
    for (n, want) in VECTORS.iter().enumerate() {
        let want = u64::from_le_bytes(*want);
        assert_eq!(sip(&PAPER_KEY, &message(n)), want, "length {n}");
    }
    // The paper's worked example (appendix A): 15 bytes → a129ca6149be45e5.
    assert_eq!(sip(&PAPER_KEY, &message(15)), 0xa129_ca61_49be_45e5);
}

#[test]
fn siphash_is_incremental() {
    // Fed a byte at a time, or in uneven pieces, the result is the same.
    for (n, vector) in VECTORS.iter().enumerate() {
        let msg = message(n);
        let want = u64::from_le_bytes(*vector);
        let mut one = Hasher::from_sip_key(&PAPER_KEY);
        for b in &msg {
            one.feed(std::slice::from_ref(b));
        }
        assert_eq!(one.finish(), want, "bytewise, length {n}");
        for cut in [1usize, 3, 7, 8, 9, 13] {
            let mut h = Hasher::from_sip_key(&PAPER_KEY);
            for chunk in msg.chunks(cut) {
                h.feed(chunk);
                h.feed(&[]);
            }
            assert_eq!(h.finish(), want, "chunks of {cut}, length {n}");
        }
    }
}

#[test]
fn finish_keeps_and_end_resets() {
    let mut h = Hasher::from_sip_key(&PAPER_KEY);
    h.feed(&message(9));
    assert_eq!(h.finish(), u64::from_le_bytes(VECTORS[9]));
    assert_eq!(
        h.finish(),
        u64::from_le_bytes(VECTORS[9]),
        "finish does not reset"
    );
    assert_eq!(h.end(), u64::from_le_bytes(VECTORS[9]));
    assert_eq!(
        h.finish(),
        u64::from_le_bytes(VECTORS[0]),
        "end resets to empty"
    );
    h.feed(&message(3));
    h.reset();
    h.feed(&message(2));
    assert_eq!(h.finish(), u64::from_le_bytes(VECTORS[2]));
}

#[test]
fn plan_keys_are_laid_out_as_relayd_keeps_them() {
    // `key 0x000102030405060708090a0b0c0d0e0f` is data[] = {0x00010203, …}; on a
    // little-endian host that memory is 03 02 01 00 07 06 05 04 …, which SipHash_Init
    // loads little-endian.
    assert_eq!(
        sip_key(&PAPER_KEY),
        [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12]
    );
    // So the plan key whose relayd memory is 00..0f reproduces the paper's vectors.
    let plan_key = [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12];
    assert_eq!(sip_key(&plan_key), PAPER_KEY);
    for n in [0, 1, 7, 8, 15, 63] {
        let mut h = Hasher::new(&plan_key);
        h.feed(&message(n));
        assert_eq!(h.finish(), u64::from_le_bytes(VECTORS[n]), "length {n}");
    }
    // And the plan's own bytes are not used as SipHash key bytes directly.
    assert_ne!(
        {
            let mut h = Hasher::new(&PAPER_KEY);
            h.feed(&message(8));
            h.finish()
        },
        u64::from_le_bytes(VECTORS[8])
    );
}

#[test]
fn debug_does_not_show_the_key() {
    let text = format!("{:?}", Hasher::new(&KEY));
    assert!(!text.contains("k0") && !text.contains("k1"), "{text}");
}

// ---------------------------------------------------------------------------------------
// The bytes fed (relay_hash_addr)

#[test]
fn addresses_are_fed_as_in_addr_and_in6_addr() {
    let sk = sip_key(&KEY);
    let mut h = Hasher::new(&KEY);
    h.feed_addr(v4(10, 1, 2, 3));
    assert_eq!(h.finish(), sip(&sk, &[10, 1, 2, 3]));

    let a6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut h = Hasher::new(&KEY);
    h.feed_addr(IpAddr::V6(a6));
    assert_eq!(h.finish(), sip(&sk, &a6.octets()));
    assert_eq!(a6.octets().len(), 16);
}

#[test]
fn listen_address_then_port_in_network_order() {
    let sk = sip_key(&KEY);
    let mut h = Hasher::new(&KEY);
    h.feed_listen(v4(192, 0, 2, 1), 8080);
    assert_eq!(h.finish(), sip(&sk, &[192, 0, 2, 1, 0x1f, 0x90]));

    let a6: Ipv6Addr = "::1".parse().unwrap();
    let mut want = a6.octets().to_vec();
    want.extend_from_slice(&[0x00, 0x50]);
    let mut h = Hasher::new(&KEY);
    h.feed_listen(IpAddr::V6(a6), 80);
    assert_eq!(h.finish(), sip(&sk, &want));
}

#[test]
fn each_mode_feeds_its_own_bytes() {
    let sk = sip_key(&KEY);
    let client = v4(198, 51, 100, 7);
    let (lip, lport) = LISTEN;
    let expect = |bytes: &[u8]| sip(&sk, bytes);

    let cases: [(Mode, Vec<u8>); 3] = [
        (Mode::SourceHash, vec![198, 51, 100, 7]),
        (
            Mode::Loadbalance,
            vec![198, 51, 100, 7, 192, 0, 2, 1, 0, 80],
        ),
        (Mode::Hash, vec![192, 0, 2, 1, 0, 80]),
    ];
    for (mode, bytes) in &cases {
        let mut h = Hasher::new(&KEY);
        h.feed_for_mode(mode, client, lip, lport);
        assert_eq!(h.finish(), expect(bytes), "{mode:?}");
        // pick over 32 hosts, all up, takes h mod 32 at the first try.
        let mut h = Hasher::new(&KEY);
        let got = pick_with(
            mode,
            &[true; 32],
            &mut TableState::new(),
            &mut h,
            client,
            LISTEN,
            0,
        );
        assert_eq!(got, Some((expect(bytes) % 32) as usize), "{mode:?}");
        assert_eq!(
            h.finish(),
            expect(&[]),
            "{mode:?}: context reset after the choice"
        );
    }
    for mode in [Mode::Roundrobin, Mode::Random, Mode::LeastStates] {
        let mut h = Hasher::new(&KEY);
        h.feed_for_mode(&mode, client, lip, lport);
        assert_eq!(h.finish(), expect(&[]), "{mode:?} feeds nothing");
    }
}

#[test]
fn hash_actions_come_first_and_in_order() {
    // `match request header hash "Host"` then `path hash`: their values, then the
    // mode's bytes, all in one SipHash input without separators.
    let sk = sip_key(&KEY);
    let client = v4(203, 0, 113, 9);
    let mut h = Hasher::new(&KEY);
    h.feed(b"www.example.com");
    h.feed(b"/index.html");
    let got = pick_with(
        &Mode::Loadbalance,
        &[true; 32],
        &mut TableState::new(),
        &mut h,
        client,
        LISTEN,
        0,
    );
    let mut input = b"www.example.com/index.html".to_vec();
    input.extend_from_slice(&[203, 0, 113, 9, 192, 0, 2, 1, 0, 80]);
    assert_eq!(got, Some((sip(&sk, &input) % 32) as usize));
}

#[test]
fn roundrobin_and_random_leave_the_hash_context_alone() {
    // relay_from_table ends and re-initialises the context only in hash modes.
    for mode in [Mode::Roundrobin, Mode::Random] {
        let mut h = Hasher::new(&KEY);
        h.feed(b"fed by a hash action");
        let before = h.finish();
        let got = pick_with(
            &mode,
            &[true; 4],
            &mut TableState::new(),
            &mut h,
            v4(10, 0, 0, 1),
            LISTEN,
            3,
        );
        assert!(got.is_some());
        assert_eq!(h.finish(), before, "{mode:?}");
    }
}

// ---------------------------------------------------------------------------------------
// roundrobin

fn rr(mode: &Mode, up: &[bool], state: &mut TableState) -> Option<usize> {
    let mut h = Hasher::new(&KEY);
    pick_with(mode, up, state, &mut h, v4(10, 0, 0, 1), LISTEN, 0)
}

#[test]
fn roundrobin_visits_hosts_in_order() {
    let mut st = TableState::new();
    let seq: Vec<_> = (0..9)
        .map(|_| rr(&Mode::Roundrobin, &[true; 4], &mut st).unwrap())
        .collect();
    assert_eq!(seq, [0, 1, 2, 3, 0, 1, 2, 3, 0]);
    assert_eq!(st.index, 1, "index = chosen + 1");
}

#[test]
fn roundrobin_skips_down_hosts() {
    let up = [true, false, true, false];
    let mut st = TableState::new();
    let seq: Vec<_> = (0..5)
        .map(|_| rr(&Mode::Roundrobin, &up, &mut st).unwrap())
        .collect();
    assert_eq!(seq, [0, 2, 0, 2, 0]);

    // Walking past the end wraps; the index follows the chosen host.
    let up = [true, false, false, false];
    let mut st = TableState { index: 2 };
    assert_eq!(rr(&Mode::Roundrobin, &up, &mut st), Some(0));
    assert_eq!(st.index, 1);

    // A host that comes back is used in its turn.
    let mut st = TableState::new();
    assert_eq!(
        rr(&Mode::Roundrobin, &[true, false, true], &mut st),
        Some(0)
    );
    assert_eq!(rr(&Mode::Roundrobin, &[true, true, true], &mut st), Some(1));
}

#[test]
fn roundrobin_index_out_of_range_restarts_at_zero() {
    // relay_from_table: `if (rlt_index >= rlt_nhosts) rlt_index = 0`. An index of n
    // (after choosing the last host) and a stale one from a larger table both restart.
    for index in [3u32, 4, 31, u32::MAX] {
        let mut st = TableState { index };
        assert_eq!(
            rr(&Mode::Roundrobin, &[true; 3], &mut st),
            Some(0),
            "{index}"
        );
        assert_eq!(st.index, 1);
    }
}

#[test]
fn least_states_balances_like_roundrobin() {
    let mut a = TableState::new();
    let mut b = TableState::new();
    let up = [false, true, true, false, true];
    for _ in 0..7 {
        assert_eq!(
            rr(&Mode::LeastStates, &up, &mut a),
            rr(&Mode::Roundrobin, &up, &mut b)
        );
        assert_eq!(a, b);
    }
}

// ---------------------------------------------------------------------------------------
// random

fn rnd(up: &[bool], random: u64, state: &mut TableState) -> Option<usize> {
    let mut h = Hasher::new(&KEY);
    pick_with(
        &Mode::Random,
        up,
        state,
        &mut h,
        v4(10, 0, 0, 1),
        LISTEN,
        random,
    )
}

#[test]
fn random_starts_where_the_random_number_says() {
    let mut st = TableState::new();
    for r in 0..12u64 {
        assert_eq!(rnd(&[true; 4], r, &mut st), Some((r % 4) as usize));
    }
    assert_eq!(st, TableState::new(), "random keeps no index");
    // A down start walks forward, wrapping.
    let up = [true, false, false, true];
    assert_eq!(rnd(&up, 1, &mut st), Some(3));
    assert_eq!(rnd(&up, 2, &mut st), Some(3));
    assert_eq!(rnd(&up, 3, &mut st), Some(3));
    assert_eq!(rnd(&up, 4, &mut st), Some(0));
    assert_eq!(rnd(&up, u64::MAX, &mut st), Some(3), "u64::MAX % 4 == 3");
}

#[test]
fn random_spreads_over_all_hosts() {
    let mut st = TableState::new();
    let mut seen = [0u32; 5];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..5000 {
        // xorshift64: the caller's random numbers.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seen[rnd(&[true; 5], x, &mut st).unwrap()] += 1;
    }
    for (i, c) in seen.iter().enumerate() {
        assert!((800..1200).contains(c), "host {i}: {c} of 5000");
    }
}

// ---------------------------------------------------------------------------------------
// hash family

#[test]
fn same_client_same_host() {
    let up = [true; 7];
    for mode in [Mode::SourceHash, Mode::Loadbalance, Mode::Hash] {
        for last in 0..50u8 {
            let client = v4(172, 16, 9, last);
            let mut h1 = Hasher::new(&KEY);
            let mut h2 = Hasher::new(&KEY);
            let a = pick_with(
                &mode,
                &up,
                &mut TableState::new(),
                &mut h1,
                client,
                LISTEN,
                1,
            );
            let b = pick_with(
                &mode,
                &up,
                &mut TableState::new(),
                &mut h2,
                client,
                LISTEN,
                99,
            );
            assert_eq!(a, b, "{mode:?} {client}");
            // The same session choosing again (context reset in between) agrees too.
            let c = pick_with(
                &mode,
                &up,
                &mut TableState::new(),
                &mut h1,
                client,
                LISTEN,
                5,
            );
            assert_eq!(a, c, "{mode:?} {client}, second choice");
        }
    }
}

#[test]
fn different_keys_generally_place_clients_differently() {
    let up = [true; 8];
    let other = *b"another test key";
    let moved = (0..=255u8)
        .filter(|&last| {
            let client = v4(100, 64, 0, last);
            let mut a = Hasher::new(&KEY);
            let mut b = Hasher::new(&other);
            let m = Mode::SourceHash;
            pick_with(&m, &up, &mut TableState::new(), &mut a, client, LISTEN, 0)
                != pick_with(&m, &up, &mut TableState::new(), &mut b, client, LISTEN, 0)
        })
        .count();
    // Independent keys agree for about 1 client in 8.
    assert!(moved > 180, "only {moved} of 256 clients moved");
}

#[test]
fn clients_spread_over_hosts() {
    let up = [true; 4];
    let mut seen = [0u32; 4];
    for a in 0..=255u8 {
        for b in 0..8u8 {
            let mut h = Hasher::new(&KEY);
            let client = v4(10, b, a, 1);
            seen[pick_with(
                &Mode::SourceHash,
                &up,
                &mut TableState::new(),
                &mut h,
                client,
                LISTEN,
                0,
            )
            .unwrap()] += 1;
        }
    }
    for (i, c) in seen.iter().enumerate() {
        assert!((400..624).contains(c), "host {i}: {c} of 2048");
    }
}

#[test]
fn loadbalance_follows_the_listen_port_and_source_hash_does_not() {
    let up = [true; 8];
    let other_listen = (LISTEN.0, 8080);
    let mut lb_moved = 0;
    for last in 0..=255u8 {
        let client = v4(192, 168, 7, last);
        let run = |mode: &Mode, listen: (IpAddr, u16)| {
            let mut h = Hasher::new(&KEY);
            pick_with(mode, &up, &mut TableState::new(), &mut h, client, listen, 0)
        };
        assert_eq!(
            run(&Mode::SourceHash, LISTEN),
            run(&Mode::SourceHash, other_listen),
            "source-hash hashes the client only"
        );
        if run(&Mode::Loadbalance, LISTEN) != run(&Mode::Loadbalance, other_listen) {
            lb_moved += 1;
        }
    }
    assert!(
        lb_moved > 180,
        "loadbalance moved only {lb_moved} of 256 clients"
    );
}

#[test]
fn hash_retries_with_h_shifted_right() {
    // h = 2, n = 4: 2 is down, then h >>= 1 → 1, up.
    assert_eq!(hash_index(2, &[false, true, false, false]), Some(1));
    // h = 6: 6 % 4 = 2 down, 3 % 4 = 3 down, 1 % 4 = 1 up.
    assert_eq!(hash_index(6, &[false, true, false, false]), Some(1));
    // The first candidate up is taken at once.
    assert_eq!(hash_index(6, &[false, false, true, true]), Some(2));
}

#[test]
fn hash_tries_at_most_min_n_5_candidates_then_walks_from_the_last() {
    // n = 3 → 3 tries. h = 11: candidates 2, 2, 2 (down); a fourth try would give 1, but
    // relayd walks forward from 2, wrapping, to 0.
    assert_eq!(hash_index(11, &[true, true, false]), Some(0));
    // n = 8 → 5 tries. h = 42: candidates 2, 5, 2, 5, 2 (down); a sixth would give 1;
    // the walk from 2 passes 3..7 and wraps to 0.
    let mut up = [false; 8];
    up[0] = true;
    up[1] = true;
    assert_eq!(hash_index(42, &up), Some(0));
    // The walk starts at the last candidate, not the first: h = 3, n = 8: candidates
    // 3, 1, 0, 0, 0; with hosts 2 and 4 up the walk from 0 finds 2 (from 3 it would be 4).
    let mut up = [false; 8];
    up[2] = true;
    up[4] = true;
    assert_eq!(hash_index(3, &up), Some(2));
    assert_eq!(MAX_HASH_TRIES, 5);
}

#[test]
fn pick_uses_the_hash_index() {
    // pick in a hash mode is hash_index of the context's hash.
    let up = [false, true, true, false, true, false];
    for last in 0..40u8 {
        let client = v4(10, 9, 8, last);
        let mut probe = Hasher::new(&KEY);
        probe.feed_for_mode(&Mode::SourceHash, client, LISTEN.0, LISTEN.1);
        let want = hash_index(probe.finish(), &up);
        let mut h = Hasher::new(&KEY);
        let got = pick_with(
            &Mode::SourceHash,
            &up,
            &mut TableState::new(),
            &mut h,
            client,
            LISTEN,
            0,
        );
        assert_eq!(got, want);
    }
}

#[test]
fn mode_hash_without_hash_rules_sends_everybody_to_one_host() {
    let up = [true; 5];
    let mut first = None;
    for last in 0..=255u8 {
        let mut h = Hasher::new(&KEY);
        let got = pick_with(
            &Mode::Hash,
            &up,
            &mut TableState::new(),
            &mut h,
            v4(203, 0, 113, last),
            LISTEN,
            u64::from(last),
        );
        assert!(got.is_some());
        assert_eq!(*first.get_or_insert(got), got);
    }
}

// ---------------------------------------------------------------------------------------
// Edges

#[test]
fn nothing_up_nothing_chosen_and_nothing_touched() {
    for mode in [
        Mode::Roundrobin,
        Mode::Random,
        Mode::Hash,
        Mode::Loadbalance,
        Mode::SourceHash,
        Mode::LeastStates,
    ] {
        for up in [&[][..], &[false; 3][..], &[true; MAX_HOSTS + 1][..]] {
            let mut st = TableState { index: 2 };
            let mut h = Hasher::new(&KEY);
            h.feed(b"pending");
            let before = h.finish();
            let got = pick_with(&mode, up, &mut st, &mut h, v4(10, 0, 0, 1), LISTEN, 7);
            assert_eq!(got, None, "{mode:?} over {} hosts", up.len());
            assert_eq!(st.index, 2);
            assert_eq!(h.finish(), before);
        }
    }
    assert_eq!(hash_index(5, &[]), None);
    assert_eq!(hash_index(5, &[false; 4]), None);
}

#[test]
fn thirty_two_hosts_is_the_limit() {
    let mut st = TableState { index: 31 };
    assert_eq!(rr(&Mode::Roundrobin, &[true; MAX_HOSTS], &mut st), Some(31));
    assert_eq!(st.index, 32);
    assert_eq!(rr(&Mode::Roundrobin, &[true; MAX_HOSTS], &mut st), Some(0));
}

#[test]
fn hosts_of_unchecked_tables_always_count_as_up() {
    assert!(counts_as_up(false, false));
    assert!(counts_as_up(false, true));
    assert!(counts_as_up(true, true));
    assert!(!counts_as_up(true, false));
}

// ---------------------------------------------------------------------------------------
// Table selection

const UP: TableStatus = TableStatus {
    has_check: true,
    any_up: true,
    disabled: false,
};
const DOWN: TableStatus = TableStatus {
    has_check: true,
    any_up: false,
    disabled: false,
};
const UNCHECKED: TableStatus = TableStatus {
    has_check: false,
    any_up: false,
    disabled: false,
};

#[test]
fn first_usable_table_in_config_order() {
    assert_eq!(choose_table([UP, UP], None), Some(0));
    assert_eq!(choose_table([DOWN, UP, UP], None), Some(1));
    assert_eq!(choose_table([DOWN, DOWN], None), None);
    assert_eq!(choose_table::<TableStatus>([], None), None);
    // No check: every host counts as up, whatever the up count says.
    assert_eq!(choose_table([DOWN, UNCHECKED, UP], None), Some(1));
}

#[test]
fn a_rule_selected_table_is_used_alone() {
    assert_eq!(choose_table([UP, UP, UP], Some(2)), Some(2));
    // Down → "no active hosts", even though other tables are up.
    assert_eq!(choose_table([UP, DOWN], Some(1)), None);
    assert_eq!(choose_table([UP, UNCHECKED], Some(1)), Some(1));
    assert_eq!(choose_table([UP], Some(3)), None);
}

#[test]
fn disabled_tables() {
    // relayd zeroes a disabled table's up count; with a check it is never usable ...
    let disabled_checked = TableStatus {
        disabled: true,
        ..UP
    };
    assert!(!disabled_checked.usable());
    assert_eq!(choose_table([disabled_checked, UP], None), Some(1));
    assert_eq!(choose_table([disabled_checked, UP], Some(0)), None);
    // ... but relay_from_table never reads the flag, so without a check it still is.
    let disabled_unchecked = TableStatus {
        disabled: true,
        ..UNCHECKED
    };
    assert!(disabled_unchecked.usable());
    assert_eq!(choose_table([disabled_unchecked, UP], None), Some(0));
}

// ---------------------------------------------------------------------------------------
// Laws

fn any_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Roundrobin),
        Just(Mode::Loadbalance),
        Just(Mode::Hash),
        Just(Mode::SourceHash),
        Just(Mode::Random),
        Just(Mode::LeastStates),
    ]
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_a_down_host_and_some_iff_one_is_up(
        mode in any_mode(),
        up in prop::collection::vec(any::<bool>(), 1..=MAX_HOSTS),
        index in any::<u32>(),
        key in any::<[u8; 16]>(),
        fed in prop::collection::vec(any::<u8>(), 0..40),
        client in any_ip(),
        listen in any_ip(),
        port in any::<u16>(),
        random in any::<u64>(),
    ) {
        let mut st = TableState { index };
        let mut h = Hasher::new(&key);
        h.feed(&fed);
        let got = pick_with(&mode, &up, &mut st, &mut h, client, (listen, port), random);
        match got {
            Some(i) => {
                prop_assert!(i < up.len());
                prop_assert!(up[i], "picked down host {}", i);
            }
            None => prop_assert!(!up.contains(&true)),
        }
        prop_assert_eq!(got.is_some(), up.contains(&true));
    }

    #[test]
    fn hash_index_never_a_down_host(
        h in any::<u64>(),
        up in prop::collection::vec(any::<bool>(), 1..=MAX_HOSTS),
    ) {
        let got = hash_index(h, &up);
        prop_assert_eq!(got.is_some(), up.contains(&true));
        if let Some(i) = got {
            prop_assert!(up[i]);
        }
        // All up: the first candidate, h mod n.
        let all = vec![true; up.len()];
        prop_assert_eq!(hash_index(h, &all), Some((h % up.len() as u64) as usize));
    }

    #[test]
    fn roundrobin_with_all_up_visits_in_order(
        n in 1..=MAX_HOSTS,
        start in any::<u32>(),
        k in 1..100usize,
    ) {
        let up = vec![true; n];
        let mut st = TableState { index: start };
        let first = if (start as usize) < n { start as usize } else { 0 };
        for i in 0..k {
            let got = rr(&Mode::Roundrobin, &up, &mut st);
            prop_assert_eq!(got, Some((first + i) % n));
        }
    }

    #[test]
    fn roundrobin_chooses_the_next_up_host(
        up in prop::collection::vec(any::<bool>(), 1..=MAX_HOSTS),
        index in any::<u32>(),
    ) {
        let n = up.len();
        let mut st = TableState { index };
        let got = rr(&Mode::Roundrobin, &up, &mut st);
        let start = if (index as usize) < n { index as usize } else { 0 };
        let want = (0..n).map(|d| (start + d) % n).find(|&i| up[i]);
        prop_assert_eq!(got, want);
        match want {
            Some(i) => prop_assert_eq!(st.index as usize, i + 1),
            None => prop_assert_eq!(st.index, index),
        }
    }

    #[test]
    fn mode_hash_ignores_the_client(
        a in any_ip(),
        b in any_ip(),
        key in any::<[u8; 16]>(),
        up in prop::collection::vec(any::<bool>(), 1..=MAX_HOSTS),
        listen in any_ip(),
        port in any::<u16>(),
    ) {
        let mut ha = Hasher::new(&key);
        let mut hb = Hasher::new(&key);
        let pa = pick_with(&Mode::Hash, &up, &mut TableState::new(), &mut ha, a, (listen, port), 1);
        let pb = pick_with(&Mode::Hash, &up, &mut TableState::new(), &mut hb, b, (listen, port), 2);
        prop_assert_eq!(pa, pb);
    }

    #[test]
    fn the_chosen_table_is_usable_and_the_first_such(
        tables in prop::collection::vec(
            (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(c, u, d)| TableStatus {
                has_check: c,
                any_up: u,
                disabled: d,
            }),
            0..6,
        ),
        rule in prop::option::of(0..8usize),
    ) {
        let got = choose_table(&tables, rule);
        match rule {
            Some(r) => prop_assert_eq!(got, tables.get(r).filter(|t| t.usable()).map(|_| r)),
            None => {
                prop_assert_eq!(got, tables.iter().position(|t| t.usable()));
                if let Some(i) = got {
                    prop_assert!(tables[..i].iter().all(|t| !t.usable()));
                }
            }
        }
    }
}
