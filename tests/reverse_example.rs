//! The `reverse` example end to end (built here first with `cargo build --examples`): the shipped checkpoint reverses
//! every sequence on the CPU and on the GPU, `--save` holds what the library computes, the PNG
//! decodes with one panel per head, and bad flags or files exit with one line.

mod common;

use common::fixture;
use wgnn::{ops, ModuleExt, StateDict};
use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};

fn run(args: &[&str]) -> (i32, String, String) {
    common::run_example("reverse", args)
}

#[test]
fn the_shipped_checkpoint_reverses_every_sequence_and_save_holds_the_librarys_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let (save, png_path) = (
        tmp.path().join("out.safetensors"),
        tmp.path().join("attn.png"),
    );
    let (code, out, err) = run(&[
        "--device",
        "cpu",
        "--samples",
        "40",
        "--seed",
        "3",
        "--save",
        save.to_str().unwrap(),
        "--attention-png",
        png_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let last = out.lines().last().unwrap();
    assert_eq!(
        last,
        "accuracy: 640/640 tokens (100.00%), 40/40 sequences fully reversed"
    );
    assert!(out.contains("non-persistent buffer"), "{out}");

    // What --save holds is what the library computes for its x.
    let saved = StateDict::load(&save).unwrap();
    let x = saved.get("x").unwrap();
    assert_eq!(x.shape(), [40, 16]);
    let mut m = TransformerPredictor::new(&Hparams::reverse_task()).unwrap();
    m.load_state_dict(
        &StateDict::load(fixture("reverse_trained.safetensors")).unwrap(),
        true,
    )
    .unwrap();
    m.eval();
    let input = ops::one_hot(x, 10).unwrap();
    let logits = m.forward(&input, None, true).unwrap();
    assert_eq!(
        saved.get("logits").unwrap().to_vec::<f32>().unwrap(),
        logits.to_vec::<f32>().unwrap()
    );
    assert_eq!(
        saved.get("preds").unwrap().to_vec::<i64>().unwrap(),
        ops::argmax(&logits).unwrap().to_vec::<i64>().unwrap()
    );
    let maps = m.get_attention_maps(&input, None, true).unwrap();
    assert_eq!(saved.get("attn.0").unwrap().shape(), [40, 1, 16, 16]);
    assert_eq!(
        saved.get("attn.0").unwrap().to_vec::<f32>().unwrap(),
        maps[0].to_vec::<f32>().unwrap()
    );

    // The PNG: one panel per layer and head, 16 × 16 cells of 16 px plus a 12 px label band,
    // 8 px apart.
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let panel = 12 + 16 * 16;
    assert_eq!(
        (info.width as usize, info.height as usize),
        (8 + (panel + 8), 8 + (panel + 8))
    );
}

#[test]
fn the_example_reverses_every_sequence_on_the_gpu_too() {
    let (code, out, err) = run(&["--device", "gpu", "--samples", "20", "--seed", "9"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains("(100.00%), 20/20 sequences"),
        "{out}"
    );
    assert!(!out.contains("device: cpu"), "{out}");
}

#[test]
fn four_heads_make_four_panels() {
    let tmp = tempfile::tempdir().unwrap();
    let png_path = tmp.path().join("mh.png");
    let (code, _, err) = run(&[
        "--checkpoint",
        fixture("mh_model.safetensors").to_str().unwrap(),
        "--device",
        "cpu",
        "--samples",
        "2",
        "--attention-png",
        png_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let reader = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ))
    .read_info()
    .unwrap();
    let panel = 12 + 16 * 16;
    // 2 layers (rows) × 4 heads (columns).
    assert_eq!(
        (reader.info().width as usize, reader.info().height as usize),
        (8 + 4 * (panel + 8), 8 + 2 * (panel + 8))
    );
}

#[test]
fn bad_flags_exit_2_and_bad_files_exit_1_with_one_line() {
    for args in [
        &["--samples", "x"][..],
        &["--bogus", "1"],
        &["--device", "tpu"],
        &["--seed"],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
    }
    let hostile = fixture("hostile/global_os_system.pt");
    let other = fixture("torch_tiny_encoder.safetensors");
    for (file, phrase) in [
        ("no/such/file.pt", "No such file"),
        (hostile.to_str().unwrap(), "os.system"),
        (
            other.to_str().unwrap(),
            "not the tutorial's TransformerPredictor",
        ),
    ] {
        let (code, _, err) = run(&["--checkpoint", file, "--device", "cpu"]);
        assert_eq!(code, 1, "{file}: {err}");
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
        assert!(line.contains(phrase), "{line}");
    }
}
