//! The module tree against what PyTorch itself reported (tests/fixtures/manifest.json), names,
//! look-ups, printing, and moving a whole tree in one submission.

mod common;

use common::models::{learned, zeros, FrozenVsBuffer, TinyEncoder};
use serde_json::{json, Value};
use wgnn::{
    Buffer, DType, Device, DynModule, Error, Module, ModuleExt, ModuleList, Parameter, StateDict,
    Tensor, TensorKind, Visitor, VisitorMut,
};

fn manifest(file: &str) -> Value {
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(common::fixture("manifest.json")).unwrap())
            .unwrap();
    m["files"][file].clone()
}

/// Asserts that wgnn reports exactly what PyTorch reported, in the same order. Our side is
/// written in the manifest's own JSON shape (`[name, shape, flag or dtype]`) and compared whole.
fn assert_like_pytorch(m: &dyn Module, file: &str) {
    let want = manifest(file);
    let params: Vec<Value> = m
        .named_parameters()
        .into_iter()
        .map(|(n, p)| json!([n, p.tensor().shape(), p.requires_grad()]))
        .collect();
    assert_eq!(
        Value::from(params),
        want["named_parameters"],
        "{file}: named_parameters"
    );

    let buffers: Vec<Value> = m
        .named_buffers()
        .into_iter()
        .map(|(n, b)| json!([n, b.tensor().shape(), b.tensor().dtype().name()]))
        .collect();
    assert_eq!(
        Value::from(buffers),
        want["named_buffers"],
        "{file}: named_buffers"
    );

    let modules: Vec<Value> = m
        .named_modules()
        .into_iter()
        .map(|(n, m)| json!([n, m.type_name()]))
        .collect();
    assert_eq!(
        Value::from(modules),
        want["named_modules"],
        "{file}: named_modules"
    );

    let keys: Vec<Value> = m
        .state_dict()
        .unwrap()
        .iter()
        .map(|(k, t)| json!([k, t.shape(), t.dtype().name()]))
        .collect();
    assert_eq!(
        Value::from(keys),
        want["state_dict"],
        "{file}: state_dict keys"
    );

    assert_eq!(m.repr(), want["repr"].as_str().unwrap(), "{file}: repr");
}

#[test]
fn encoder_with_non_persistent_table_matches_pytorch() {
    let m = TinyEncoder::new(5, 16, false, &Device::Cpu).unwrap();
    assert_like_pytorch(&m, "torch_tiny_encoder.safetensors");
}

#[test]
fn encoder_with_persistent_table_matches_pytorch() {
    let m = TinyEncoder::new(5, 16, true, &Device::Cpu).unwrap();
    assert_like_pytorch(&m, "torch_tiny_encoder_persistent_pe.safetensors");
}

#[test]
fn frozen_vs_buffer_matches_pytorch() {
    let m = FrozenVsBuffer::new(&Device::Cpu).unwrap();
    assert_like_pytorch(&m, "torch_frozen_vs_buffer.safetensors");
}

#[test]
fn learned_embedding_matches_pytorch() {
    let m = learned(&Device::Cpu).unwrap();
    assert_like_pytorch(&m, "torch_learned_positional.safetensors");
}

#[test]
fn the_summary_answers_the_seed_question() {
    let m = FrozenVsBuffer::new(&Device::Cpu).unwrap();
    let rows: Vec<(String, TensorKind, bool)> = m
        .tensor_infos()
        .into_iter()
        .map(|i| (i.path, i.kind, i.kind.in_state_dict()))
        .collect();
    assert_eq!(
        rows[..4],
        [
            ("trainable".to_string(), TensorKind::Parameter, true),
            ("frozen".to_string(), TensorKind::FrozenParameter, true),
            ("running".to_string(), TensorKind::Buffer, true),
            (
                "scratch".to_string(),
                TensorKind::NonPersistentBuffer,
                false
            ),
        ]
    );
    let s = m.summary();
    let line = s.lines().find(|l| l.starts_with("scratch")).unwrap();
    assert!(
        line.contains("non-persistent buffer") && line.contains(" no ") && line.contains("[3]"),
        "{s}"
    );
    assert!(
        s.lines()
            .any(|l| l.starts_with("child.num_batches_tracked") && l.contains("int64")),
        "{s}"
    );
    assert!(
        s.lines()
            .last()
            .unwrap()
            .starts_with("2 module(s); 4 parameter(s)"),
        "{s}"
    );
    assert_eq!(m.num_parameters(), 12);
    assert_eq!(m.parameter_bytes(), 48);
    assert_eq!(m.buffer_bytes(), 4 * 12 + 8);
}

#[test]
fn lookups_by_path_and_their_errors() {
    let m = TinyEncoder::new(5, 16, false, &Device::Cpu).unwrap();
    assert_eq!(
        m.get_parameter("output_net.3.bias")
            .unwrap()
            .tensor()
            .shape(),
        [3]
    );
    assert!(!m.get_buffer("positional_encoding.pe").unwrap().persistent());
    assert_eq!(
        m.get_submodule("output_net.1").unwrap().type_name(),
        "LayerNorm"
    );
    assert_eq!(m.get_submodule("").unwrap().type_name(), "TinyEncoder");
    assert_eq!(m.named_children().len(), 3);
    match m.get_parameter("output_net.7.bias").unwrap_err() {
        Error::NotFound {
            missing,
            parent,
            available,
            ..
        } => {
            assert_eq!(missing, "7");
            assert_eq!(parent, "output_net");
            assert_eq!(available, ["0", "1", "2", "3"]);
        }
        e => panic!("{e:?}"),
    }
    let e = m.get_parameter("output_net.3.weights").unwrap_err();
    assert!(
        e.to_string()
            .contains("\"weights\" does not exist in \"output_net.3\"; it has: weight, bias"),
        "{e}"
    );
    let e = m.get_buffer("input_net.1.weight").unwrap_err();
    assert!(e.to_string().contains("buffer"), "{e}");
}

#[test]
fn bad_names_are_rejected_when_registered_and_when_saved() {
    let cases: [(&str, &str); 3] = [
        ("", "empty"),
        ("a.b", "cannot contain"),
        ("w", "used twice"),
    ];
    for (name, why) in cases {
        // Checked when registered, as PyTorch raises in register_buffer / add_module.
        let mut m = DynModule::new("Bad");
        m.register_parameter("w", Parameter::new(zeros(&[1], &Device::Cpu)))
            .unwrap();
        let e = if name == "w" {
            m.register_buffer("w", Buffer::new(zeros(&[1], &Device::Cpu)))
                .map(|_| ())
                .unwrap_err()
        } else {
            m.add_module(name, DynModule::new("Child"))
                .map(|_| ())
                .unwrap_err()
        };
        match &e {
            Error::InvalidName {
                module,
                name: n,
                reason,
            } => {
                assert_eq!(module, "Bad");
                assert_eq!(n, name);
                assert!(reason.contains(why), "{e}");
            }
            _ => panic!("{e:?}"),
        }
        // Nothing was registered.
        assert_eq!(m.named_parameters().len(), 1);
        assert!(m.named_children().is_empty() && m.named_buffers().is_empty());
    }
    // A hand-written `visit` can still list a bad name: saving, loading and moving refuse it.
    struct HandWritten(Parameter, Parameter);
    impl Module for HandWritten {
        fn type_name(&self) -> String {
            "HandWritten".into()
        }
        fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
            v.parameter("w", &self.0);
            v.parameter("w", &self.1);
        }
        fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>) {
            let HandWritten(a, b) = self;
            v.parameter("w", a);
            v.parameter("w", b);
        }
    }
    let mut h = HandWritten(
        Parameter::new(zeros(&[1], &Device::Cpu)),
        Parameter::new(zeros(&[1], &Device::Cpu)),
    );
    assert!(matches!(h.state_dict(), Err(Error::InvalidName { .. })));
    assert!(matches!(
        h.load_state_dict(&StateDict::new(), false),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        h.to_device(&Device::Cpu),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn requires_grad_over_a_subtree() {
    let mut m = TinyEncoder::new(5, 16, false, &Device::Cpu).unwrap();
    m.output_net.set_requires_grad(false);
    let flags: Vec<(String, bool)> = m
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.requires_grad()))
        .collect();
    assert!(
        flags
            .iter()
            .all(|(n, on)| *on == n.starts_with("input_net")),
        "{flags:?}"
    );
    // Frozen parameters stay parameters and stay in the state dict.
    assert_eq!(m.state_dict().unwrap().len(), 8);
}

#[test]
fn moving_a_tree_of_1000_tensors_is_one_submission() {
    let gpu = common::gpu();
    let mut list = ModuleList::new();
    let mut expected = Vec::new();
    for i in 0..100 {
        let mut m = DynModule::new("Block");
        for j in 0..10 {
            let v = common::randn(1 + (i * 10 + j) % 7, (i * 10 + j) as u64);
            let t = Tensor::from_slice(&v, &[v.len()]).unwrap();
            let name = if j % 2 == 0 {
                format!("p{j}")
            } else {
                format!("b{j}")
            };
            expected.push((format!("blocks.{i}.{name}"), v));
            if j % 2 == 0 {
                m.register_parameter(name, Parameter::new(t)).unwrap();
            } else {
                m.register_buffer(name, Buffer::new(t)).unwrap();
            }
        }
        list = list.push(m);
    }
    let mut root = DynModule::new("Root");
    root.add_module("blocks", list).unwrap();
    let table: Vec<u16> = (0..4097).map(|i| i as u16).collect();
    root.register_buffer(
        "scratch",
        Buffer::non_persistent(Tensor::from_slice(&table, &[4097]).unwrap()),
    )
    .unwrap();

    let g = gpu.as_gpu().unwrap();
    let before = g.submission_count();
    root.to_device(&gpu).unwrap();
    assert_eq!(
        g.submission_count() - before,
        1,
        "1001 tensors in one upload submission"
    );

    let infos = root.tensor_infos();
    assert_eq!(infos.len(), 1001);
    assert!(
        infos.iter().all(|i| i.device == gpu),
        "every tensor, non-persistent included, is on the GPU"
    );
    // Contents identical (read back in one go).
    let host = root.state_dict().unwrap();
    assert_eq!(host.len(), 1000);
    for (path, want) in &expected {
        assert_eq!(
            &host.get(path).unwrap().to_vec::<f32>().unwrap(),
            want,
            "{path}"
        );
    }
    assert_eq!(
        root.get_buffer("scratch")
            .unwrap()
            .tensor()
            .to_vec::<u16>()
            .unwrap(),
        table
    );
    // Already there: no work at all.
    let before = g.submission_count();
    root.to_device(&gpu).unwrap();
    assert_eq!(g.submission_count(), before);
}

#[test]
fn a_failed_move_leaves_the_module_as_it_was() {
    let gpu = common::gpu_with_limits(|l| l.max_buffer_size = 1 << 16);
    let mut m = DynModule::new("M");
    m.register_parameter("small", Parameter::new(zeros(&[4], &Device::Cpu)))
        .unwrap();
    m.register_buffer("big", Buffer::new(zeros(&[1 << 15], &Device::Cpu)))
        .unwrap(); // 128 KiB > 64 KiB
    let e = m.to_device(&gpu).unwrap_err();
    assert!(matches!(e, Error::Limit { .. }), "{e}");
    assert!(
        m.tensor_infos().iter().all(|i| i.device == Device::Cpu),
        "nothing moved"
    );
}

#[test]
fn the_learned_table_is_a_parameter_and_the_sinusoidal_one_a_buffer() {
    let l = learned(&Device::Cpu).unwrap();
    assert_eq!(l.parameters().len(), 1);
    assert!(l.buffers().is_empty());
    let p = wgnn::PositionalEncoding::on(32, 128, &Device::Cpu).unwrap();
    assert!(p.parameters().is_empty());
    assert_eq!(p.buffers().len(), 1);
    assert_eq!(p.buffers()[0].tensor().dtype(), DType::F32);
}
