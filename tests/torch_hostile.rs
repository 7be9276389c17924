//! Hostile `torch.save` files (made by `tests/fixtures/make_hostile.py` from raw pickle opcodes,
//! never unpickled): each is refused with `Error::Format` naming the problem, and mutated or
//! truncated real files never panic.

mod common;

use common::fixture;
use proptest::prelude::*;
use wgnn::torch::Checkpoint;
use wgnn::{Error, StateDict};

#[test]
fn every_hostile_file_is_refused_with_a_format_error_that_names_the_problem() {
    let expected: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(fixture("hostile/expected.json")).unwrap())
            .unwrap();
    assert!(expected.len() >= 30);
    for (file, phrase) in &expected {
        let path = fixture(&format!("hostile/{file}"));
        for (how, result) in [
            ("Checkpoint::load", Checkpoint::load(&path).map(|_| ())),
            ("StateDict::load", StateDict::load(&path).map(|_| ())),
        ] {
            match result {
                Err(e @ Error::Format { .. }) => {
                    let m = e.to_string();
                    assert!(
                        m.contains(phrase.as_str()),
                        "{file} ({how}): {m:?} lacks {phrase:?}"
                    );
                    assert!(
                        m.contains(file.as_str()),
                        "{file} ({how}): the error names the file: {m}"
                    );
                }
                Err(e) => panic!("{file} ({how}): not a format error: {e:?}"),
                Ok(()) => panic!("{file} ({how}): loaded"),
            }
        }
    }
    // The generator's valid twins load.
    let sd = StateDict::load(fixture("hostile/valid.pt")).unwrap();
    assert_eq!(sd.get("w").unwrap().shape(), [2, 2]);
    let sd = StateDict::load(fixture("hostile/valid_huge_stride.pt")).unwrap();
    assert_eq!(
        sd.get("w").unwrap().to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0, 4.0]
    );
}

fn no_panic(bytes: &[u8]) {
    let _ = Checkpoint::from_bytes(bytes).map(|c| c.state_dict(None));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Flipped bytes anywhere in a real zip checkpoint and in a legacy one: an error or a
    /// value, never a panic.
    #[test]
    fn mutated_checkpoints_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let file = ["reverse_state_dict.pt", "reverse_legacy.pt", "hostile/valid.pt"][which];
        let mut bytes = std::fs::read(fixture(file)).unwrap();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        no_panic(&bytes);
    }

    /// Every truncation of the small valid file and random ones of the legacy file.
    #[test]
    fn truncated_checkpoints_never_panic(cut in any::<prop::sample::Index>()) {
        for file in ["reverse_legacy.pt", "pickle_zoo.pt"] {
            let bytes = std::fs::read(fixture(file)).unwrap();
            let n = cut.index(bytes.len());
            prop_assert!(Checkpoint::from_bytes(&bytes[..n]).is_err());
        }
    }
}

#[test]
fn every_prefix_of_a_small_checkpoint_is_an_error_not_a_panic() {
    let bytes = std::fs::read(fixture("hostile/valid.pt")).unwrap();
    for n in 0..bytes.len() {
        assert!(
            Checkpoint::from_bytes(&bytes[..n]).is_err(),
            "prefix of {n} bytes loaded"
        );
    }
}
