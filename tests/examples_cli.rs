//! The examples as a user runs them (issue 19): every one answers `--help`, a flag error exits
//! 2 with one `error:` line, the checkpoint tool shows hyper-parameters in the file's order and
//! opts in to extra globals, and the main job draws its table.

mod common;

use common::{fixture, run_example};

const EXAMPLES: [&str; 8] = [
    "positional_encoding",
    "resnet",
    "reverse",
    "train_reverse",
    "register_buffer",
    "checkpoint",
    "adapters",
    "bench",
];

#[test]
fn every_example_answers_help_and_exits_2_on_a_bad_flag() {
    for name in EXAMPLES {
        let (code, out, err) = run_example(name, &["--help"]);
        assert_eq!(code, 0, "{name} --help: {err}");
        assert!(out.contains("Usage:"), "{name} --help: {out}");
        let (code, _, err) = run_example(name, &["--no-such-flag"]);
        assert_eq!(code, 2, "{name} --no-such-flag: {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{name}: {err}"
        );
    }
    // Values are checked as before: numbers, devices, dtypes, lower bounds.
    for (name, args) in [
        ("positional_encoding", &["--batch", "x"][..]),
        ("positional_encoding", &["--device", "tpu"]),
        ("train_reverse", &["--steps", "0"]),
        ("train_reverse", &["--batch", "1"]),
        ("reverse", &["--samples", "0"]),
        ("checkpoint", &["convert", "a", "b", "--dtype", "i64"]),
        ("checkpoint", &["inspect"]),
        ("bench", &["--quick", "--full"]),
        ("resnet", &["--train-steps", "x"]),
        ("resnet", &["--device", "tpu"]),
    ] {
        let (code, _, err) = run_example(name, args);
        assert_eq!(code, 2, "{name} {args:?}: {err}");
    }
}

#[test]
fn inspect_prints_hyper_parameters_in_the_files_order() {
    let (code, out, err) = run_example(
        "checkpoint",
        &["inspect", fixture("reverse.ckpt").to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let at = |k: &str| {
        out.find(&format!("\"{k}\""))
            .unwrap_or_else(|| panic!("{k} missing: {out}"))
    };
    let order = [
        "input_dim",
        "model_dim",
        "num_classes",
        "lr",
        "warmup",
        "dropout",
        "input_dropout",
    ];
    for w in order.windows(2) {
        assert!(
            at(w[0]) < at(w[1]),
            "{} printed after {}:\n{out}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn checkpoint_reads_extra_globals_only_with_allow_global() {
    let tmp = tempfile::tempdir().unwrap();
    let file = fixture("hostile/custom_class_hparams.ckpt");
    let file = file.to_str().unwrap();
    let class = "my_project.config.TrainConfig";
    // Refused by default: exit 1, one line that says how to opt in, no output file.
    let out = tmp.path().join("out.safetensors");
    let out_s = out.to_str().unwrap();
    let (code, _, err) = run_example("checkpoint", &["convert", file, out_s]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("--allow-global {class}")), "{err}");
    assert!(!out.exists());
    // Allowed: the object shows as inert data and the weights convert.
    let (code, text, err) = run_example("checkpoint", &["inspect", file, "--allow-global", class]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains(&format!("\"object\": \"{class}\"")), "{text}");
    let (code, _, err) = run_example(
        "checkpoint",
        &["convert", file, out_s, "--allow-global", class],
    );
    assert_eq!(code, 0, "{err}");
    let got = wgnn::StateDict::load(&out).unwrap();
    let want = wgnn::StateDict::load(fixture("hostile/plain_hparams.ckpt")).unwrap();
    assert_eq!(got.len(), want.len());
    for (k, t) in got.iter() {
        assert_eq!(
            t.to_bytes().unwrap(),
            want.get(k).unwrap().to_bytes().unwrap()
        );
    }
}

#[test]
fn the_main_job_draws_its_table() {
    let tmp = tempfile::tempdir().unwrap();
    let png_path = tmp.path().join("pe.png");
    let (code, out, err) = run_example(
        "positional_encoding",
        &[
            "--device",
            "cpu",
            "--d-model",
            "48",
            "--max-len",
            "96",
            "--batch",
            "1",
            "--seq",
            "10",
            "--png",
            png_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("drew the table"), "{out}");
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    assert!(w >= 400 && h >= 300, "{w}x{h}");
    // The heat map's first column (position 0) is sin(0) = 0 and cos(0) = 1 alternating: the
    // pixel of dimension 0 and of dimension 1 differ, and many colours are used.
    let px = |x: usize, y: usize| &buf[(y * w + x) * 3..(y * w + x) * 3 + 3];
    let colours: std::collections::HashSet<&[u8]> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| px(x, y))
        .collect();
    assert!(colours.len() > 100, "{} colours", colours.len());
}

/// The resnet example classifies the shipped images as PyTorch does, writes what it says, takes
/// SGD steps that change what the issue says they change, and fails in one line with exit 1 on
/// a bad file.
#[test]
fn the_resnet_example_classifies_trains_and_refuses_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("preds.safetensors");
    let (code, text, err) = run_example(
        "resnet",
        &[
            "--device",
            "cpu",
            "--save",
            out.to_str().unwrap(),
            "--train-steps",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("19 BatchNorm2d layers"), "{text}");
    assert!(
        text.contains(
            "input_net.1.num_batches_tracked     buffer     yes            []              int64"
        ),
        "{text}"
    );
    assert!(text.contains("image  1: airplane"), "{text}");
    assert!(
        text.contains("the forward changed 57 tensors (19 num_batches_tracked, 19 running_mean, 19 running_var)"),
        "{text}"
    );
    assert!(
        text.contains("the optimizer changed 63 tensors (22 bias, 41 weight)"),
        "{text}"
    );
    assert!(text.contains("num_batches_tracked is now 56863"), "{text}");
    let saved = wgnn::StateDict::load(&out).unwrap();
    let io = wgnn::StateDict::load(fixture("tutorial5/resnet_io.safetensors")).unwrap();
    assert_eq!(saved.get("logits").unwrap().shape(), [16, 10]);
    assert_eq!(
        saved.get("preds").unwrap().to_vec::<i64>().unwrap(),
        io.get("preds").unwrap().to_vec::<i64>().unwrap()
    );
    // Inputs of the wrong shape, a file that is not a checkpoint, labels missing for training.
    let bad = tmp.path().join("bad.safetensors");
    let mut sd = wgnn::StateDict::new();
    sd.insert("x", wgnn::Tensor::from_slice(&[0f32; 12], &[4, 3]).unwrap());
    sd.save(&bad).unwrap();
    let no_labels = tmp.path().join("x.safetensors");
    let mut sd = wgnn::StateDict::new();
    sd.insert("x", io.get("x").unwrap().clone());
    sd.save(&no_labels).unwrap();
    let reverse = fixture("reverse.ckpt");
    for args in [
        vec!["--device", "cpu", "--inputs", bad.to_str().unwrap()],
        vec!["--device", "cpu", "--checkpoint", reverse.to_str().unwrap()],
        vec!["--device", "cpu", "--checkpoint", "/no/such/file.ckpt"],
        vec![
            "--device",
            "cpu",
            "--inputs",
            no_labels.to_str().unwrap(),
            "--train-steps",
            "1",
        ],
    ] {
        let (code, _, err) = run_example("resnet", &args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}
