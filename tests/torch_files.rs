//! PyTorch's own checkpoint files, read without PyTorch: the pickle zoo (every dtype, views,
//! shared storages, nested values) against its safetensors and JSON twins, and the tutorial's
//! model from `.pt` (zip), legacy `.pt` and Lightning `.ckpt`, reproducing PyTorch's logits.

mod common;

use common::fixture;
use wgnn::torch::{Checkpoint, FileFormat, PyValue};
use wgnn::tutorial6::{Hparams, TransformerPredictor};
use wgnn::{ops, Device, ModuleExt, StateDict};

#[test]
fn the_pickle_zoo_matches_its_safetensors_and_json_twins() {
    let ck = Checkpoint::load(fixture("pickle_zoo.pt")).unwrap();
    assert_eq!(ck.format, FileFormat::TorchZip);
    let twins = StateDict::load(fixture("pickle_zoo.safetensors")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("pickle_zoo.json")).unwrap())
            .unwrap();
    let entries = meta["entries"].as_array().unwrap();
    let mut tensors = 0;
    for e in entries {
        let path = e["path"].as_str().unwrap();
        let v = ck
            .root
            .at(path)
            .unwrap_or_else(|| panic!("{path:?} missing"));
        match e["kind"].as_str().unwrap() {
            "tensor" => {
                let PyValue::Tensor(t) = v else {
                    panic!("{path}: {}", v.summary())
                };
                let want = twins.get(path).unwrap_or_else(|| panic!("{path} twin"));
                assert_eq!(t.tensor.dtype(), want.dtype(), "{path}");
                assert_eq!(t.tensor.shape(), want.shape(), "{path}");
                assert_eq!(
                    t.tensor.to_bytes().unwrap(),
                    want.to_bytes().unwrap(),
                    "{path}: bits"
                );
                assert_eq!(
                    t.is_parameter,
                    e["is_parameter"].as_bool().unwrap(),
                    "{path}"
                );
                assert_eq!(
                    t.requires_grad,
                    e["requires_grad"].as_bool().unwrap(),
                    "{path}"
                );
                tensors += 1;
            }
            "dict" => {
                let PyValue::Dict(items) = v else {
                    panic!("{path}")
                };
                let keys: Vec<&str> = items
                    .iter()
                    .map(|(k, _)| match k {
                        PyValue::Str(s) => s.as_str(),
                        _ => panic!("{path}: key"),
                    })
                    .collect();
                let want: Vec<&str> = e["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap())
                    .collect();
                assert_eq!(keys, want, "{path}");
            }
            "list" | "tuple" => {
                let (PyValue::List(items) | PyValue::Tuple(items)) = v else {
                    panic!("{path}")
                };
                assert_eq!(items.len() as u64, e["len"].as_u64().unwrap(), "{path}");
                assert_eq!(matches!(v, PyValue::List(_)), e["kind"] == "list", "{path}");
            }
            "int" => {
                let PyValue::Int(i) = v else {
                    panic!("{path}: {}", v.summary())
                };
                assert_eq!(i.to_string(), e["repr"].as_str().unwrap(), "{path}");
            }
            "float" => {
                let PyValue::Float(f) = v else {
                    panic!("{path}")
                };
                let want = e["value"].as_f64().unwrap();
                assert_eq!(f.to_bits(), want.to_bits(), "{path}: {f} vs {want}");
            }
            "str" => assert!(
                matches!(v, PyValue::Str(s) if s == e["value"].as_str().unwrap()),
                "{path}"
            ),
            "bool" => assert!(
                matches!(v, PyValue::Bool(b) if *b == e["value"].as_bool().unwrap()),
                "{path}"
            ),
            "NoneType" => assert!(matches!(v, PyValue::None), "{path}"),
            k => panic!("{path}: kind {k}"),
        }
    }
    assert_eq!(tensors, twins.len(), "every tensor of the twin was checked");
}

/// The tutorial's reverse model, loaded from `file`, reproduces PyTorch's logits.
fn logits_match(sd: &StateDict) {
    let io = StateDict::load(fixture("reverse_io.safetensors")).unwrap();
    let mut m = TransformerPredictor::new(&Hparams::reverse_task(), &Device::Cpu).unwrap();
    m.load_state_dict(sd, true).unwrap();
    m.eval();
    let x = ops::one_hot(io.get("x").unwrap(), 10).unwrap();
    let y = m.forward(&x, None, true).unwrap().to_vec::<f32>().unwrap();
    let want = io.get("logits").unwrap().to_vec::<f32>().unwrap();
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    let err = y
        .iter()
        .zip(&want)
        .fold(0f32, |a, (p, q)| a.max((p - q).abs()))
        / scale;
    assert!(err <= 2e-5, "logits {err:e}");
}

#[test]
fn the_tutorials_model_loads_from_every_torch_save_format() {
    let safetensors = StateDict::load(fixture("reverse_trained.safetensors")).unwrap();
    for (file, format) in [
        ("reverse_state_dict.pt", FileFormat::TorchZip),
        ("reverse_legacy.pt", FileFormat::TorchLegacy),
        ("reverse.ckpt", FileFormat::TorchZip),
    ] {
        assert_eq!(
            Checkpoint::load(fixture(file)).unwrap().format,
            format,
            "{file}"
        );
        let sd = StateDict::load(fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        // The same tensors, bit for bit, as the safetensors export of the same model.
        let mut keys: Vec<&str> = sd.keys();
        keys.sort();
        assert_eq!(keys, safetensors.keys(), "{file}");
        for k in keys {
            assert_eq!(
                sd.get(k).unwrap().to_bytes().unwrap(),
                safetensors.get(k).unwrap().to_bytes().unwrap(),
                "{file}: {k}"
            );
        }
        logits_match(&sd);
    }
}

#[test]
fn a_lightning_checkpoint_shows_its_hyper_parameters_and_training_state() {
    let ck = Checkpoint::load(fixture("reverse.ckpt")).unwrap();
    let hp = ck.root.get("hyper_parameters").unwrap().to_json();
    assert_eq!(hp["model_dim"], 32);
    assert_eq!(hp["num_heads"], 1);
    assert_eq!(hp["lr"], 5e-4);
    assert_eq!(
        ck.root.get("pytorch-lightning_version").unwrap().to_json(),
        "2.4.0"
    );
    // The learning rate was pickled as a numpy float64 scalar.
    let lr = ck.root.at("optimizer_states.0.param_groups.0.lr").unwrap();
    assert!(matches!(lr, PyValue::Float(_)), "{}", lr.summary());
    // Adam's state is tensors too.
    let sd = ck.state_dict(Some("state_dict")).unwrap();
    assert_eq!(sd.len(), 20);
    let e = ck
        .state_dict(Some("hyper_parameters"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a tensor"), "{e}");
    let e = ck.state_dict(Some("nope")).unwrap_err().to_string();
    assert!(e.contains("\"nope\"") && e.contains("state_dict"), "{e}");
}

#[test]
fn dotted_keys_and_dataparallel_prefixes_are_handled() {
    let ck = Checkpoint::load(fixture("reverse.ckpt")).unwrap();
    // Lightning's loop state has keys with dots in them.
    let v = ck
        .root
        .at("loops.fit_loop.epoch_loop.state_dict._batches_that_stepped")
        .unwrap();
    assert!(matches!(v, PyValue::Int(1080)), "{}", v.summary());
    // A DataParallel checkpoint: every key under `module.`; stripped, it loads strictly.
    let sd = ck.state_dict(None).unwrap().with_prefix("module.");
    assert!(sd.keys().iter().all(|k| k.starts_with("module.")));
    let mut m = TransformerPredictor::new(&Hparams::reverse_task(), &Device::Cpu).unwrap();
    assert!(m.load_state_dict(&sd, true).is_err());
    m.load_state_dict(&sd.strip_prefix("module."), true)
        .unwrap();
}
