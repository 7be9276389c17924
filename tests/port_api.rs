//! The port API (issue 28): `#[derive(Module)]`, tensor methods and operators, layers built and
//! initialised as PyTorch builds them (against PyTorch's own statistics), activations by name,
//! hyper-parameters as data, errors users raise, mixed-dtype products refused, and the Python
//! `set` / `bytearray` / `complex` of real checkpoints read as data.

mod common;

use common::fixture;
use wgnn::nn::{
    activation, init, Activation, AdaptiveAvgPool2d, BatchNorm2d, Conv1d, Conv2d, Dropout,
    Embedding, LayerNorm, Linear, MaxPool2d, ReLU, Tanh,
};
use wgnn::ops::{self, Generator};
use wgnn::torch::{Checkpoint, PyValue};
use wgnn::{
    bail, ensure, Buffer, DType, Device, Error, Forward, Layer, Module, ModuleExt, Parameter,
    ResultExt, Tensor,
};

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape).unwrap()
}

fn bits(x: &Tensor) -> Vec<u32> {
    x.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// #[derive(Module)]

#[derive(Module)]
#[module(type_name = "Gated", extra_repr = Self::args)]
struct Every {
    scale: Parameter,
    bias: Option<Parameter>,
    mask: Buffer,
    stats: Option<Buffer>,
    #[module(name = "0")]
    first: Linear,
    skip: Option<Linear>,
    heads: Vec<Linear>,
    act: Box<dyn Layer>,
    norm: BatchNorm2d,
    #[module(skip)]
    width: usize,
    #[module(training)]
    training: bool,
}

impl Every {
    fn args(&self) -> String {
        format!("width={}", self.width)
    }
    fn new() -> wgnn::Result<Self> {
        Ok(Every {
            scale: Parameter::new(Tensor::full(&[2], 1f32, &Device::Cpu)?),
            bias: None,
            mask: Buffer::non_persistent(Tensor::full(&[2], 0f32, &Device::Cpu)?),
            stats: Some(Buffer::new(Tensor::full(&[1], 3f32, &Device::Cpu)?)),
            first: Linear::new(2, 2)?,
            skip: None,
            heads: vec![Linear::new(2, 3)?, Linear::no_bias(2, 1)?],
            act: activation("tanh")?,
            norm: BatchNorm2d::new(2)?,
            width: 7,
            training: true,
        })
    }
}

#[derive(Module)]
struct Wrapper<M> {
    inner: M,
    #[module(skip)]
    tag: &'static str,
}

#[test]
fn derive_visits_every_kind_of_field_under_its_name() {
    let mut m = Every::new().unwrap();
    let params: Vec<String> = m.named_parameters().into_iter().map(|p| p.0).collect();
    assert_eq!(
        params,
        [
            "scale",
            "0.weight",
            "0.bias",
            "heads.0.weight",
            "heads.0.bias",
            "heads.1.weight",
            "norm.weight",
            "norm.bias"
        ]
    );
    let buffers: Vec<String> = m.named_buffers().into_iter().map(|b| b.0).collect();
    assert_eq!(
        buffers,
        [
            "mask",
            "stats",
            "norm.running_mean",
            "norm.running_var",
            "norm.num_batches_tracked"
        ]
    );
    // The non-persistent mask is a buffer but not in the state dict.
    let sd = m.state_dict().unwrap();
    let keys = sd.keys();
    assert!(!keys.contains(&"mask") && keys.contains(&"stats"));
    // `None` fields are absent; set, they appear.
    m.skip = Some(Linear::new(2, 2).unwrap());
    m.bias = Some(Parameter::new(
        Tensor::full(&[2], 0f32, &Device::Cpu).unwrap(),
    ));
    let sd = m.state_dict().unwrap();
    let keys = sd.keys();
    assert!(keys.contains(&"skip.weight") && keys.contains(&"bias"));
    // type_name, extra_repr, the Vec as a ModuleList, the boxed activation.
    let repr = m.repr();
    assert!(
        repr.starts_with("Gated(\n  width=7\n  (0): Linear(in_features=2"),
        "{repr}"
    );
    assert!(
        repr.contains(
            "(heads): ModuleList(\n    (0): Linear(in_features=2, out_features=3, bias=True)"
        ),
        "{repr}"
    );
    assert!(repr.contains("(act): Tanh()"), "{repr}");
    // The training flag: eval() reaches the struct's own flag and its children's.
    m.eval();
    assert!(!m.training && !m.norm.training);
    m.train();
    assert!(m.training && m.is_training());
    // Downcasting to the concrete type works through the derive.
    assert!(m.as_any_mut().is_some_and(|a| a.is::<Every>()));
}

#[test]
fn derive_works_on_generic_structs() {
    let w = Wrapper {
        inner: Conv2d::new(1, 2, 3).unwrap(),
        tag: "x",
    };
    assert_eq!(w.tag, "x");
    assert_eq!(
        w.state_dict().unwrap().keys(),
        ["inner.weight", "inner.bias"]
    );
    assert!(w.repr().starts_with("Wrapper(\n  (inner): Conv2d(1, 2"));
    let nested = Wrapper {
        inner: Wrapper {
            inner: vec![Linear::new(1, 1).unwrap()],
            tag: "in",
        },
        tag: "out",
    };
    assert_eq!(
        nested.state_dict().unwrap().keys()[0],
        "inner.inner.0.weight"
    );
}

#[test]
fn boxed_layers_and_containers_have_module_ext_without_upcasts() {
    let mut b: Box<dyn Layer> = Box::new(Linear::new(3, 4).unwrap());
    assert_eq!(b.num_parameters(), 16);
    assert_eq!(b.repr(), "Linear(in_features=3, out_features=4, bias=True)");
    b.to_device(&Device::Cpu).unwrap();
    let y = b.forward(&t(&[1.0, 2.0, 3.0], &[1, 3])).unwrap();
    assert_eq!(y.shape(), [1, 4]);
    // A boxed layer still downcasts to what it holds.
    assert!(b.as_any_mut().is_some_and(|a| a.is::<Linear>()));
    let v: Vec<Linear> = Vec::new();
    assert_eq!(v.num_parameters(), 0);
    let seq = wgnn::seq![Linear::new(2, 2).unwrap(), ReLU::new()];
    assert_eq!(seq.num_parameters(), 6);
}

#[test]
fn optional_layer_forward_passes_through_when_absent() {
    let x = t(&[1.0, -2.0], &[1, 2]);
    let mut none: Option<Linear> = None;
    assert_eq!(bits(&none.forward(&x).unwrap()), bits(&x));
    let mut some = Some(Linear::new(2, 5).unwrap());
    assert_eq!(some.forward(&x).unwrap().shape(), [1, 5]);
}

// ---------------------------------------------------------------------------------------------
// Tensor methods and operators

#[test]
fn methods_are_the_free_functions_bit_for_bit() {
    let x = t(&ramp(24), &[2, 3, 4]);
    let y = t(
        &ramp(24).iter().map(|v| v * 0.5 + 0.1).collect::<Vec<_>>(),
        &[2, 3, 4],
    );
    let pairs: Vec<(Tensor, Tensor)> = vec![
        (x.relu().unwrap(), ops::relu(&x).unwrap()),
        (x.tanh().unwrap(), ops::tanh(&x).unwrap()),
        (x.sigmoid().unwrap(), ops::sigmoid(&x).unwrap()),
        (x.exp().unwrap(), ops::exp(&x).unwrap()),
        (x.silu().unwrap(), ops::silu(&x).unwrap()),
        (x.gelu().unwrap(), ops::gelu(&x, false).unwrap()),
        (x.elu(0.5).unwrap(), ops::elu(&x, 0.5).unwrap()),
        (
            x.leaky_relu(0.1).unwrap(),
            ops::leaky_relu(&x, 0.1).unwrap(),
        ),
        ((&x + &y).unwrap(), ops::broadcast_add(&x, &y).unwrap()),
        ((&x - &y).unwrap(), ops::sub(&x, &y).unwrap()),
        ((&x * &y).unwrap(), ops::mul(&x, &y).unwrap()),
        ((&x / &y).unwrap(), ops::div(&x, &y).unwrap()),
        (x.softmax(-1).unwrap(), ops::softmax(&x).unwrap()),
        (
            x.sum([1, 2], false).unwrap(),
            ops::sum(&x, &[1, 2], false).unwrap(),
        ),
        (
            x.mean([-1], true).unwrap(),
            ops::mean_dim(&x, &[2], true).unwrap(),
        ),
        (
            x.var([1], false, true).unwrap(),
            ops::var(&x, &[1], false, true).unwrap(),
        ),
        (
            x.matmul(&y.permute([0, 2, 1]).unwrap()).unwrap(),
            ops::matmul(&x, &ops::permute(&y, &[0, 2, 1]).unwrap()).unwrap(),
        ),
        (x.flatten(1, -1).unwrap(), ops::flatten(&x, 1, -1).unwrap()),
    ];
    for (i, (a, b)) in pairs.iter().enumerate() {
        assert_eq!(a.shape(), b.shape(), "pair {i}");
        assert_eq!(bits(a), bits(b), "pair {i}");
    }
}

#[test]
fn negative_dimensions_count_from_the_end() {
    let x = t(&ramp(24), &[2, 3, 4]);
    assert_eq!(x.reshape([2, -1]).unwrap().shape(), [2, 12]);
    assert_eq!(x.reshape([-1]).unwrap().shape(), [24]);
    assert_eq!(x.permute([-1, 0, 1]).unwrap().shape(), [4, 2, 3]);
    assert_eq!(x.transpose(-1, -2).unwrap().shape(), [2, 4, 3]);
    assert_eq!(x.unsqueeze(-1).unwrap().shape(), [2, 3, 4, 1]);
    assert_eq!(x.sum([-1, -2], false).unwrap().shape(), [2]);
    let parts = x.chunk(2, -1).unwrap();
    assert_eq!(parts[0].shape(), [2, 3, 2]);
    let back = Tensor::cat(&[&parts[0], &parts[1]], -1).unwrap();
    assert_eq!(bits(&back.contiguous().unwrap()), bits(&x));
    // softmax over a dimension that is not the last: the last one's numbers, moved.
    let s0 = x.softmax(0).unwrap();
    let moved = x
        .transpose(0, -1)
        .unwrap()
        .softmax(-1)
        .unwrap()
        .transpose(0, -1)
        .unwrap();
    assert_eq!(
        bits(&s0.contiguous().unwrap()),
        bits(&moved.contiguous().unwrap())
    );
    let (vals, idx) = x.max(-1, false).unwrap();
    assert_eq!(vals.shape(), [2, 3]);
    assert_eq!(idx.dtype(), DType::I64);
    assert_eq!(x.argmax(1).unwrap().shape(), [2, 4]);
    // argmax over a middle dimension of a 4-D tensor: the values, against a loop.
    let v = ramp(2 * 3 * 4 * 5);
    let y = t(&v, &[2, 3, 4, 5]);
    let got = y.argmax(-3).unwrap();
    assert_eq!(got.shape(), [2, 4, 5]);
    let mut want = Vec::new();
    for a in 0..2 {
        for c in 0..4 {
            for d in 0..5 {
                let at = |b: usize| v[((a * 3 + b) * 4 + c) * 5 + d];
                let best = (0..3).fold(0, |m, b| if at(b) > at(m) { b } else { m });
                want.push(best as i64);
            }
        }
    }
    assert_eq!(got.to_vec::<i64>().unwrap(), want);
    // Out of range: PyTorch's message.
    let e = x.sum([3], false).unwrap_err().to_string();
    assert!(
        e.contains("Dimension out of range (expected to be in range of [-3, 2], but got 3)"),
        "{e}"
    );
    let e = x.reshape([5, -1]).unwrap_err().to_string();
    assert!(e.contains("invalid for input of size 24"), "{e}");
    assert!(x.reshape([-1, -1]).is_err());
}

#[test]
fn operators_take_scalars_on_either_side_and_results_in_chains() {
    let a = t(&[1.0, -2.0, 4.0], &[3]);
    let b = t(&[0.5, 0.25, 2.0], &[3]);
    assert_eq!(
        (&a + 1.0).unwrap().to_vec::<f32>().unwrap(),
        [2.0, -1.0, 5.0]
    );
    assert_eq!(
        (1f64 - &a).unwrap().to_vec::<f32>().unwrap(),
        [0.0, 3.0, -3.0]
    );
    assert_eq!(
        (&a * 2f32).unwrap().to_vec::<f32>().unwrap(),
        [2.0, -4.0, 8.0]
    );
    assert_eq!(
        (4f32 / &b).unwrap().to_vec::<f32>().unwrap(),
        [8.0, 16.0, 2.0]
    );
    assert_eq!(
        (&a / 2.0).unwrap().to_vec::<f32>().unwrap(),
        [0.5, -1.0, 2.0]
    );
    // Result on the left or right: one `?` for the chain.
    let gate = (&a.tanh().unwrap() * &b.sigmoid().unwrap()).unwrap();
    let chained = ((a.tanh() * &b.sigmoid().unwrap()) + &gate).unwrap();
    let want: Vec<f32> = gate
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v + v)
        .collect();
    assert_eq!(chained.to_vec::<f32>().unwrap(), want);
    let owned = (a.clone() - b.clone()).unwrap();
    assert_eq!(owned.to_vec::<f32>().unwrap(), [0.5, -2.25, 2.0]);
    // Broadcasting follows PyTorch; shapes that do not broadcast are an error, not a panic.
    let row = t(&[1.0, 2.0], &[1, 2]);
    let col = t(&[10.0, 20.0, 30.0], &[3, 1]);
    assert_eq!((&row + &col).unwrap().shape(), [3, 2]);
    assert!((&a + &row).is_err());
    // An error in the chain comes out at the end.
    let bad = a.reshape([7]);
    assert!((bad + &b).is_err());
}

#[test]
fn a_sum_read_by_a_norm_or_relu_gives_the_separate_ops_bits() {
    let x = t(&ramp(48), &[4, 12]);
    let r = t(
        &ramp(48).iter().rev().copied().collect::<Vec<_>>(),
        &[4, 12],
    );
    let mut ln = LayerNorm::new(12).unwrap();
    let eager = ops::layer_norm(
        &ops::broadcast_add(&x, &r).unwrap(),
        &[12],
        Some(ln.weight.tensor()),
        Some(ln.bias.tensor()),
        1e-5,
    )
    .unwrap();
    let lazy = ln.forward(&(&x + &r).unwrap()).unwrap();
    assert_eq!(bits(&lazy), bits(&eager));
    let relu_lazy = (&x + &r).unwrap().relu().unwrap();
    let relu_eager = ops::relu(&ops::broadcast_add(&x, &r).unwrap()).unwrap();
    assert_eq!(bits(&relu_lazy), bits(&relu_eager));
    // The sum itself still reads back, whoever else took it first.
    let s = (&x + &r).unwrap();
    let _ = s.relu().unwrap();
    assert_eq!(bits(&s), bits(&ops::broadcast_add(&x, &r).unwrap()));
}

// ---------------------------------------------------------------------------------------------
// Layers built as PyTorch builds them

#[test]
fn constructors_take_pytorchs_positional_arguments_and_defaults() {
    let c = Conv2d::new(3, 8, 3).unwrap();
    assert!(c.bias.is_some());
    assert_eq!(c.options, ops::ConvOptions::default());
    assert_eq!(c.weight.tensor().shape(), [8, 3, 3, 3]);
    assert_eq!(c.repr(), "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1))");
    let c = Conv2d::new(3, 8, (1, 5))
        .unwrap()
        .stride(2)
        .padding((0, 2))
        .bias(false);
    assert_eq!(
        c.repr(),
        "Conv2d(3, 8, kernel_size=(1, 5), stride=(2, 2), padding=(0, 2), bias=False)"
    );
    assert!(Conv2d::new(3, 8, 3).unwrap().groups(2).is_err()); // 3 channels in 2 groups
    let c1 = Conv1d::new(4, 6, 3).unwrap().padding(1);
    assert_eq!(
        c1.repr(),
        "Conv1d(4, 6, kernel_size=(3,), stride=(1,), padding=(1,))"
    );
    let p = MaxPool2d::new(3).stride(1).padding(1);
    assert_eq!(
        p.repr(),
        "MaxPool2d(kernel_size=3, stride=1, padding=1, dilation=1, ceil_mode=False)"
    );
    assert_eq!(MaxPool2d::new(2).stride, (2, 2));
    assert_eq!(AdaptiveAvgPool2d::new(1).output_size, (1, 1));
    assert_eq!(ReLU::new(), ReLU::default());
    assert_eq!(Tanh::new().repr(), "Tanh()");
    assert_eq!(
        wgnn::nn::LeakyReLU::new().negative_slope(0.2).repr(),
        "LeakyReLU(negative_slope=0.2)"
    );
    assert_eq!(
        LayerNorm::new(4).unwrap().eps(1e-6).repr(),
        "LayerNorm((4,), eps=1e-06, elementwise_affine=True, bias=True)"
    );
    assert_eq!(Dropout::new(0.1).repr(), "Dropout(p=0.1, inplace=False)");
    assert!(Linear::new(4, 2).unwrap().bias.is_some());
    // Built on the CPU; one call moves a whole tree.
    assert!(Linear::new(2, 2)
        .unwrap()
        .weight
        .tensor()
        .is_on(&Device::Cpu));
}

#[test]
fn activations_by_name_give_a_fresh_layer_per_call() {
    let act = Activation::new("LeakyReLU")
        .unwrap()
        .arg("negative_slope", 0.2)
        .unwrap();
    let (a, b) = (act.build(), act.build());
    assert_eq!(a.repr(), "LeakyReLU(negative_slope=0.2)");
    assert_eq!(b.repr(), a.repr());
    for (name, repr) in [
        ("relu", "ReLU()"),
        ("ReLU", "ReLU()"),
        ("tanh", "Tanh()"),
        ("sigmoid", "Sigmoid()"),
        ("gelu", "GELU(approximate='none')"),
        ("silu", "SiLU()"),
        ("elu", "ELU(alpha=1.0)"),
        ("leaky_relu", "LeakyReLU(negative_slope=0.01)"),
        ("leakyrelu", "LeakyReLU(negative_slope=0.01)"),
        ("softplus", "Softplus(beta=1.0, threshold=20.0)"),
        ("hardtanh", "Hardtanh(min_val=-1.0, max_val=1.0)"),
        ("identity", "Identity()"),
    ] {
        assert_eq!(activation(name).unwrap().repr(), repr, "{name}");
    }
    let gelu = Activation::new("GELU")
        .unwrap()
        .arg("approximate", "tanh")
        .unwrap();
    assert_eq!(gelu.build().repr(), "GELU(approximate='tanh')");
    let e = activation("swishy").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("swishy") && e.contains("LeakyReLU"), "{e}");
    let e = Activation::new("ReLU")
        .unwrap()
        .arg("alpha", 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected keyword argument 'alpha'"), "{e}");
    assert!(Activation::new("GELU")
        .unwrap()
        .arg("approximate", "cubic")
        .is_err());
}

/// What PyTorch's own initialisation drew (`tests/fixtures/init/make_init.py`): wgnn's stream is
/// not PyTorch's, so the values differ, but every bound, std and mean must agree.
#[test]
fn initialisation_matches_pytorchs_distributions_and_gains() {
    let text = std::fs::read_to_string(fixture("init/init_stats.json")).unwrap();
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = &want["cases"];
    let stats = |v: &[f32]| {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let max_abs = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
        (mean, var.sqrt(), max_abs)
    };
    let check = |name: &str, p: &Parameter| {
        let c = &cases[name];
        let v = p.tensor().to_vec::<f32>().unwrap();
        assert_eq!(v.len() as u64, c["n"].as_u64().unwrap(), "{name}: size");
        let (mean, std, max_abs) = stats(&v);
        let (tmean, tstd) = (c["mean"].as_f64().unwrap(), c["std"].as_f64().unwrap());
        if let Some(k) = c["constant"].as_f64() {
            assert!(v.iter().all(|&x| x as f64 == k), "{name}: constant {k}");
            return;
        }
        if let Some(bound) = c["uniform_bound"].as_f64() {
            let torch_max = c["max"].as_f64().unwrap().max(-c["min"].as_f64().unwrap());
            assert!(
                max_abs <= bound * (1.0 + 1e-6),
                "{name}: {max_abs} beyond {bound}"
            );
            assert!(
                torch_max <= bound * (1.0 + 1e-6),
                "{name}: PyTorch's beyond its bound"
            );
            assert!(
                max_abs >= 0.9 * bound,
                "{name}: max |w| {max_abs} far under the bound {bound}"
            );
        }
        if let Some(s) = c["normal_std"].as_f64() {
            assert!(
                (tstd / s - 1.0).abs() < 0.05,
                "{name}: PyTorch's std {tstd} vs {s}"
            );
        }
        let n = v.len() as f64;
        // Both are samples of one distribution: their stds agree to a few standard errors.
        let tol = 5.0 * (1.0 / (2.0 * n).sqrt()) + 0.01;
        assert!(
            (std / tstd - 1.0).abs() < tol,
            "{name}: std {std} vs PyTorch's {tstd} (±{tol})"
        );
        assert!(
            (mean - tmean).abs() < 6.0 * tstd / n.sqrt(),
            "{name}: mean {mean} vs PyTorch's {tmean}"
        );
    };
    init::with_generator(&mut Generator::new(0), || {
        let lin = Linear::new(512, 256).unwrap();
        check("Linear(512, 256).weight", &lin.weight);
        check("Linear(512, 256).bias", lin.bias.as_ref().unwrap());
        let conv = Conv2d::new(64, 128, 3).unwrap();
        check("Conv2d(64, 128, 3).weight", &conv.weight);
        check("Conv2d(64, 128, 3).bias", conv.bias.as_ref().unwrap());
        let grouped = Conv2d::new(32, 64, 3).unwrap().groups(4).unwrap();
        check("Conv2d(32, 64, 3, groups=4).weight", &grouped.weight);
        check(
            "Conv1d(16, 32, 5).weight",
            &Conv1d::new(16, 32, 5).unwrap().weight,
        );
        check(
            "Embedding(1000, 64).weight",
            &Embedding::new(1000, 64).unwrap().weight,
        );
        let bn = BatchNorm2d::new(64).unwrap();
        check("BatchNorm2d(64).weight", &bn.weight);
        check("BatchNorm2d(64).bias", &bn.bias);
        check("LayerNorm(64).weight", &LayerNorm::new(64).unwrap().weight);
        let mut w =
            Parameter::new(Tensor::zeros(&[256, 128, 3, 3], DType::F32, &Device::Cpu).unwrap());
        init::kaiming_normal_(&mut w, 0.0, "fan_out", "relu").unwrap(); // PyTorch's strings too
        check("kaiming_normal_(fan_out, relu)", &w);
        init::kaiming_normal_(&mut w, 0.2, init::FanMode::FanIn, "leaky_relu").unwrap();
        check("kaiming_normal_(a=0.2, fan_in, leaky_relu)", &w);
        init::kaiming_uniform_(&mut w, 0.0, init::FanMode::FanIn, "tanh").unwrap();
        check("kaiming_uniform_(fan_in, tanh)", &w);
        init::xavier_uniform_(&mut w, 2.0).unwrap();
        check("xavier_uniform_(gain=2)", &w);
        init::xavier_normal_(&mut w, 0.5).unwrap();
        check("xavier_normal_(gain=0.5)", &w);
    });
    for (key, g) in want["gains"].as_object().unwrap() {
        let (name, param) = key.split_once(':').unwrap();
        let param = param.parse::<f64>().ok();
        let ours = init::calculate_gain(name, param).unwrap();
        assert_eq!(
            ours,
            g.as_f64().unwrap(),
            "calculate_gain({name}, {param:?})"
        );
    }
    for (name, msg) in want["errors"].as_object().unwrap() {
        let e = init::calculate_gain(name, None).unwrap_err().to_string();
        assert_eq!(e, msg.as_str().unwrap(), "calculate_gain({name})");
    }
}

#[test]
fn manual_seed_makes_construction_reproducible_and_apply_is_fallible() {
    // Other tests draw from the global generator at the same time: use a thread's own.
    let a = init::with_generator(&mut Generator::new(3), || Linear::new(8, 8)).unwrap();
    let b = init::with_generator(&mut Generator::new(3), || Linear::new(8, 8)).unwrap();
    let c = init::with_generator(&mut Generator::new(4), || Linear::new(8, 8)).unwrap();
    assert_eq!(bits(a.weight.tensor()), bits(b.weight.tensor()));
    assert_ne!(bits(a.weight.tensor()), bits(c.weight.tensor()));
    // `apply` stops at the first error and returns it.
    let mut net = wgnn::seq![Linear::new(2, 2).unwrap(), Linear::new(2, 2).unwrap()];
    let mut seen = 0;
    let r = net.apply(&mut |_m| {
        seen += 1;
        Err(Error::msg("stop"))
    });
    assert_eq!(r.unwrap_err(), Error::msg("stop"));
    assert_eq!(seen, 1);
    // An init function's errors come back through apply (a 1-D weight has no fan-in).
    let mut p = Parameter::new(Tensor::zeros(&[3], DType::F32, &Device::Cpu).unwrap());
    assert!(init::kaiming_normal_(&mut p, 0.0, init::FanMode::FanIn, "relu").is_err());
    let mut w = Parameter::new(Tensor::zeros(&[4, 4], DType::F32, &Device::Cpu).unwrap());
    let e = init::kaiming_uniform_(&mut w, 0.0, "fan_both", "relu").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Mode fan_both not supported, please use one of fan_in, fan_out"
    );
    assert!(init::kaiming_normal_(
        &mut Parameter::new(Tensor::zeros(&[2, 2], DType::F32, &Device::Cpu).unwrap()),
        0.0,
        init::FanMode::FanIn,
        "gelu"
    )
    .is_err());
}

// ---------------------------------------------------------------------------------------------
// Hyper-parameters as data

#[derive(serde::Deserialize, Debug, PartialEq)]
struct ModelHparams {
    num_classes: usize,
    num_blocks: Vec<usize>,
    c_hidden: Vec<usize>,
    act_fn_name: String,
    /// Absent in the published file (the constructor's default).
    block_name: Option<BlockName>,
}

#[derive(serde::Deserialize, Debug, PartialEq)]
#[allow(dead_code)]
enum BlockName {
    ResNetBlock,
    PreActResNetBlock,
}

#[test]
fn hparams_read_into_a_users_struct_in_one_call() {
    let ck = Checkpoint::load(fixture("tutorial5/ResNet.ckpt")).unwrap();
    let hp: ModelHparams = ck.hparams("model_hparams").unwrap();
    assert_eq!(
        hp,
        ModelHparams {
            num_classes: 10,
            num_blocks: vec![3, 3, 3],
            c_hidden: vec![16, 32, 64],
            act_fn_name: "relu".into(),
            block_name: None,
        }
    );
    // Typed accessors for quick reads.
    let mh = ck.root.at("hyper_parameters.model_hparams").unwrap();
    assert_eq!(mh.get("num_classes").and_then(PyValue::as_i64), Some(10));
    assert_eq!(
        mh.get("act_fn_name").and_then(PyValue::as_str),
        Some("relu")
    );
    assert_eq!(
        mh.get("c_hidden")
            .and_then(PyValue::as_list)
            .map(|l| l.len()),
        Some(3)
    );
    // A mistyped key: the error names it.
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Wrong {
        c_hidden: Vec<String>,
    }
    let e = ck
        .hparams::<Wrong>("model_hparams")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c_hidden[0]") && e.contains("expected a string"),
        "{e}"
    );
    // A missing key: named too.
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Missing {
        dropout: f64,
    }
    let e = ck
        .hparams::<Missing>("model_hparams")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field `dropout`"), "{e}");
    // An absent dict: the error says what the file has.
    let e = ck.hparams::<ModelHparams>("nope").unwrap_err().to_string();
    assert!(
        e.contains("hyper_parameters.nope") && e.contains("state_dict"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors users raise

fn parse_heads(embed: usize, heads: usize) -> wgnn::Result<usize> {
    ensure!(heads > 0, "num_heads must be positive, got {heads}");
    if !embed.is_multiple_of(heads) {
        bail!("embed_dim {embed} is not a multiple of num_heads {heads}");
    }
    Ok(embed / heads)
}

#[test]
fn errors_can_be_raised_from_outside_with_context() {
    assert_eq!(parse_heads(32, 4).unwrap(), 8);
    assert_eq!(
        parse_heads(32, 0).unwrap_err(),
        Error::msg("num_heads must be positive, got 0")
    );
    let e = parse_heads(30, 4).context("building layer 2").unwrap_err();
    assert_eq!(
        e.to_string(),
        "building layer 2: embed_dim 30 is not a multiple of num_heads 4"
    );
    assert_eq!(
        e.root(),
        &Error::msg("embed_dim 30 is not a multiple of num_heads 4")
    );
    let source = std::error::Error::source(&e).map(|s| s.to_string());
    assert_eq!(
        source.as_deref(),
        Some("embed_dim 30 is not a multiple of num_heads 4")
    );
    // `?` into Box<dyn Error> (and so anyhow).
    fn app() -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        Ok(parse_heads(30, 4)?)
    }
    assert!(app().unwrap_err().to_string().contains("not a multiple"));
    // A wgnn op's error gets context the same way.
    let x = t(&[1.0, 2.0], &[2]);
    let e = x
        .reshape([3])
        .with_context(|| "reshaping the input")
        .unwrap_err();
    assert!(
        e.to_string().starts_with("reshaping the input: reshape:"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// The two defects

#[test]
fn products_and_convolutions_refuse_mixed_dtypes_as_pytorch() {
    let lin = Linear::new(4, 3).unwrap();
    let x16 = t(&ramp(8), &[2, 4]).to_dtype(DType::F16).unwrap();
    let mut lin = lin;
    let e = lin.forward(&x16).unwrap_err();
    assert!(matches!(e, Error::Dtype { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("float16") && msg.contains("float32"), "{msg}");
    let w = t(&ramp(12), &[4, 3]);
    assert!(matches!(
        ops::matmul(&x16, &w).unwrap_err(),
        Error::Dtype { .. }
    ));
    assert!(matches!(x16.matmul(&w).unwrap_err(), Error::Dtype { .. }));
    let mut conv = Conv2d::new(1, 2, 3).unwrap();
    let img16 = t(&ramp(25), &[1, 1, 5, 5]).to_dtype(DType::BF16).unwrap();
    let msg = conv.forward(&img16).unwrap_err().to_string();
    assert!(msg.contains("bfloat16") && msg.contains("float32"), "{msg}");
    // One dtype throughout is fine; elementwise ops still promote as PyTorch.
    lin.to_dtype(DType::F16).unwrap();
    assert_eq!(lin.forward(&x16).unwrap().dtype(), DType::F16);
    let sum = (&x16 + &t(&ramp(8), &[2, 4])).unwrap();
    assert_eq!(sum.dtype(), DType::F32);
}

/// A legacy `torch.save` stream (magic, protocol, sys_info, then the object, the storage keys and
/// the storages) whose object pickle `body` builds.
fn legacy_file(body: &[u8]) -> Vec<u8> {
    let mut magic = vec![0x80, 0x02, 0x8a, 0x0a];
    magic.extend_from_slice(&0x1950A86A20F9469CFC6Cu128.to_le_bytes()[..10]);
    magic.push(b'.');
    let mut f = magic;
    f.extend_from_slice(b"\x80\x02M\xe9\x03.\x80\x02}.");
    f.extend_from_slice(body);
    f.extend_from_slice(b"\x80\x02]."); // no storages
    f
}

fn s(text: &str) -> Vec<u8> {
    let mut v = vec![0x8c, text.len() as u8];
    v.extend_from_slice(text.as_bytes());
    v
}

#[test]
fn a_pickled_set_bytearray_and_complex_read_as_data() {
    // {'classes': __builtin__.set([1, 2]), 'blob': bytearray(u'ab', 'latin-1'),
    //  'z': complex(1.5, -2.0), 'tags': frozenset() built with protocol 4's opcodes}
    let mut body = b"\x80\x02}(".to_vec();
    body.extend(s("classes"));
    body.extend_from_slice(b"c__builtin__\nset\n](K\x01K\x02e\x85R");
    body.extend(s("blob"));
    body.extend_from_slice(b"c__builtin__\nbytearray\n");
    body.extend(s("ab"));
    body.extend(s("latin-1"));
    body.extend_from_slice(b"\x86R");
    body.extend(s("z"));
    body.extend_from_slice(
        b"cbuiltins\ncomplex\nG?\xf8\x00\x00\x00\x00\x00\x00G\xc0\x00\x00\x00\x00\x00\x00\x00\x86R",
    );
    body.extend(s("tags"));
    body.extend_from_slice(b"\x8f(K\x07\x90");
    body.extend(s("frozen"));
    body.extend_from_slice(b"(K\x03\x91");
    body.extend_from_slice(b"u.");
    let ck = Checkpoint::from_bytes(&legacy_file(&body)).unwrap();
    let get = |k: &str| ck.root.get(k).unwrap();
    assert!(
        matches!(get("classes"), PyValue::Set(v) if matches!(v[..], [PyValue::Int(1), PyValue::Int(2)]))
    );
    assert!(matches!(get("blob"), PyValue::Bytes(b) if b == b"ab"));
    assert!(matches!(get("z"), PyValue::Complex(re, im) if *re == 1.5 && *im == -2.0));
    assert!(matches!(get("tags"), PyValue::Set(v) if matches!(v[..], [PyValue::Int(7)])));
    assert!(matches!(get("frozen"), PyValue::Set(v) if matches!(v[..], [PyValue::Int(3)])));
    // As data for serde, too.
    let classes: std::collections::BTreeSet<i64> =
        ck.root.get("classes").unwrap().deserialize().unwrap();
    assert_eq!(classes.into_iter().collect::<Vec<_>>(), [1, 2]);
    // Code-running builtins stay refused.
    let mut evil = b"\x80\x02c__builtin__\neval\n".to_vec();
    evil.extend(s("1"));
    evil.extend_from_slice(b"\x85R.");
    let e = Checkpoint::from_bytes(&legacy_file(&evil))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("__builtin__.eval") && e.contains("runs commands"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// The library's fusions: model code calls plain layers and operators

/// On a GPU under no_grad: an eval-mode BatchNorm2d and the ReLU after it, a Linear and the
/// ReLU after it (past an eval-mode Dropout), a sum read by a LayerNorm or a ReLU, each run as
/// one dispatch, with the separate ops' bits.
#[test]
fn plain_layers_get_the_librarys_fusions() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    let count = |f: &mut dyn FnMut() -> Tensor| {
        let before = g.dispatch_count(None);
        let y = wgnn::autograd::no_grad(&mut *f);
        (g.dispatch_count(None) - before, y)
    };
    let x = t(&ramp(2 * 3 * 4 * 4), &[2, 3, 4, 4]).to(&gpu).unwrap();
    let mut bn_relu = wgnn::seq![BatchNorm2d::new(3).unwrap(), ReLU::new()]
        .to(&gpu)
        .unwrap();
    bn_relu.eval();
    let (n, fused) = count(&mut || bn_relu.forward(&x).unwrap());
    assert_eq!(n, 1, "BatchNorm2d + ReLU");
    let mut bn = BatchNorm2d::new(3).unwrap().to(&gpu).unwrap();
    bn.eval();
    let apart = ops::relu(&bn.forward(&x).unwrap()).unwrap();
    assert_eq!(bits(&fused), bits(&apart));

    let h = t(&ramp(6 * 8), &[6, 8]).to(&gpu).unwrap();
    let mut mlp = wgnn::seq![Linear::new(8, 5).unwrap(), Dropout::new(0.5), ReLU::new()]
        .to(&gpu)
        .unwrap();
    mlp.eval();
    let (n, fused) = count(&mut || mlp.forward(&h).unwrap());
    assert_eq!(n, 1, "Linear + Dropout(eval) + ReLU");
    let lin = mlp.get_submodule_mut("0").unwrap();
    let lin = lin.as_any_mut().unwrap().downcast_mut::<Linear>().unwrap();
    let apart = ops::relu(&lin.forward(&h).unwrap()).unwrap();
    assert_eq!(bits(&fused), bits(&apart));

    let r = t(
        &ramp(6 * 8).iter().map(|v| v * 0.3).collect::<Vec<_>>(),
        &[6, 8],
    )
    .to(&gpu)
    .unwrap();
    let mut ln = LayerNorm::new(8).unwrap().to(&gpu).unwrap();
    let (n, fused) = count(&mut || ln.forward(&(&h + &r).unwrap()).unwrap());
    assert_eq!(n, 1, "sum + LayerNorm");
    let sum = ops::broadcast_add(&h, &r).unwrap();
    assert_eq!(bits(&fused), bits(&ln.forward(&sum).unwrap()));
    let (n, fused) = count(&mut || (&h + &r).unwrap().relu().unwrap());
    assert_eq!(n, 1, "sum + ReLU");
    assert_eq!(bits(&fused), bits(&ops::relu(&sum).unwrap()));
    // Recording a gradient, the same layers run as the separate ops.
    let w = Parameter::new(t(&[0.5; 8], &[8]).to(&gpu).unwrap());
    let before = g.dispatch_count(None);
    let y = ln.forward(&(&h + w.tensor()).unwrap()).unwrap();
    assert!(y.requires_grad());
    assert!(
        g.dispatch_count(None) - before >= 2,
        "a recorded sum is computed"
    );
}
