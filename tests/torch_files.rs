//! PyTorch's own checkpoint files, read without PyTorch: the pickle zoo (every dtype, views,
//! shared storages, nested values) against its safetensors and JSON twins, and the tutorial's
//! model from `.pt` (zip), legacy `.pt` and Lightning `.ckpt`, reproducing PyTorch's logits.

mod common;

use common::fixture;
use wgnn::torch::{Checkpoint, FileFormat, PyValue};
use wgnn::{ops, ModuleExt, StateDict};
use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};

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
    let mut m = TransformerPredictor::new(&Hparams::reverse_task()).unwrap();
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
    let mut m = TransformerPredictor::new(&Hparams::reverse_task()).unwrap();
    assert!(m.load_state_dict(&sd, true).is_err());
    m.load_state_dict(&sd.strip_prefix("module."), true)
        .unwrap();
}

/// Issue 19, defect 4: hyper-parameters come out in the order the user wrote them, as
/// PyTorch and Lightning print them, not sorted.
#[test]
fn hyper_parameters_keep_the_files_order_in_json() {
    let ck = Checkpoint::load(fixture("reverse.ckpt")).unwrap();
    let hp = ck.root.get("hyper_parameters").unwrap();
    let file_order: Vec<String> = match hp {
        PyValue::Dict(items) => items
            .iter()
            .map(|(k, _)| match k {
                PyValue::Str(s) => s.clone(),
                other => panic!("{}", other.summary()),
            })
            .collect(),
        other => panic!("{}", other.summary()),
    };
    assert_eq!(
        file_order,
        [
            "input_dim",
            "model_dim",
            "num_classes",
            "num_heads",
            "num_layers",
            "lr",
            "warmup",
            "max_iters",
            "dropout",
            "input_dropout"
        ]
    );
    let json = hp.to_json();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, file_order.iter().collect::<Vec<_>>());
    let text = serde_json::to_string(&json).unwrap();
    assert!(
        text.starts_with("{\"input_dim\":10,\"model_dim\":32"),
        "{text}"
    );
}

/// Issue 19, defect 5: a checkpoint whose weights are plain tensors but whose
/// hyper-parameters hold a class outside the allow-list (a Lightning `AttributeDict`, a
/// project's config object) is refused by default, with a message that says how to opt in,
/// and read as inert data when the class is allowed; its state dict equals the plain file's.
#[test]
fn extra_globals_are_read_as_inert_values_only_when_allowed() {
    use wgnn::torch::LoadOptions;
    let plain = Checkpoint::load(fixture("hostile/plain_hparams.ckpt")).unwrap();
    let want = plain.state_dict(None).unwrap();
    assert_eq!(
        want.get("w").unwrap().to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0, 4.0]
    );
    let attr = "pytorch_lightning.utilities.parsing.AttributeDict";
    let config = "my_project.config.TrainConfig";
    for (file, class) in [
        ("hostile/attribute_dict_hparams.ckpt", attr),
        ("hostile/custom_class_hparams.ckpt", config),
    ] {
        let path = fixture(file);
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(
            e.contains(class) && e.contains(&format!("allow_global(\"{class}\")")),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        // Allowing some other name changes nothing.
        let other = LoadOptions::default().allow_global("my_project.config.Other");
        assert!(Checkpoint::load_with(&path, &other).is_err());
        let ck = Checkpoint::load_with(&path, &LoadOptions::default().allow_global(class)).unwrap();
        let sd = ck.state_dict(None).unwrap();
        assert_eq!(sd.keys(), want.keys());
        for (k, t) in sd.iter() {
            assert_eq!(
                t.to_bytes().unwrap(),
                want.get(k).unwrap().to_bytes().unwrap()
            );
        }
        // From bytes too.
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            Checkpoint::from_bytes_with(&bytes, &LoadOptions::default().allow_global(class))
                .is_ok()
        );
    }
    // A global that runs code gets no invitation to allow it.
    let e = Checkpoint::load(fixture("hostile/global_os_system.pt"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("os.system") && e.contains("runs commands"),
        "{e}"
    );
    assert!(!e.contains("allow_global"), "{e}");
    // The dict subclass reads as a dict, in order, with the plain file's values.
    let ck = Checkpoint::load_with(
        fixture("hostile/attribute_dict_hparams.ckpt"),
        &LoadOptions::default().allow_global(attr),
    )
    .unwrap();
    let hp = ck.root.get("hyper_parameters").unwrap();
    assert_eq!(
        hp.to_json(),
        plain.root.get("hyper_parameters").unwrap().to_json()
    );
    // The config object keeps its class, arguments and state, and is never called.
    let ck = Checkpoint::load_with(
        fixture("hostile/custom_class_hparams.ckpt"),
        &LoadOptions::default().allow_global(config),
    )
    .unwrap();
    match ck.root.at("hyper_parameters.config").unwrap() {
        PyValue::Object { class, args, state } => {
            assert_eq!(class, config);
            assert!(matches!(&args[..], [PyValue::Str(s), PyValue::Int(128)] if s == "adam"));
            let st = state.as_ref().unwrap();
            assert!(matches!(st.get("momentum"), Some(PyValue::Float(m)) if *m == 0.9));
        }
        other => panic!("{}", other.summary()),
    }
    assert_eq!(
        ck.root.at("hyper_parameters.config").unwrap().to_json(),
        serde_json::json!({"object": config, "args": ["adam", 128], "state": {"momentum": 0.9}})
    );
}

/// Issue 19, defect 6: an archive with two entries of one name is ambiguous (which
/// `data.pkl` or storage counts depends on the reader) and is refused, naming the entry.
#[test]
fn archives_with_duplicated_entry_names_are_refused() {
    for (file, entry) in [
        ("hostile/duplicate_data_pkl.pt", "archive/data.pkl"),
        ("hostile/duplicate_storage.pt", "archive/data/0"),
    ] {
        for r in [
            Checkpoint::load(fixture(file)).map(|_| ()),
            StateDict::load(fixture(file)).map(|_| ()),
        ] {
            let e = r.unwrap_err();
            assert!(matches!(e, wgnn::Error::Format { .. }), "{e:?}");
            let m = e.to_string();
            assert!(m.contains(entry) && m.contains("duplicated"), "{m}");
        }
    }
}
