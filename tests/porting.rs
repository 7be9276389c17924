//! PyTorch porting idioms, one for one: replacing a buffer, deleting a submodule, `bias=False`,
//! a typed `ModuleList` edited in place, and a DataParallel checkpoint's `module.` keys renamed
//! and loaded strictly — with errors, not panics, for misuse.

use wgnn::nn::Linear;
use wgnn::{
    Buffer, DType, Device, DynModule, Error, ModuleExt, ModuleList, Parameter, StateDict, Tensor,
};

fn z(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn register_buffer_again_replaces_and_del_removes() {
    // m.register_buffer("stats", t); m.register_buffer("stats", t2, persistent=False)
    let mut m = DynModule::new("M");
    m.register_buffer("stats", Buffer::new(z(&[2]))).unwrap();
    m.register_parameter("w", Parameter::new(z(&[3]))).unwrap();
    m.add_module("child", Linear::new(2, 2).unwrap()).unwrap();
    m.register_buffer("stats", Buffer::non_persistent(z(&[4])))
        .unwrap();
    assert_eq!(m.get_buffer("stats").unwrap().tensor().shape(), [4]);
    assert_eq!(
        m.state_dict().unwrap().keys(),
        ["w", "child.weight", "child.bias"]
    );
    // A buffer over a parameter's name: PyTorch's KeyError.
    let e = m
        .register_buffer("w", Buffer::new(z(&[1])))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e}");
    // add_module over a child replaces it; over a buffer's name is an error.
    m.add_module("child", Linear::no_bias(2, 5).unwrap())
        .unwrap();
    assert_eq!(m.state_dict().unwrap().keys(), ["w", "child.weight"]);
    assert!(m.add_module("stats", DynModule::new("X")).is_err());
    // del m.child; del m.stats
    m.remove("child").unwrap();
    m.remove("stats").unwrap();
    assert!(m.named_children().is_empty() && m.named_buffers().is_empty());
    let e = m.remove("nope").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains('w'), "{e}");
}

#[test]
fn bias_false_layers_have_no_bias_anywhere() {
    let l = Linear::no_bias(3, 2).unwrap();
    assert_eq!(l.state_dict().unwrap().keys(), ["weight"]);
    assert_eq!(l.named_parameters().len(), 1);
    assert_eq!(
        l.repr(),
        "Linear(in_features=3, out_features=2, bias=False)"
    );
    let mut sd = StateDict::new();
    sd.insert("weight", z(&[2, 3]));
    sd.insert("bias", z(&[2]));
    let mut l = l;
    let e = l.load_state_dict(&sd, true).unwrap_err().to_string();
    assert!(
        e.contains("Unexpected key(s)") && e.contains("\"bias\""),
        "{e}"
    );
}

#[test]
fn a_typed_module_list_is_edited_in_place() {
    let d = Device::Cpu;
    let mut blocks: ModuleList<Linear> = ModuleList::from_items(
        (0..3)
            .map(|_| Linear::new(4, 4).and_then(|m| m.to(&d)).unwrap())
            .collect(),
    );
    // for block in self.blocks: block.bias = None
    for b in blocks.iter_mut() {
        b.bias = None;
    }
    // self.blocks[1] = nn.Linear(4, 8)
    *blocks.get_mut(1).unwrap() = Linear::new(4, 8).and_then(|m| m.to(&d)).unwrap();
    blocks.push_item(Linear::new(8, 2).and_then(|m| m.to(&d)).unwrap());
    assert_eq!(
        blocks.state_dict().unwrap().keys(),
        ["0.weight", "1.weight", "1.bias", "2.weight", "3.weight", "3.bias"]
    );
    assert_eq!(blocks.get(1).unwrap().weight.tensor().shape(), [8, 4]);
    assert!(blocks
        .repr()
        .starts_with("ModuleList(\n  (0): Linear(in_features=4, out_features=4, bias=False)"));
}

#[test]
fn a_dataparallel_checkpoint_loads_strictly_after_renaming() {
    let d = Device::Cpu;
    let mut net = DynModule::new("Net");
    net.add_module("fc", Linear::new(2, 3).and_then(|m| m.to(&d)).unwrap())
        .unwrap();
    let mut ckpt = StateDict::new();
    ckpt.insert(
        "module.fc.weight",
        Tensor::from_slice(&[1f32; 6], &[3, 2]).unwrap(),
    );
    ckpt.insert(
        "module.fc.bias",
        Tensor::from_slice(&[2f32; 3], &[3]).unwrap(),
    );
    assert!(net.load_state_dict(&ckpt, true).is_err());
    // {k.removeprefix("module."): v for k, v in ckpt.items()}
    net.load_state_dict_with(&ckpt, true, |k| k.trim_start_matches("module.").to_string())
        .unwrap();
    assert_eq!(
        net.get_parameter("fc.bias")
            .unwrap()
            .tensor()
            .to_vec::<f32>()
            .unwrap(),
        [2.0; 3]
    );
    net.load_state_dict(&ckpt.strip_prefix("module."), true)
        .unwrap();
    // Editing the dict: rename, remove, retain, and errors for misuse.
    let mut sd = ckpt.strip_prefix("module.");
    sd.rename("fc.bias", "fc.b").unwrap();
    assert_eq!(sd.keys(), ["fc.weight", "fc.b"]);
    assert!(sd.rename("nope", "x").is_err());
    assert!(sd.rename("fc.b", "fc.weight").is_err());
    assert!(sd.remove("fc.b").is_some() && sd.remove("fc.b").is_none());
    sd.insert("extra", z(&[1]));
    sd.retain(|k, _| k.starts_with("fc."));
    assert_eq!(sd.keys(), ["fc.weight"]);
    assert!(
        ckpt.map_keys(|_| "same".into()).is_err(),
        "two keys mapped to one name"
    );
}

mod common;

use wgnn::nn::{init, LayerNorm};
use wgnn::ops::Generator;
use wgnn::{Forward, Module, Sequential};

/// `self.bias = nn.Parameter(...) if bias else None`; `register_buffer("mask", None)`.
#[derive(wgnn::Module)]
struct Optional {
    weight: Parameter,
    bias: Option<Parameter>,
    mask: Option<Buffer>,
}
#[test]
fn optional_parameters_and_buffers_are_absent_while_none() {
    let mut m = Optional {
        weight: Parameter::new(z(&[2])),
        bias: None,
        mask: None,
    };
    assert_eq!(m.state_dict().unwrap().keys(), ["weight"]);
    assert!(m.named_buffers().is_empty());
    m.bias = Some(Parameter::new(z(&[2])));
    m.mask = Some(Buffer::non_persistent(z(&[2])));
    assert_eq!(m.state_dict().unwrap().keys(), ["weight", "bias"]);
    assert_eq!(m.named_buffers().len(), 1);
    m.to_device(&common::gpu()).unwrap();
    assert!(!m.mask.as_ref().unwrap().tensor().is_on(&Device::Cpu));
}

#[test]
fn mutable_access_by_path_with_errors_for_misuse() {
    let d = Device::Cpu;
    let mut net = DynModule::new("Net");
    let mut inner = DynModule::new("Inner");
    inner
        .add_module("fc", Linear::new(2, 2).and_then(|m| m.to(&d)).unwrap())
        .unwrap();
    inner
        .register_buffer("count", Buffer::new(z(&[1])))
        .unwrap();
    net.add_module("inner", inner).unwrap();
    net.get_parameter_mut("inner.fc.weight")
        .unwrap()
        .set_requires_grad(false);
    assert!(!net
        .get_parameter("inner.fc.weight")
        .unwrap()
        .requires_grad());
    net.get_buffer_mut("inner.count")
        .unwrap()
        .set_tensor(Tensor::from_slice(&[7f32], &[1]).unwrap())
        .unwrap();
    assert_eq!(
        net.get_buffer("inner.count")
            .unwrap()
            .tensor()
            .item::<f32>()
            .unwrap(),
        7.0
    );
    // A new value of another shape is refused, naming both.
    let e = net
        .get_parameter_mut("inner.fc.bias")
        .unwrap()
        .set_tensor(z(&[3]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2]") && e.contains("[3]"), "{e}");
    // The submodule, typed back through as_any_mut, and run.
    let fc = net.get_submodule_mut("inner.fc").unwrap();
    let fc = fc
        .as_any_mut()
        .and_then(|a| a.downcast_mut::<Linear>())
        .unwrap();
    assert_eq!(fc.forward(&z(&[1, 2])).unwrap().shape(), [1, 2]);
    // Wrong path, wrong kind: errors naming what exists.
    let e = net
        .get_parameter_mut("inner.fc.nope")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("weight"), "{e}");
    assert!(net.get_buffer_mut("inner.fc.weight").is_err());
    assert!(net.get_submodule_mut("inner.count").is_err());
    assert!(net.get_submodule_mut("").is_ok());
}

#[test]
fn a_typed_sequential_runs_and_hands_back_its_layers() {
    let d = Device::Cpu;
    let mut seq: Sequential<Linear> = Sequential::from_items(vec![
        Linear::new(3, 4).and_then(|m| m.to(&d)).unwrap(),
        Linear::no_bias(4, 2).and_then(|m| m.to(&d)).unwrap(),
    ]);
    seq.get_mut(0).unwrap().bias = None;
    assert_eq!(seq.state_dict().unwrap().keys(), ["0.weight", "1.weight"]);
    assert_eq!(seq.forward(&z(&[5, 3])).unwrap().shape(), [5, 2]);
    assert_eq!(
        seq.iter()
            .map(|l| l.weight.tensor().shape()[0])
            .collect::<Vec<_>>(),
        [4, 2]
    );
}

#[test]
fn bool_tensors_and_small_constructors() {
    let g = common::gpu();
    let b = Tensor::from_slice(&[true, false, true], &[3]).unwrap();
    assert_eq!(b.dtype(), DType::Bool);
    assert_eq!(
        b.to(&g).unwrap().to_vec::<bool>().unwrap(),
        [true, false, true]
    );
    let bad = Tensor::from_bytes(&[0, 2], &[2], DType::Bool).unwrap();
    assert!(bad.to_vec::<bool>().is_err(), "a byte 2 is no bool");
    assert_eq!(
        Tensor::full(&[2, 2], 2.5f32, &g)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        [2.5; 4]
    );
    assert_eq!(
        Tensor::ones(&[3], DType::I64, &g)
            .unwrap()
            .to_vec::<i64>()
            .unwrap(),
        [1; 3]
    );
    assert_eq!(
        Tensor::ones(&[2], DType::Bool, &Device::Cpu)
            .unwrap()
            .to_vec::<bool>()
            .unwrap(),
        [true; 2]
    );
    assert_eq!(
        Tensor::arange::<i64>(0.0, 5.0, 2.0, &g)
            .unwrap()
            .to_vec::<i64>()
            .unwrap(),
        [0, 2, 4]
    );
    assert_eq!(
        Tensor::arange::<f32>(1.0, 0.0, -0.25, &Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        [1.0, 0.75, 0.5, 0.25]
    );
    assert!(Tensor::arange::<f32>(0.0, 1.0, 0.0, &Device::Cpu).is_err());
    assert_eq!(
        Tensor::full(&[1], 3i64, &g).unwrap().item::<i64>().unwrap(),
        3
    );
    assert!(z(&[2]).item::<f32>().is_err());
}

#[test]
fn rand_and_randn_give_the_same_stream_on_cpu_and_gpu() {
    let g = common::gpu();
    let n = 100_000;
    let (mut a, mut b) = (Generator::new(11), Generator::new(11));
    let cpu = Tensor::rand(&[n], &mut a, &Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let gpu = Tensor::rand(&[n], &mut b, &g)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(cpu, gpu);
    assert_eq!(a.offset(), n as u64);
    let mean = cpu.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    assert!(
        cpu.iter().all(|&v| (0.0..1.0).contains(&v)) && (mean - 0.5).abs() < 0.005,
        "{mean}"
    );
    let cpu = Tensor::randn(&[n], &mut a, &Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let gpu = Tensor::randn(&[n], &mut b, &g)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(cpu, gpu);
    let mean = cpu.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = cpu.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(
        mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
        "mean {mean} var {var}"
    );
    // Another seed, another stream.
    let other = Tensor::rand(&[8], &mut Generator::new(12), &Device::Cpu)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_ne!(
        other,
        Tensor::rand(&[8], &mut Generator::new(11), &Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    );
}

#[test]
fn pytorch_default_init_of_linear_512_is_within_bounds_and_variance_and_device_independent() {
    let g = common::gpu();
    let mut on_cpu = Linear::new(512, 512).unwrap();
    let mut on_gpu = Linear::new(512, 512).and_then(|m| m.to(&g)).unwrap();
    init::with_generator(&mut Generator::new(5), || init::linear_(&mut on_cpu)).unwrap();
    init::with_generator(&mut Generator::new(5), || init::linear_(&mut on_gpu)).unwrap();
    let w = on_cpu.weight.tensor().to_vec::<f32>().unwrap();
    assert_eq!(
        w,
        on_gpu.weight.tensor().to_vec::<f32>().unwrap(),
        "same seed, same tensors"
    );
    let bound = 1.0 / 512f64.sqrt();
    assert!(w.iter().all(|&v| (v as f64).abs() <= bound));
    let var = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / w.len() as f64;
    let want = bound * bound / 3.0;
    assert!((var / want - 1.0).abs() < 0.05, "variance {var} vs {want}");
    let b = on_cpu
        .bias
        .as_ref()
        .unwrap()
        .tensor()
        .to_vec::<f32>()
        .unwrap();
    assert!(b.iter().all(|&v| (v as f64).abs() <= bound) && b.iter().any(|&v| v != 0.0));
    // xavier_uniform_ (the tutorial's attention) and normal_.
    let mut p = Parameter::new(z(&[96, 32]));
    init::with_generator(&mut Generator::new(1), || {
        init::xavier_uniform_(&mut p, 1.0)
    })
    .unwrap();
    let xb = (6.0f64 / 128.0).sqrt();
    let v = p.tensor().to_vec::<f32>().unwrap();
    assert!(v.iter().all(|&x| (x as f64).abs() <= xb));
    let var = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len() as f64;
    assert!((var / (xb * xb / 3.0) - 1.0).abs() < 0.1, "{var}");
    let mut p = Parameter::new(z(&[200, 100]));
    init::with_generator(&mut Generator::new(2), || init::normal_(&mut p, 2.0, 0.5)).unwrap();
    let v = p.tensor().to_vec::<f32>().unwrap();
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert!(
        (mean - 2.0).abs() < 0.02 && (sd - 0.5).abs() < 0.02,
        "{mean} {sd}"
    );
    assert!(
        init::with_generator(&mut Generator::new(0), || init::kaiming_uniform_(
            &mut Parameter::new(z(&[3])),
            0.0,
            init::FanMode::FanIn,
            "leaky_relu"
        ))
        .is_err()
    );
}

#[test]
fn apply_visits_children_before_parents_and_resets_every_layer() {
    let d = Device::Cpu;
    let mut net = Sequential::new()
        .push(Linear::new(4, 4).and_then(|m| m.to(&d)).unwrap())
        .push(
            Sequential::new()
                .push(LayerNorm::new(4).and_then(|m| m.to(&d)).unwrap())
                .push(Linear::new(4, 2).and_then(|m| m.to(&d)).unwrap()),
        );
    let mut order = Vec::new();
    net.apply(&mut |m: &mut dyn Module| {
        order.push(m.type_name());
        Ok(())
    })
    .unwrap();
    assert_eq!(
        order,
        ["Linear", "LayerNorm", "Linear", "Sequential", "Sequential"]
    );
    init::with_generator(&mut Generator::new(3), || init::reset_parameters(&mut net)).unwrap();
    let w = net
        .get_parameter("1.1.weight")
        .unwrap()
        .tensor()
        .to_vec::<f32>()
        .unwrap();
    assert!(w.iter().any(|&v| v != 0.0) && w.iter().all(|&v| v.abs() <= 0.5));
    assert_eq!(
        net.get_parameter("1.0.weight")
            .unwrap()
            .tensor()
            .to_vec::<f32>()
            .unwrap(),
        [1.0; 4]
    );
}
