//! The convolution, pooling, batch-norm and activation ops against PyTorch 2.15's own results
//! (`tests/fixtures/tutorial5/ops_cases.safetensors`: 31 cases with their upstream gradient
//! `g`, output and input gradients), on the CPU and the GPU: forward within 1e-5 × max|y|,
//! gradients within 1e-5 × max|grad|; max pooling exactly.

mod common;

use common::{fixture, gpu};
use serde_json::Value;
use wgnn::nn::{BatchNorm2d, Conv2d};

use wgnn::ops::{self, ConvOptions, Padding};
use wgnn::ModuleExt as _;
use wgnn::{DType, Device, Forward, Parameter, StateDict, Tensor};

fn cases() -> (StateDict, Vec<(String, Value)>) {
    let sd = StateDict::load(fixture("tutorial5/ops_cases.safetensors")).unwrap();
    let mut cases: Vec<(String, Value)> = sd
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap()))
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(cases.len(), 31, "the fixture has 31 op cases");
    (sd, cases)
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// The largest |got - want| relative to max|want| (NaN-free; infinities must match exactly).
fn rel_err(got: &[f32], want: &[f32], what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = max_abs(want).max(f32::MIN_POSITIVE) as f64;
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_infinite() || g.is_infinite() {
            assert_eq!(g, w, "{what}[{i}]");
            continue;
        }
        assert!(!g.is_nan(), "{what}[{i}] is NaN (want {w})");
        worst = worst.max((*g as f64 - *w as f64).abs() / scale);
    }
    worst
}

fn pair(v: &Value) -> (usize, usize) {
    match v {
        Value::Array(a) => (
            a[0].as_u64().unwrap() as usize,
            a[1].as_u64().unwrap() as usize,
        ),
        v => {
            let x = v.as_u64().unwrap() as usize;
            (x, x)
        }
    }
}

fn conv_options(args: &Value) -> ConvOptions {
    let padding = match &args["padding"] {
        Value::String(s) if s == "same" => Padding::Same,
        v => {
            let (h, w) = pair(v);
            Padding::Explicit(h, w)
        }
    };
    ConvOptions {
        stride: pair(&args["stride"]),
        padding,
        dilation: pair(&args["dilation"]),
        groups: args["groups"].as_u64().unwrap() as usize,
    }
}

/// Runs one case on `d`: the output, and the gradient of each input the case lists, in order.
fn run_case(sd: &StateDict, name: &str, meta: &Value, d: &Device) -> (Tensor, Vec<Tensor>) {
    let get = |k: &str| {
        sd.get(&format!("{name}.{k}"))
            .unwrap_or_else(|| panic!("{name}.{k} missing"))
            .to(d)
            .unwrap()
    };
    let op = meta["op"].as_str().unwrap();
    let args = &meta["args"];
    let g = get("g");
    if op == "batch_norm" {
        // Through the layer, as a model uses it: weight, bias and the running statistics
        // loaded, then one forward in the case's mode.
        let c = get("weight").numel();
        let mut bn = BatchNorm2d::new(c).and_then(|m| m.to(d)).unwrap();
        bn.weight = Parameter::new(get("weight"));
        bn.bias = Parameter::new(get("bias"));
        bn.running_mean.set_tensor(get("running_mean")).unwrap();
        bn.running_var.set_tensor(get("running_var")).unwrap();
        bn.training = args["training"].as_bool().unwrap();
        bn.momentum = Some(args["momentum"].as_f64().unwrap());
        let x = Parameter::new(get("x"));
        let y = bn.forward(x.tensor()).unwrap();
        y.backward_with(&g).unwrap();
        if bn.training {
            let (m, v) = (
                f32s(bn.running_mean.tensor()),
                f32s(bn.running_var.tensor()),
            );
            let want_m = f32s(&sd.get(&format!("{name}.new_running_mean")).unwrap().clone());
            let want_v = f32s(&sd.get(&format!("{name}.new_running_var")).unwrap().clone());
            for (got, want, what) in [(m, want_m, "running_mean"), (v, want_v, "running_var")] {
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        ((a - b) / b).abs() <= 1e-6,
                        "{name} {what}: {a} vs {b} on {d}"
                    );
                }
            }
            assert_eq!(
                bn.num_batches_tracked.tensor().to_vec::<i64>().unwrap(),
                [1]
            );
        }
        let grads = vec![
            x.grad().unwrap(),
            bn.weight.grad().unwrap(),
            bn.bias.grad().unwrap(),
        ];
        return (y, grads);
    }
    let inputs: Vec<Parameter> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| Parameter::new(get(k.as_str().unwrap())))
        .collect();
    let t: Vec<&Tensor> = inputs.iter().map(|p| p.tensor()).collect();
    let x = t[0];
    let y = match op {
        "conv2d" => ops::conv2d(x, t[1], t.get(2).copied(), &conv_options(args)),
        "conv1d" => ops::conv1d(x, t[1], t.get(2).copied(), &conv_options(args)),
        "max_pool2d" => ops::max_pool2d(
            x,
            pair(&args["kernel_size"]),
            pair(&args["stride"]),
            pair(&args["padding"]),
        ),
        "avg_pool2d" => ops::avg_pool2d(
            x,
            pair(&args["kernel_size"]),
            pair(&args["stride"]),
            pair(&args["padding"]),
            args["count_include_pad"].as_bool().unwrap_or(true),
        ),
        "adaptive_avg_pool2d" => ops::adaptive_avg_pool2d(x, pair(&args["output_size"])),
        "relu" => ops::relu(x),
        "gelu" => ops::gelu(x, args["approximate"].as_str() == Some("tanh")),
        "silu" => ops::silu(x),
        // The tutorial's `x * torch.sigmoid(x)`, as the tutorial 3 MLP runs it.
        "swish_tutorial3" | "swish" | "x * sigmoid(x)" => ops::mul(x, &ops::sigmoid(x).unwrap()),
        "elu" => ops::elu(x, args["alpha"].as_f64().unwrap_or(1.0) as f32),
        "leaky_relu" => ops::leaky_relu(x, args["negative_slope"].as_f64().unwrap() as f32),
        "sigmoid" => ops::sigmoid(x),
        "tanh" => ops::tanh(x),
        "softplus" => ops::softplus(
            x,
            args["beta"].as_f64().unwrap() as f32,
            args["threshold"].as_f64().unwrap() as f32,
        ),
        "hardtanh" => ops::hardtanh(
            x,
            args["min_val"].as_f64().unwrap() as f32,
            args["max_val"].as_f64().unwrap() as f32,
        ),
        other => panic!("{name}: unknown op {other}"),
    }
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    y.backward_with(&g).unwrap();
    let grads = inputs
        .iter()
        .map(|p| p.grad().unwrap_or_else(|| panic!("{name}: no gradient")))
        .collect();
    (y, grads)
}

fn check_all(d: &Device) {
    let (sd, cases) = cases();
    let mut report = Vec::new();
    for (name, meta) in &cases {
        let (y, grads) = run_case(&sd, name, meta, d);
        let want = f32s(sd.get(&format!("{name}.out")).unwrap());
        assert_eq!(
            y.shape(),
            meta["out_shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect::<Vec<_>>(),
            "{name}: shape"
        );
        let got = f32s(&y);
        let ey = rel_err(&got, &want, &format!("{name} out on {d}"));
        if meta["op"] == "max_pool2d" {
            assert_eq!(got, want, "{name}: max pooling is exact");
        }
        assert!(ey <= 1e-5, "{name}: forward off by {ey:e} × max|y| on {d}");
        let names: Vec<&str> = meta["grads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names.len(), grads.len(), "{name}: gradient count");
        let mut eg = 0f64;
        for (gname, g) in names.iter().zip(&grads) {
            let want = f32s(sd.get(&format!("{name}.{gname}")).unwrap());
            let e = rel_err(&f32s(g), &want, &format!("{name}.{gname} on {d}"));
            assert!(e <= 1e-5, "{name}: {gname} off by {e:e} × max|grad| on {d}");
            eg = eg.max(e);
        }
        report.push(format!("{name}: y {ey:.1e}, grads {eg:.1e}"));
    }
    eprintln!("{d}:\n  {}", report.join("\n  "));
}

#[test]
fn every_op_case_matches_pytorch_on_the_cpu() {
    check_all(&Device::Cpu);
}

#[test]
fn every_op_case_matches_pytorch_on_the_gpu() {
    check_all(&gpu());
}

/// Max pooling's indices and ties as PyTorch: the first maximum in row-major window order
/// wins a tie, a NaN is a window's maximum (the last NaN), padding is -inf, and the gradient
/// goes to the index alone. Expected values worked out by hand from PyTorch's CPU loop
/// (`aten/src/ATen/native/cpu/MaxPoolKernel.cpp`).
#[test]
fn max_pool_ties_nan_and_indices_follow_pytorch() {
    #[rustfmt::skip]
    let x = [
        1.0, 1.0, 2.0, 2.0,
        1.0, 0.0, f32::NAN, 2.0,
        -3.0, -3.0, 5.0, 5.0,
        -3.0, -3.0, 5.0, f32::NAN,
    ];
    for d in [Device::Cpu, gpu()] {
        let t = Tensor::from_slice(&x, &[1, 1, 4, 4])
            .unwrap()
            .to(&d)
            .unwrap();
        let y = f32s(&ops::max_pool2d(&t, (2, 2), (2, 2), (0, 0)).unwrap());
        let idx = ops::max_pool2d_indices(&t, (2, 2), (2, 2), (0, 0))
            .unwrap()
            .to_vec::<i64>()
            .unwrap();
        // Windows: {1,1,1,0} → first 1 at 0; {2,2,NaN,2} → NaN at 6; {-3 ×4} → 8;
        // {5,5,5,NaN} → NaN at 15.
        assert_eq!(idx, [0, 6, 8, 15], "{d}");
        assert_eq!(y[0], 1.0);
        assert!(y[1].is_nan() && y[3].is_nan());
        assert_eq!(y[2], -3.0);
        // With padding 1 and a 3 × 3 window at stride 2: padding never wins, even over -inf.
        let neg = Tensor::from_slice(&[f32::NEG_INFINITY; 4], &[1, 1, 2, 2])
            .unwrap()
            .to(&d)
            .unwrap();
        let i2 = ops::max_pool2d_indices(&neg, (3, 3), (2, 2), (1, 1))
            .unwrap()
            .to_vec::<i64>()
            .unwrap();
        assert_eq!(i2, [0], "all -inf: the window's first element ({d})");
        // Gradient to the tied maximum's first index only.
        let p = Parameter::new(t.clone());
        let y = ops::max_pool2d(p.tensor(), (2, 2), (2, 2), (0, 0)).unwrap();
        y.backward_with(&Tensor::full(&[1, 1, 2, 2], 1f32, &d).unwrap())
            .unwrap();
        let g = f32s(&p.grad().unwrap());
        let want: Vec<f32> = (0..16)
            .map(|i| if [0, 6, 8, 15].contains(&i) { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(g, want, "{d}");
    }
}

/// Overlapping windows add their gradients in output order (stride 1, window 2): PyTorch's
/// scatter order; the same bits on both devices.
#[test]
fn pooling_gradients_are_the_same_bits_on_cpu_and_gpu() {
    let mut gen = ops::Generator::new(3);
    let x = ops::normal(&[2, 3, 9, 7], &mut gen, &Device::Cpu).unwrap();
    let gy = ops::normal(&[2, 3, 8, 6], &mut gen, &Device::Cpu).unwrap();
    let run = |d: &Device, kind: usize| {
        let p = Parameter::new(x.to(d).unwrap());
        let y = match kind {
            0 => ops::max_pool2d(p.tensor(), (2, 2), (1, 1), (0, 0)),
            1 => ops::avg_pool2d(p.tensor(), (2, 2), (1, 1), (0, 0), true),
            _ => ops::adaptive_avg_pool2d(p.tensor(), (8, 6)),
        }
        .unwrap();
        y.backward_with(&gy.to(d).unwrap()).unwrap();
        (f32s(&y), f32s(&p.grad().unwrap()))
    };
    let g = gpu();
    for kind in 0..3 {
        let (yc, gc) = run(&Device::Cpu, kind);
        let (yg, gg) = run(&g, kind);
        assert_eq!(
            yc.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            yg.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "pool {kind}: forward bits"
        );
        assert_eq!(
            gc.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            gg.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "pool {kind}: gradient bits"
        );
    }
}

/// The layers' repr and state-dict keys, as PyTorch prints them.
#[test]
fn conv_layers_print_like_pytorch() {
    let d = Device::Cpu;
    let c = Conv2d::new(3, 16, 3).unwrap().padding(1).bias(false);
    assert_eq!(
        c.repr(),
        "Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)"
    );
    let c = Conv2d::new(16, 32, (1, 1)).unwrap().stride(2);
    assert_eq!(
        c.repr(),
        "Conv2d(16, 32, kernel_size=(1, 1), stride=(2, 2))"
    );
    let c = Conv2d::new(4, 4, (5, 5))
        .unwrap()
        .padding_same()
        .dilation(2)
        .groups(4)
        .unwrap();
    assert_eq!(
        c.repr(),
        "Conv2d(4, 4, kernel_size=(5, 5), stride=(1, 1), padding=same, dilation=(2, 2), groups=4)"
    );
    let c1 = wgnn::nn::Conv1d::new(4, 6, 3).unwrap().stride(2).padding(1);
    assert_eq!(
        c1.repr(),
        "Conv1d(4, 6, kernel_size=(3,), stride=(2,), padding=(1,))"
    );
    assert_eq!(c1.weight.tensor().shape(), [6, 4, 3]);
    let bn = BatchNorm2d::new(16).and_then(|m| m.to(&d)).unwrap();
    assert_eq!(
        bn.repr(),
        "BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)"
    );
    let keys: Vec<String> = bn
        .state_dict()
        .unwrap()
        .keys()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked"
        ]
    );
    use wgnn::nn::*;
    let reprs = [
        (
            MaxPool2d::new(2).repr(),
            "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)",
        ),
        (
            AvgPool2d::new(2).repr(),
            "AvgPool2d(kernel_size=2, stride=2, padding=0)",
        ),
        (
            AdaptiveAvgPool2d {
                output_size: (1, 1),
            }
            .repr(),
            "AdaptiveAvgPool2d(output_size=(1, 1))",
        ),
        (
            Flatten::default().repr(),
            "Flatten(start_dim=1, end_dim=-1)",
        ),
        (GELU::default().repr(), "GELU(approximate='none')"),
        (SiLU {}.repr(), "SiLU()"),
        (ELU::default().repr(), "ELU(alpha=1.0)"),
        (
            LeakyReLU::default().repr(),
            "LeakyReLU(negative_slope=0.01)",
        ),
        (Sigmoid {}.repr(), "Sigmoid()"),
        (Tanh {}.repr(), "Tanh()"),
        (
            Softplus::default().repr(),
            "Softplus(beta=1.0, threshold=20.0)",
        ),
        (
            Hardtanh::default().repr(),
            "Hardtanh(min_val=-1.0, max_val=1.0)",
        ),
        (Identity {}.repr(), "Identity()"),
    ];
    for (got, want) in reprs {
        assert_eq!(got, want);
    }
}

/// Bad arguments are errors that name the sizes, never panics.
#[test]
fn bad_convolutions_and_pools_are_clear_errors() {
    let d = Device::Cpu;
    let x = Tensor::zeros(&[1, 4, 5, 5], DType::F32, &d).unwrap();
    let w = Tensor::zeros(&[6, 3, 3, 3], DType::F32, &d).unwrap();
    let e = ops::conv2d(&x, &w, None, &ConvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("expects input to have 3 channels"), "{e}");
    let w = Tensor::zeros(&[6, 4, 7, 7], DType::F32, &d).unwrap();
    let e = ops::conv2d(&x, &w, None, &ConvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("smaller than the kernel"), "{e}");
    let w = Tensor::zeros(&[6, 4, 3, 3], DType::F32, &d).unwrap();
    let e = ops::conv2d(&x, &w, None, &ConvOptions::default().same().stride(2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("strided"), "{e}");
    let e = ops::conv2d(&x, &w, None, &ConvOptions::default().groups(3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("groups"), "{e}");
    let e = ops::max_pool2d(&x, (2, 2), (2, 2), (2, 2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most half"), "{e}");
    let e = ops::max_pool2d(&x, (2, 2), (0, 0), (0, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("greater than zero"), "{e}");
    let e = ops::conv2d(
        &Tensor::zeros(&[4, 5, 5], DType::F32, &d).unwrap(),
        &w,
        None,
        &ConvOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("4-D input"), "{e}");
}

/// The GPU's convolution kernels (4 × 4 blocks, and 8 × 8 with transposed weights where the
/// output channels per group are a multiple of 8) against the CPU path, on shapes that cut
/// blocks short: odd widths, strides, dilation, "same", groups, bias, with their gradients.
#[test]
fn gpu_convolutions_match_the_cpu_on_ragged_shapes() {
    let g = gpu();
    let mut gen = ops::Generator::new(9);
    let cases: [(&[usize], &[usize], ConvOptions, bool); 9] = [
        // Rows a multiple of 4 wide at stride 1: conv2d_t8 reads them as aligned vec4s, with
        // the window shifted by the padding (2, 0, 1) and blocks cut short (ow 18).
        (
            &[2, 8, 6, 12],
            &[8, 8, 5, 5],
            ConvOptions::default().padding(2),
            true,
        ),
        (
            &[2, 8, 5, 20],
            &[16, 8, 3, 3],
            ConvOptions::default(),
            false,
        ),
        (
            &[1, 8, 4, 4],
            &[8, 8, 3, 3],
            ConvOptions::default().same(),
            true,
        ),
        (
            &[3, 16, 9, 13],
            &[16, 16, 3, 3],
            ConvOptions::default().padding(1),
            true,
        ),
        (
            &[2, 8, 11, 7],
            &[24, 4, 3, 3],
            ConvOptions::default().stride(2).padding(1).groups(2),
            true,
        ),
        (
            &[2, 6, 10, 10],
            &[8, 6, 3, 3],
            ConvOptions::default().same().dilation(2),
            false,
        ),
        (
            &[2, 5, 7, 9],
            &[8, 5, 3, 2],
            ConvOptions {
                stride: (2, 1),
                padding: Padding::Explicit(1, 0),
                dilation: (1, 1),
                groups: 1,
            },
            true,
        ),
        (
            &[2, 16, 8, 8],
            &[32, 16, 1, 1],
            ConvOptions::default().stride(2),
            true,
        ),
        (
            &[2, 6, 9, 5],
            &[6, 2, 3, 3],
            ConvOptions::default().padding(1).groups(3),
            false,
        ),
    ];
    for (xs, ws, o, bias) in cases {
        let x = ops::normal(xs, &mut gen, &Device::Cpu).unwrap();
        let w = ops::normal(ws, &mut gen, &Device::Cpu).unwrap();
        let b = ops::normal(&[ws[0]], &mut gen, &Device::Cpu).unwrap();
        let run = |d: &Device| {
            let (px, pw, pb) = (
                Parameter::new(x.to(d).unwrap()),
                Parameter::new(w.to(d).unwrap()),
                Parameter::new(b.to(d).unwrap()),
            );
            let y = ops::conv2d(px.tensor(), pw.tensor(), bias.then(|| pb.tensor()), &o).unwrap();
            let gy = Tensor::full(y.shape(), 0.5f32, d).unwrap();
            let gy = ops::mul(&gy, &ops::tanh(&y).unwrap()).unwrap().detach();
            y.backward_with(&gy).unwrap();
            let mut out = vec![
                f32s(&y),
                f32s(&px.grad().unwrap()),
                f32s(&pw.grad().unwrap()),
            ];
            if bias {
                out.push(f32s(&pb.grad().unwrap()));
            }
            out
        };
        let (c, gp) = (run(&Device::Cpu), run(&g));
        for (i, (a, b)) in c.iter().zip(&gp).enumerate() {
            let e = rel_err(b, a, &format!("{xs:?} {ws:?} part {i}"));
            assert!(
                e <= 1e-5,
                "{xs:?} * {ws:?} {o:?}: part {i} off by {e:e} × max"
            );
        }
    }
}

/// The fused eval ops give the bits of the ops they fuse, on both devices, and fall back to
/// them (with gradients) where a gradient is recorded.
#[test]
fn fused_batch_norm_relu_and_add_relu_are_the_unfused_bits() {
    let mut gen = ops::Generator::new(4);
    let x = ops::normal(&[3, 5, 6, 7], &mut gen, &Device::Cpu).unwrap();
    let r = ops::normal(&[3, 5, 6, 7], &mut gen, &Device::Cpu).unwrap();
    let m = ops::normal(&[5], &mut gen, &Device::Cpu).unwrap();
    let v = ops::exp(&ops::normal(&[5], &mut gen, &Device::Cpu).unwrap()).unwrap();
    let w = ops::normal(&[5], &mut gen, &Device::Cpu).unwrap();
    let b = ops::normal(&[5], &mut gen, &Device::Cpu).unwrap();
    let bits = |t: &Tensor| f32s(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for d in [Device::Cpu, gpu()] {
        let [x, r, m, v, w, b] = [&x, &r, &m, &v, &w, &b].map(|t| t.to(&d).unwrap());
        let fused = ops::batch_norm_relu(&x, &m, &v, Some(&w), Some(&b), 1e-5).unwrap();
        let plain =
            ops::relu(&ops::batch_norm(&x, &m, &v, Some(&w), Some(&b), 1e-5).unwrap()).unwrap();
        assert_eq!(bits(&fused), bits(&plain), "batch_norm_relu on {d}");
        let fused = ops::add_relu(&x, &r).unwrap();
        let plain = ops::relu(&ops::broadcast_add(&x, &r).unwrap()).unwrap();
        assert_eq!(bits(&fused), bits(&plain), "add_relu on {d}");
        // Recording: the gradient flows as through the two ops.
        let p = Parameter::new(x.clone());
        let y = ops::add_relu(p.tensor(), &r).unwrap();
        y.backward_with(&Tensor::full(y.shape(), 1f32, &d).unwrap())
            .unwrap();
        let want: Vec<f32> = f32s(&plain)
            .iter()
            .map(|&v| (v > 0.0) as u8 as f32)
            .collect();
        assert_eq!(f32s(&p.grad().unwrap()), want, "add_relu gradient on {d}");
    }
}

/// `nn.init` gives convolutions PyTorch's default: kaiming-uniform with a = √5 (bound
/// 1/√fan_in, fan_in = in_channels / groups · kernel elements) and the bias in ±1/√fan_in;
/// BatchNorm2d weight 1, bias 0.
#[test]
fn conv_layers_get_pytorchs_default_init() {
    use wgnn::nn::init;
    let d = Device::Cpu;
    let mut net = wgnn::Sequential::new()
        .push(Conv2d::new(8, 16, (3, 3)).unwrap().groups(2).unwrap())
        .push(BatchNorm2d::new(16).and_then(|m| m.to(&d)).unwrap());
    init::with_generator(&mut ops::Generator::new(1), || {
        init::reset_parameters(&mut net)
    })
    .unwrap();
    let bound = 1.0 / ((8 / 2 * 9) as f32).sqrt();
    for key in ["0.weight", "0.bias"] {
        let v = f32s(net.get_parameter(key).unwrap().tensor());
        let top = max_abs(&v);
        assert!(top <= bound, "{key}: {top} beyond {bound}");
        assert!(top > 0.8 * bound, "{key}: {top} does not spread to {bound}");
    }
    assert!(f32s(net.get_parameter("1.weight").unwrap().tensor())
        .iter()
        .all(|&v| v == 1.0));
}
