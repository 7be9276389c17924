//! float16 and bfloat16: storage on every adapter (packed words, no SHADER_F16), conversions
//! bit-identical to the `half` crate on the GPU, every float op on half tensors computing in
//! float32 and rounding once, views of half tensors, gradients through casts, `model.half()`.

mod common;

use half::{bf16, f16};
use wgnn::{ops, DType, Device, Tensor};

fn bits16(t: &Tensor) -> Vec<u16> {
    bytemuck::pod_collect_to_vec(&t.to_bytes().unwrap())
}

fn bits32(t: &Tensor) -> Vec<u32> {
    bytemuck::pod_collect_to_vec(&t.to_bytes().unwrap())
}

/// float32 patterns that reach every branch of the conversions: zeros, subnormals of both
/// formats, the rounding ties and their neighbours, overflow, infinities, NaNs with payloads,
/// then a spread of pseudo-random words.
fn f32_patterns() -> Vec<u32> {
    let mut v: Vec<u32> = vec![
        0,
        0x8000_0000,
        1,
        0x0000_0400,
        0x007f_ffff,
        0x0080_0000,
        0x3380_0000,
        0x3380_0001,
        0x337f_ffff,
        0x33c0_0000,
        0x3400_0000,
        0x3800_0000,
        0x387f_e000,
        0x387f_f000,
        0x3880_1000,
        0x3880_1001,
        0x3880_3000,
        0x3f80_1000,
        0x3f80_3000,
        0x3f80_0001,
        0x477f_e000,
        0x477f_efff,
        0x477f_f000,
        0x4780_0000,
        0x7f7f_ffff,
        0x7f80_0000,
        0xff80_0000,
        0x7f80_0001,
        0x7fc0_0000,
        0xffc1_2345,
        0x7fbf_ffff,
        0x3f80_8000,
        0x3f81_8000,
        0x3f80_8001,
        0x3f7f_8000,
        0x7f7f_8000,
    ];
    let mut s = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.push(s as u32);
    }
    // Every f16 value's neighbourhood in f32 (ties included).
    for h in (0..=0xffffu32).step_by(7) {
        let f = f16::from_bits(h as u16).to_f32().to_bits();
        v.extend([f, f.wrapping_add(0x1000), f.wrapping_add(0xfff), f | 0x1fff]);
    }
    v
}

fn check_casts(d: &Device) {
    let pats = f32_patterns();
    let n = pats.len();
    let x = Tensor::from_bytes(bytemuck::cast_slice(&pats), &[n], DType::F32)
        .unwrap()
        .to(d)
        .unwrap();
    for to in [DType::F16, DType::BF16] {
        let y = bits16(&x.to_dtype(to).unwrap());
        for (i, (&p, &b)) in pats.iter().zip(&y).enumerate() {
            let f = f32::from_bits(p);
            let want = match to {
                DType::F16 => f16::from_f32(f).to_bits(),
                _ => bf16::from_f32(f).to_bits(),
            };
            assert_eq!(b, want, "{} of {p:#010x} (element {i}) on {d}", to.name());
        }
    }
    // Every 16-bit pattern back to float32 (odd count: the last word is half used).
    let all: Vec<u16> = (0..=0xffffu16).chain([0x3c00]).collect();
    for from in [DType::F16, DType::BF16] {
        let h = Tensor::from_bytes(bytemuck::cast_slice(&all), &[all.len()], from)
            .unwrap()
            .to(d)
            .unwrap();
        let y = bits32(&h.to_dtype(DType::F32).unwrap());
        for (&p, &b) in all.iter().zip(&y) {
            let want = match from {
                DType::F16 => f16::from_bits(p).to_f32().to_bits(),
                _ => bf16::from_bits(p).to_f32().to_bits(),
            };
            assert_eq!(b, want, "{} {p:#06x} to float32 on {d}", from.name());
        }
        // Between the two half formats (through float32, one rounding).
        let other = if from == DType::F16 {
            DType::BF16
        } else {
            DType::F16
        };
        let z = bits16(&h.to_dtype(other).unwrap());
        for (&p, &b) in all.iter().zip(&z) {
            let want = match from {
                DType::F16 => bf16::from_f32(f16::from_bits(p).to_f32()).to_bits(),
                _ => f16::from_f32(bf16::from_bits(p).to_f32()).to_bits(),
            };
            assert_eq!(
                b,
                want,
                "{} {p:#06x} to {} on {d}",
                from.name(),
                other.name()
            );
        }
    }
}

#[test]
fn casts_match_the_half_crate_bit_for_bit_on_cpu_and_gpu() {
    check_casts(&Device::Cpu);
    check_casts(&common::gpu());
}

type View = Box<dyn Fn(&Tensor) -> Tensor>;

/// Views of half tensors: permuted, narrowed, expanded and offset gathers of 2-byte elements
/// give the CPU's bytes (odd sizes, so words are shared between elements).
#[test]
fn views_of_half_tensors_are_gathered_exactly() {
    let g = common::gpu();
    for dt in [DType::F16, DType::BF16] {
        let base = Tensor::randn(&[3, 5, 7], &mut ops::Generator::new(11), &Device::Cpu)
            .unwrap()
            .to_dtype(dt)
            .unwrap();
        let gb = base.to(&g).unwrap();
        let views: Vec<View> = vec![
            Box::new(|t| ops::permute(t, &[2, 0, 1]).unwrap()),
            Box::new(|t| ops::narrow(t, 2, 1, 5).unwrap()),
            Box::new(|t| ops::expand(&ops::narrow(t, 1, 3, 1).unwrap(), &[3, 4, 7]).unwrap()),
            Box::new(|t| ops::t(&ops::select(t, 0, 1).unwrap()).unwrap()),
            Box::new(|t| ops::narrow(&ops::transpose(t, 0, 2).unwrap(), 0, 2, 3).unwrap()),
        ];
        for (i, v) in views.iter().enumerate() {
            let c = v(&base).contiguous().unwrap();
            let gc = v(&gb).contiguous().unwrap();
            assert_eq!(bits16(&c), bits16(&gc), "{} view {i}", dt.name());
            assert_eq!(c.shape(), gc.shape());
        }
        let cat_c = ops::cat(&[&base, &ops::narrow(&base, 2, 0, 3).unwrap()], 2).unwrap();
        let cat_g = ops::cat(&[&gb, &ops::narrow(&gb, 2, 0, 3).unwrap()], 2).unwrap();
        assert_eq!(cat_c.dtype(), dt);
        assert_eq!(bits16(&cat_c), bits16(&cat_g), "{} cat", dt.name());
    }
}

/// The spacing of `dt` at magnitude `m` (its smallest subnormal spacing below the normals).
fn ulp(dt: DType, m: f64) -> f64 {
    let (mant, min_exp) = match dt {
        DType::F16 => (10, -14),
        _ => (7, -126),
    };
    let e = if m > 0.0 {
        m.log2().floor() as i32
    } else {
        min_exp
    };
    2f64.powi(e.max(min_exp) - mant)
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap()
}

/// The largest difference between `got` and PyTorch's `want`, in units of the dtype's spacing
/// at each reference value, or at `floor` (a fraction of the tensor's largest magnitude) where
/// the reference is smaller: a sum that cancels to near zero is judged at the scale of what it
/// summed, not at its own tiny spacing.
fn ulps_off(got: &Tensor, want: &Tensor, what: &str) -> f64 {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (f64s(got), f64s(want));
    let top = w.iter().fold(0f64, |m, v| m.max(v.abs()));
    let floor = top / 64.0;
    let mut worst = 0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        if b.is_infinite() || b.is_nan() {
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "{what}[{i}]: {a} for {b}"
            );
            continue;
        }
        worst = worst.max((a - b).abs() / ulp(got.dtype(), b.abs().max(floor)));
    }
    worst
}

type Case = fn(&[Tensor]) -> Vec<Tensor>;

/// Every float op against PyTorch 2.15's own float16 and bfloat16 results, forward and
/// backward (`tests/fixtures/make_half.py`), on the CPU and the GPU. wgnn computes in float32
/// and rounds each op's output once; PyTorch's CPU kernels do the same for the forwards, so
/// the forwards are within 1 unit in the last place (ulp) but for the reductions, whose
/// float32 sums are added in another order, and cross entropy, whose PyTorch composite
/// rounds its log-softmax to half first. Backwards are compositions of ops on both sides, each
/// rounding its own output, so their bounds are wider and stated per op. The widest (measured
/// on lavapipe, llvmpipe and the CPU alike): tanh's (9 ulp: wgnn's backward is
/// `g · (1 - y·y)` in three rounded ops, which cancel near |y| = 1, where PyTorch fuses
/// `tanh_backward` in float), layer_norm's (16: PyTorch's fused backward against wgnn's kernel
/// plus the weight and bias sums), the batched matmul's broadcast weight (11.5: PyTorch sums
/// the per-batch products in half, wgnn in float32) and embedding's (8: PyTorch adds the rows
/// of a repeated index in half, wgnn in float32). The vision ops' backwards are wider for the
/// same reason, and there PyTorch is the one that is off: its float16 CPU kernels accumulate
/// the input gradients of conv1d/conv2d, avg / adaptive-avg / max pooling in float16, 18.5,
/// 35, 8 and 6 ulp from the float64 value of the same inputs, where wgnn's (float32 sums,
/// rounded once) stay within 0.5 ulp of it (measured with PyTorch in float64 on the fixture's
/// inputs); leaky_relu's gradient is 1 ulp off because wgnn rounds its derivative (0.2) to
/// the dtype before the product.
#[test]
fn every_float_op_matches_pytorch_in_half_precision() {
    use wgnn::Parameter;
    let sd = wgnn::StateDict::load(common::fixture("half_ops.safetensors")).unwrap();
    // (op, forward bound, backward bound) in ulps, and the op.
    let cases: Vec<(&str, f64, f64, Case)> = vec![
        ("add", 1.0, 1.0, |t| {
            vec![ops::broadcast_add(&t[0], &t[1]).unwrap()]
        }),
        ("mul", 1.0, 2.0, |t| vec![ops::mul(&t[0], &t[1]).unwrap()]),
        ("sub", 1.0, 1.0, |t| vec![ops::sub(&t[0], &t[1]).unwrap()]),
        ("div", 1.0, 4.0, |t| vec![ops::div(&t[0], &t[1]).unwrap()]),
        ("neg", 0.0, 0.0, |t| vec![ops::neg(&t[0]).unwrap()]),
        ("exp", 1.0, 2.0, |t| vec![ops::exp(&t[0]).unwrap()]),
        ("log", 1.0, 2.0, |t| vec![ops::log(&t[0]).unwrap()]),
        ("sqrt", 1.0, 2.0, |t| vec![ops::sqrt(&t[0]).unwrap()]),
        ("rsqrt", 1.0, 4.0, |t| vec![ops::rsqrt(&t[0]).unwrap()]),
        ("pow", 1.0, 4.0, |t| vec![ops::pow(&t[0], 2.5).unwrap()]),
        ("tanh", 1.0, 12.0, |t| vec![ops::tanh(&t[0]).unwrap()]),
        ("sigmoid", 1.0, 4.0, |t| vec![ops::sigmoid(&t[0]).unwrap()]),
        ("gelu", 1.0, 4.0, |t| vec![ops::gelu(&t[0], false).unwrap()]),
        ("gelu_tanh", 1.0, 4.0, |t| {
            vec![ops::gelu(&t[0], true).unwrap()]
        }),
        ("silu", 1.0, 4.0, |t| vec![ops::silu(&t[0]).unwrap()]),
        ("relu", 0.0, 0.0, |t| vec![ops::relu(&t[0]).unwrap()]),
        ("clamp", 0.0, 0.0, |t| {
            vec![ops::clamp(&t[0], -0.5, 0.7).unwrap()]
        }),
        ("sum", 1.0, 0.0, |t| {
            vec![ops::sum(&t[0], &[1], false).unwrap()]
        }),
        ("mean_dim", 1.0, 1.0, |t| {
            vec![ops::mean_dim(&t[0], &[0], true).unwrap()]
        }),
        ("amax", 0.0, 0.0, |t| {
            vec![ops::amax(&t[0], &[1], false).unwrap()]
        }),
        ("max", 0.0, 0.0, |t| {
            let (v, i) = ops::max(&t[0], 1, false).unwrap();
            vec![v, i]
        }),
        ("var", 2.0, 4.0, |t| {
            vec![ops::var(&t[0], &[1], true, false).unwrap()]
        }),
        ("mean", 1.0, 1.0, |t| vec![ops::mean(&t[0]).unwrap()]),
        ("softmax", 1.0, 4.0, |t| vec![ops::softmax(&t[0]).unwrap()]),
        ("layer_norm", 2.0, 24.0, |t| {
            vec![ops::layer_norm(&t[0], &[37], Some(&t[1]), Some(&t[2]), 1e-5).unwrap()]
        }),
        ("matmul", 1.0, 16.0, |t| {
            vec![ops::matmul(&t[0], &t[1]).unwrap()]
        }),
        ("linear", 1.0, 1.0, |t| {
            vec![ops::linear(&t[0], &t[1], Some(&t[2])).unwrap()]
        }),
        ("cross_entropy", 2.0, 4.0, |t| {
            vec![ops::cross_entropy(&t[0], &t[1]).unwrap()]
        }),
        ("embedding", 0.0, 12.0, |t| {
            vec![ops::embedding(&t[0], &t[1]).unwrap()]
        }),
        ("masked_fill", 0.0, 0.0, |t| {
            vec![ops::masked_fill(&t[0], &t[1], -1e4).unwrap()]
        }),
        ("cat", 0.0, 0.0, |t| {
            vec![ops::cat(&[&t[0], &t[1]], 1).unwrap()]
        }),
        ("stack", 0.0, 0.0, |t| {
            vec![ops::stack(&[&t[0], &t[1]], 0).unwrap()]
        }),
        ("where", 0.0, 1.0, |t| {
            vec![ops::where_(&t[0], &t[1], &t[2]).unwrap()]
        }),
        ("batch_norm", 2.0, 8.0, |t| {
            vec![ops::batch_norm(&t[0], &t[1], &t[2], Some(&t[3]), Some(&t[4]), 1e-5).unwrap()]
        }),
        ("conv2d", 1.0, 24.0, |t| {
            let o = ops::ConvOptions::default().stride(2).padding(1).groups(2);
            vec![ops::conv2d(&t[0], &t[1], Some(&t[2]), &o).unwrap()]
        }),
        ("conv2d_same", 1.0, 24.0, |t| {
            let o = ops::ConvOptions::default().same().dilation(2);
            vec![ops::conv2d(&t[0], &t[1], None, &o).unwrap()]
        }),
        ("conv1d", 1.0, 24.0, |t| {
            let o = ops::ConvOptions::default().stride(2).padding(1);
            vec![ops::conv1d(&t[0], &t[1], Some(&t[2]), &o).unwrap()]
        }),
        ("max_pool2d", 0.0, 8.0, |t| {
            vec![ops::max_pool2d(&t[0], (3, 3), (2, 2), (1, 1)).unwrap()]
        }),
        ("avg_pool2d", 1.0, 40.0, |t| {
            vec![ops::avg_pool2d(&t[0], (3, 3), (1, 1), (1, 1), false).unwrap()]
        }),
        ("adaptive_avg_pool2d", 1.0, 10.0, |t| {
            vec![ops::adaptive_avg_pool2d(&t[0], (3, 3)).unwrap()]
        }),
        ("batch_norm_2d", 2.0, 8.0, |t| {
            vec![ops::batch_norm(&t[0], &t[1], &t[2], Some(&t[3]), Some(&t[4]), 1e-5).unwrap()]
        }),
        ("elu", 1.0, 2.0, |t| vec![ops::elu(&t[0], 1.0).unwrap()]),
        ("leaky_relu", 0.0, 1.0, |t| {
            vec![ops::leaky_relu(&t[0], 0.2).unwrap()]
        }),
        ("softplus", 1.0, 2.0, |t| {
            vec![ops::softplus(&t[0], 1.0, 20.0).unwrap()]
        }),
        ("hardtanh", 0.0, 0.0, |t| {
            vec![ops::hardtanh(&t[0], -1.0, 1.0).unwrap()]
        }),
    ];
    let gpu = common::gpu();
    let mut report = String::new();
    let mut failed = Vec::new();
    for device in [Device::Cpu, gpu] {
        for (name, fwd_bound, bwd_bound, f) in &cases {
            for dt in ["float16", "bfloat16"] {
                let key = format!("{name}.{dt}");
                let get = |k: &str| sd.get(&format!("{key}.{k}")).cloned();
                let mut params = Vec::new();
                let mut inputs = Vec::new();
                for i in 0.. {
                    let Some(t) = get(&format!("in{i}")) else {
                        break;
                    };
                    let t = t.to(&device).unwrap();
                    if get(&format!("grad{i}")).is_some() {
                        let p = Parameter::new(t);
                        inputs.push(p.tensor().clone());
                        params.push((i, p));
                    } else {
                        inputs.push(t);
                    }
                }
                let ys = f(&inputs);
                let mut worst_f = 0f64;
                for (k, y) in ys.iter().enumerate() {
                    let want = get(&if k == 0 {
                        "out".into()
                    } else {
                        format!("out{k}")
                    })
                    .unwrap_or_else(|| panic!("{key}: output {k} missing"));
                    if !y.dtype().is_float() {
                        assert_eq!(y.to_bytes().unwrap(), want.to_bytes().unwrap(), "{key} {k}");
                        continue;
                    }
                    worst_f = worst_f.max(ulps_off(y, &want, &key));
                }
                ys[0]
                    .backward_with(&get("gy").unwrap().to(&device).unwrap())
                    .unwrap();
                let mut worst_b = 0f64;
                for (i, p) in &params {
                    let want = get(&format!("grad{i}")).unwrap();
                    let g = p
                        .grad()
                        .unwrap_or_else(|| panic!("{key}: no gradient for {i}"));
                    worst_b = worst_b.max(ulps_off(&g, &want, &format!("{key} grad{i}")));
                }
                report.push_str(&format!(
                    "{device:>8.8} {key:<24} forward {worst_f:>5.2} ulp (bound {fwd_bound}), \
                     backward {worst_b:>5.2} ulp (bound {bwd_bound})\n"
                ));
                if worst_f > *fwd_bound || worst_b > *bwd_bound {
                    failed.push(format!("{device} {key}: {worst_f} / {worst_b}"));
                }
            }
        }
    }
    eprintln!("{report}");
    assert!(failed.is_empty(), "beyond their bounds: {failed:#?}");
}

/// The tutorial's reverse model, trained in float32 by PyTorch, converted with `model.half()`
/// (and `bfloat16`): on the GPU and the CPU it still reverses all 256 test sequences, and its
/// logits stay within a stated fraction of the float32 model's largest logit.
#[test]
fn the_reverse_model_in_half_precision_reverses_every_test_sequence() {
    use wgnn::{ModuleExt, StateDict};
    use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};
    let io = StateDict::load(common::fixture("reverse_io.safetensors")).unwrap();
    let sd = StateDict::load(common::fixture("reverse_trained.safetensors")).unwrap();
    let hp = Hparams::reverse_task();
    let labels = io.get("test.labels").unwrap().to_vec::<i64>().unwrap();
    for d in [common::gpu(), Device::Cpu] {
        let mut m = TransformerPredictor::new(&hp).unwrap();
        m.load_state_dict(&sd, true).unwrap();
        m.to_device(&d).unwrap();
        m.eval();
        let x = ops::one_hot(&io.get("test.x").unwrap().to(&d).unwrap(), 10).unwrap();
        let full = f64s(&m.forward(&x, None, true).unwrap());
        let top = full.iter().fold(0f64, |a, v| a.max(v.abs()));
        for (dt, bound) in [(DType::F16, 1e-2), (DType::BF16, 8e-2)] {
            let mut h = TransformerPredictor::new(&hp).unwrap();
            h.load_state_dict(&sd, true).unwrap();
            h.to_device(&d).unwrap();
            h.to_dtype(dt).unwrap();
            h.eval();
            for (name, p) in h.named_parameters() {
                assert_eq!(p.tensor().dtype(), dt, "{name}");
            }
            let logits = h.forward(&x.to_dtype(dt).unwrap(), None, true).unwrap();
            assert_eq!(logits.dtype(), dt);
            let preds = ops::argmax(&logits).unwrap().to_vec::<i64>().unwrap();
            let correct = preds.iter().zip(&labels).filter(|(a, b)| a == b).count();
            let err = f64s(&logits)
                .iter()
                .zip(&full)
                .fold(0f64, |a, (x, y)| a.max((x - y).abs()))
                / top;
            eprintln!(
                "{d} {}: {correct}/{} tokens, logits within {err:.2e} of float32's largest ({top:.2})",
                dt.name(),
                labels.len()
            );
            assert_eq!(correct, labels.len(), "{d} {}", dt.name());
            assert!(err <= bound, "{d} {}: {err:e} > {bound:e}", dt.name());
        }
    }
}

/// `model.to_dtype(F16)` is PyTorch's `model.half()`: float parameters, float buffers
/// (persistent or not) and gradients become float16; BatchNorm's int64 counter does not.
/// Training steps then run in float16, on the GPU and the CPU alike.
#[test]
fn module_to_dtype_converts_floats_and_keeps_integer_buffers() {
    use wgnn::nn::{BatchNorm1d, Linear};
    use wgnn::{Forward, ModuleExt};
    for d in [Device::Cpu, common::gpu()] {
        let mut bn = BatchNorm1d::new(3).and_then(|m| m.to(&d)).unwrap();
        let x = Tensor::randn(&[4, 3], &mut ops::Generator::new(3), &d).unwrap();
        bn.train();
        let y = bn.forward(&x).unwrap();
        ops::mean(&y).unwrap().backward().unwrap();
        bn.to_dtype(DType::F16).unwrap();
        for (name, b) in bn.named_buffers() {
            let want = if name == "num_batches_tracked" {
                DType::I64
            } else {
                DType::F16
            };
            assert_eq!(b.tensor().dtype(), want, "{name}");
        }
        for (name, p) in bn.named_parameters() {
            assert_eq!(p.tensor().dtype(), DType::F16, "{name}");
            assert_eq!(p.grad().unwrap().dtype(), DType::F16, "{name}'s gradient");
        }
        // A step of training in float16: the statistics update, the counter counts.
        let y = bn.forward(&x.to_dtype(DType::F16).unwrap()).unwrap();
        assert_eq!(y.dtype(), DType::F16);
        assert_eq!(
            bn.get_buffer("num_batches_tracked")
                .unwrap()
                .tensor()
                .to_vec::<i64>()
                .unwrap(),
            [2]
        );
        assert_eq!(
            bn.get_buffer("running_mean").unwrap().tensor().dtype(),
            DType::F16
        );
        // Integer targets are refused with the reason.
        let e = bn.to_dtype(DType::I32).unwrap_err().to_string();
        assert!(e.contains("floating-point"), "{e}");
        // A linear layer's gradients come back in float16 through a float32 loss.
        let mut lin = Linear::new(3, 2).and_then(|m| m.to(&d)).unwrap();
        lin.to_dtype(DType::BF16).unwrap();
        let h = lin.forward(&x.to_dtype(DType::BF16).unwrap()).unwrap();
        let loss = ops::mean(&h.to_dtype(DType::F32).unwrap()).unwrap();
        assert_eq!(loss.dtype(), DType::F32);
        loss.backward().unwrap();
        for (name, p) in lin.named_parameters() {
            let g = p.grad().unwrap();
            assert_eq!(g.dtype(), DType::BF16, "{name}");
        }
        let gb = lin
            .get_parameter("bias")
            .unwrap()
            .grad()
            .unwrap()
            .to_vec::<half::bf16>()
            .unwrap();
        assert!(gb.iter().all(|v| v.to_f32() == 0.5), "{gb:?}");
    }
}
