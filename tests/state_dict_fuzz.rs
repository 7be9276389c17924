//! Property test: mutated and truncated safetensors files never panic or abort the loader, and
//! no allocation made while parsing is larger than the file itself (a lying header cannot make
//! the loader allocate what the file does not hold).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use wgnn::StateDict;

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(l.size())));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(new)));
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn seed() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/torch_frozen_vs_buffer.safetensors"
    ))
    .unwrap()
}

/// Parses `bytes`, returning the largest single allocation made meanwhile.
fn parse_measured(bytes: &[u8]) -> (bool, usize) {
    LARGEST.with(|c| c.set(0));
    let ok = StateDict::from_safetensors(bytes).is_ok();
    (ok, LARGEST.with(|c| c.get()))
}

/// Allocation slack: small fixed structures (the header map, error strings).
const SLACK: usize = 64 * 1024;

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    HeaderLen(u64),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop_oneof![any::<u64>(), 0u64..2000].prop_map(Mutation::HeaderLen),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
    ]
}

fn apply(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        match m {
            Mutation::Flip(i, x) if !b.is_empty() => {
                let n = b.len();
                b[i % n] ^= x | 1;
            }
            Mutation::Truncate(i) => b.truncate(i % (b.len() + 1)),
            Mutation::HeaderLen(v) if b.len() >= 8 => b[..8].copy_from_slice(&v.to_le_bytes()),
            Mutation::Insert(i, v) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, v.iter().copied());
            }
            _ => {}
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic_nor_overallocate(ms in proptest::collection::vec(mutation(), 1..4)) {
        let bytes = apply(seed(), &ms);
        let (_, largest) = parse_measured(&bytes);
        prop_assert!(largest <= bytes.len() + SLACK, "allocated {} for a {}-byte file", largest, bytes.len());
    }

    #[test]
    fn header_json_mutations_are_errors_or_valid(shape0 in 0u64..u64::MAX, end in 0u64..u64::MAX, dtype in "[A-Z0-9_]{1,6}") {
        let json = format!(r#"{{"a":{{"dtype":"{dtype}","shape":[{shape0},2],"data_offsets":[0,{end}]}}}}"#);
        let mut b = (json.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(json.as_bytes());
        b.extend_from_slice(&[0u8; 64]);
        let (_, largest) = parse_measured(&b);
        prop_assert!(largest <= b.len() + SLACK);
    }
}

#[test]
fn the_unmutated_seed_parses() {
    let (ok, largest) = parse_measured(&seed());
    assert!(ok);
    assert!(largest <= seed().len() + SLACK);
}

#[test]
fn the_allocation_meter_sees_a_large_allocation() {
    LARGEST.with(|c| c.set(0));
    let v = std::hint::black_box(vec![1u8; 1 << 20]);
    drop(v);
    assert!(
        LARGEST.with(|c| c.get()) >= 1 << 20,
        "the meter would miss an over-allocation"
    );
}
