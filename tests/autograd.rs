//! Every op's backward against central finite differences (CPU), and the GPU's gradients against
//! the CPU's. The loss is `Σ out · R` for a fixed random `R` (computed with `linear` + `mean`),
//! so every output element weighs differently. Finite differences in float32 with h = 1e-2
//! agree within 4e-5 × max|grad| here (the bound is 3e-4 × max|grad|, for curvature and the
//! loss's rounding divided by 2h): they catch a wrong formula, not a last bit; the last bits are checked against PyTorch's own gradients in
//! `tests/training.rs` (step 1 of the tutorial's training: every parameter's gradient within
//! 1.6e-6 × max|grad|).

mod common;

use common::{gpu, randn};
use wgnn::autograd::no_grad;
use wgnn::module::Forward;
use wgnn::nn::BatchNorm1d;
use wgnn::{ops, DType, Device, ModuleExt, Parameter, Tensor};

type F = Box<dyn Fn(&[Tensor]) -> wgnn::Result<Tensor>>;

struct Case {
    name: &'static str,
    inputs: Vec<(Vec<usize>, Vec<f32>)>,
    f: F,
}

fn t(shape: &[usize], seed: u64) -> (Vec<usize>, Vec<f32>) {
    let n = shape.iter().product();
    (shape.to_vec(), randn(n, seed))
}

/// Values kept at least 0.1 away from 0 (for relu's kink).
fn away(shape: &[usize], seed: u64) -> (Vec<usize>, Vec<f32>) {
    let (s, v) = t(shape, seed);
    (s, v.into_iter().map(|x| x + 0.1f32.copysign(x)).collect())
}

/// `Σ out · R` as a 0-d tensor.
fn weigh(out: &Tensor) -> wgnn::Result<Tensor> {
    let n = out.numel();
    let r = Tensor::from_slice(&randn(n, 999), &[1, n])?.to(&out.device())?;
    let dot = ops::linear(&out.reshape([1, n])?, &r, None)?;
    ops::mean(&dot)
}

fn loss_at(case: &Case, values: &[Vec<f32>]) -> f64 {
    no_grad(|| {
        let ts: Vec<Tensor> = case
            .inputs
            .iter()
            .zip(values)
            .map(|((s, _), v)| Tensor::from_slice(v, s).unwrap())
            .collect();
        weigh(&(case.f)(&ts).unwrap())
            .unwrap()
            .item::<f32>()
            .unwrap() as f64
    })
}

/// The gradients of every input on `d`.
fn grads(case: &Case, d: &Device) -> Vec<Vec<f32>> {
    let params: Vec<Parameter> = case
        .inputs
        .iter()
        .map(|(s, v)| Parameter::new(Tensor::from_slice(v, s).unwrap().to(d).unwrap()))
        .collect();
    let ts: Vec<Tensor> = params.iter().map(|p| p.tensor().clone()).collect();
    let out = (case.f)(&ts).unwrap();
    assert!(
        out.requires_grad(),
        "{}: the output does not require grad",
        case.name
    );
    weigh(&out).unwrap().backward().unwrap();
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let g = p
                .grad()
                .unwrap_or_else(|| panic!("{}: input {i} got no gradient", case.name));
            assert_eq!(g.shape(), p.tensor().shape());
            assert!(g.is_on(d));
            g.to_vec::<f32>().unwrap()
        })
        .collect()
}

fn check_finite_differences(case: &Case) {
    let g = grads(case, &Device::Cpu);
    let base: Vec<Vec<f32>> = case.inputs.iter().map(|(_, v)| v.clone()).collect();
    let h = 1e-2f32;
    let mut worst = 0f64;
    for (i, gi) in g.iter().enumerate() {
        let max = gi.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        // Up to 16 elements spread over the input.
        let n = gi.len();
        let picks: Vec<usize> = (0..16.min(n)).map(|k| k * n / 16.min(n)).collect();
        for &e in &picks {
            let mut plus = base.clone();
            plus[i][e] += h;
            let mut minus = base.clone();
            minus[i][e] -= h;
            let fd = (loss_at(case, &plus) - loss_at(case, &minus)) / (2.0 * h as f64);
            let err = (fd - gi[e] as f64).abs();
            assert!(
                err <= 3e-4 * max + 1e-5,
                "{}: input {i} element {e}: backward {} vs finite difference {fd}",
                case.name,
                gi[e]
            );
            worst = worst.max(err / max.max(1e-3));
        }
    }
    eprintln!(
        "{}: finite differences within {worst:.1e} × max|grad|",
        case.name
    );
}

fn cases() -> Vec<Case> {
    let mask: Vec<f32> = (0..4 * 5).map(|i| (i % 3 != 0) as u8 as f32).collect();
    let mask = Tensor::from_slice(&mask, &[1, 4, 5]).unwrap();
    let idx = Tensor::from_slice(&[3i64, 0, 3, 1, 2, 2], &[2, 3]).unwrap();
    let targets = Tensor::from_slice(&[1i64, 0, 4, 2, 2, 3], &[6]).unwrap();
    vec![
        Case {
            name: "linear",
            inputs: vec![t(&[2, 3, 5], 1), t(&[4, 5], 2), t(&[4], 3)],
            f: Box::new(|x| ops::linear(&x[0], &x[1], Some(&x[2]))),
        },
        Case {
            name: "matmul (broadcast batch)",
            inputs: vec![t(&[2, 1, 3, 4], 4), t(&[3, 4, 5], 5)],
            f: Box::new(|x| ops::matmul(&x[0], &x[1])),
        },
        Case {
            name: "matmul, 1-D a (a row) and batched b",
            inputs: vec![t(&[4], 41), t(&[2, 4, 3], 42)],
            f: Box::new(|x| ops::matmul(&x[0], &x[1])),
        },
        Case {
            name: "matmul, batched a and 1-D b (a column)",
            inputs: vec![t(&[2, 3, 4], 43), t(&[4], 44)],
            f: Box::new(|x| ops::matmul(&x[0], &x[1])),
        },
        Case {
            name: "matmul, two 1-D operands (a dot product)",
            inputs: vec![t(&[5], 45), t(&[5], 46)],
            f: Box::new(|x| ops::matmul(&x[0], &x[1])),
        },
        Case {
            name: "matmul_permuted (heads merged: [b, h, s, d] stored as [b, s, h, d])",
            inputs: vec![t(&[2, 3, 4, 4], 47), t(&[2, 3, 4, 2], 48)],
            f: Box::new(|x| ops::matmul_permuted(&x[0], &x[1], &[0, 2, 1, 3])),
        },
        Case {
            name: "exp, log, sqrt, rsqrt chained",
            inputs: vec![away(&[2, 3], 61)],
            f: Box::new(|x| {
                let p = ops::exp(&ops::scale(&x[0], 0.5)?)?; // positive for log / sqrt
                let y = ops::broadcast_add(&p, &ops::log(&ops::pow(&p, 2.0)?)?)?;
                ops::broadcast_add(&ops::sqrt(&p)?, &ops::broadcast_add(&y, &ops::rsqrt(&p)?)?)
            }),
        },
        Case {
            name: "pow, tanh, sigmoid, neg",
            inputs: vec![t(&[2, 3], 62)],
            f: Box::new(|x| {
                let y = ops::broadcast_add(&ops::pow(&x[0], 3.0)?, &ops::tanh(&x[0])?)?;
                ops::broadcast_add(&ops::sigmoid(&y)?, &ops::neg(&x[0])?)
            }),
        },
        Case {
            name: "gelu (both forms) and silu",
            inputs: vec![t(&[2, 3], 63)],
            f: Box::new(|x| {
                let y = ops::broadcast_add(&ops::gelu(&x[0], false)?, &ops::gelu(&x[0], true)?)?;
                ops::broadcast_add(&y, &ops::silu(&x[0])?)
            }),
        },
        Case {
            name: "clamp (away from its bounds)",
            inputs: vec![away(&[3, 4], 64)],
            f: Box::new(|x| ops::clamp(&x[0], -0.05, 0.05)),
        },
        Case {
            name: "mul, sub, div with broadcasting",
            inputs: vec![t(&[2, 3, 4], 65), t(&[4], 66)],
            f: Box::new(|x| {
                let b = ops::exp(&x[1])?; // well away from 0 for the division
                let y = ops::mul(&x[0], &b)?;
                ops::broadcast_add(&ops::sub(&y, &b)?, &ops::div(&x[0], &b)?)
            }),
        },
        Case {
            name: "sum over dims (keepdim), mean_dim, var",
            inputs: vec![t(&[2, 3, 4], 67)],
            f: Box::new(|x| {
                let a = ops::sum(&x[0], &[0, 2], true)?; // [1, 3, 1]
                let b = ops::mean_dim(&x[0], &[1], false)?; // [2, 4]
                let v = ops::var(&x[0], &[2], true, false)?; // [2, 3]
                let ab = ops::mul(&a, &b.reshape([2, 1, 4])?)?;
                ops::broadcast_add(&ab, &v.reshape([2, 3, 1])?)
            }),
        },
        Case {
            name: "amax over dims and max along one",
            inputs: vec![t(&[3, 4], 68)],
            f: Box::new(|x| {
                let a = ops::amax(&x[0], &[0], true)?; // [1, 4]
                let (m, _) = ops::max(&x[0], 1, true)?; // [3, 1]
                ops::broadcast_add(&a, &m)
            }),
        },
        Case {
            name: "cat, stack and where",
            inputs: vec![t(&[2, 3], 69), t(&[2, 2], 70)],
            f: Box::new(|x| {
                let c = ops::cat(&[&x[0], &x[1]], 1)?; // [2, 5]
                let s = ops::stack(&[&c, &c], 0)?; // [2, 2, 5]
                let cond = Tensor::from_slice(&[1f32, 0., 1., 1., 0.], &[5])?.to(&x[0].device())?;
                ops::where_(&cond, &s, &ops::scale(&s, -2.0)?)
            }),
        },
        Case {
            name: "matmul_nt",
            inputs: vec![t(&[2, 3, 4], 6), t(&[2, 5, 4], 7)],
            f: Box::new(|x| ops::matmul_nt(&x[0], &x[1], 0.5)),
        },
        Case {
            name: "broadcast_add",
            inputs: vec![t(&[2, 3, 4], 8), t(&[3, 1], 9)],
            f: Box::new(|x| ops::broadcast_add(&x[0], &x[1])),
        },
        Case {
            name: "add_positional (learned table)",
            inputs: vec![t(&[2, 5, 6], 10), t(&[1, 8, 6], 11)],
            f: Box::new(|x| ops::add_positional(&x[0], &x[1])),
        },
        Case {
            name: "add_positional (buffer table)",
            inputs: vec![t(&[2, 5, 8], 12)],
            f: Box::new(|x| {
                let table = ops::positional_table(6, 8, &x[0].device())?;
                ops::add_positional(&x[0], &table)
            }),
        },
        Case {
            name: "layer_norm",
            inputs: vec![t(&[3, 2, 6], 13), t(&[2, 6], 14), t(&[2, 6], 15)],
            f: Box::new(|x| ops::layer_norm(&x[0], &[2, 6], Some(&x[1]), Some(&x[2]), 1e-5)),
        },
        Case {
            name: "layer_norm (no affine)",
            inputs: vec![t(&[4, 7], 16)],
            f: Box::new(|x| ops::layer_norm(&x[0], &[7], None, None, 1e-5)),
        },
        Case {
            name: "relu",
            inputs: vec![away(&[3, 7], 17)],
            f: Box::new(|x| ops::relu(&x[0])),
        },
        Case {
            name: "scale",
            inputs: vec![t(&[3, 4], 18)],
            f: Box::new(|x| ops::scale(&x[0], -1.5)),
        },
        Case {
            name: "dropout",
            inputs: vec![t(&[4, 9], 19)],
            f: Box::new(|x| ops::dropout(&x[0], 0.3, true, &mut ops::Generator::new(5))),
        },
        Case {
            name: "softmax",
            inputs: vec![t(&[3, 2, 6], 20)],
            f: Box::new(|x| ops::softmax(&ops::scale(&x[0], 3.0)?)),
        },
        Case {
            name: "masked_fill (attention mask)",
            inputs: vec![t(&[2, 4, 5], 21)],
            f: Box::new(move |x| {
                ops::softmax(&ops::masked_fill(&x[0], &mask.to(&x[0].device())?, -9e15)?)
            }),
        },
        Case {
            name: "reshape + permute + transpose",
            inputs: vec![t(&[2, 3, 4], 22)],
            f: Box::new(|x| {
                let y = ops::permute(&x[0].reshape([2, 12])?.reshape([2, 3, 4])?, &[2, 0, 1])?;
                ops::transpose(&y, 0, 2)
            }),
        },
        Case {
            name: "chunk + narrow",
            inputs: vec![t(&[2, 9], 23)],
            f: Box::new(|x| {
                let c = ops::chunk(&x[0], 3, 1)?;
                let a = ops::scale(&c[0], 2.0)?;
                let b = ops::broadcast_add(&a, &c[2])?;
                ops::broadcast_add(&b, &ops::narrow(&x[0], 1, 1, 3)?)
            }),
        },
        Case {
            name: "expand",
            inputs: vec![t(&[3, 1], 24)],
            f: Box::new(|x| ops::expand(&x[0], &[2, 3, 4])),
        },
        Case {
            name: "embedding",
            inputs: vec![t(&[5, 4], 25)],
            f: Box::new(move |x| ops::embedding(&idx.to(&x[0].device())?, &x[0])),
        },
        Case {
            name: "batch_norm (given statistics)",
            inputs: vec![t(&[4, 3, 2], 26), t(&[3], 27), t(&[3], 28)],
            f: Box::new(|x| {
                let d = x[0].device();
                let mean = Tensor::from_slice(&[0.1f32, -0.2, 0.3], &[3])?.to(&d)?;
                let var = Tensor::from_slice(&[0.5f32, 1.5, 2.0], &[3])?.to(&d)?;
                ops::batch_norm(&x[0], &mean, &var, Some(&x[1]), Some(&x[2]), 1e-5)
            }),
        },
        Case {
            name: "BatchNorm1d in training (batch statistics)",
            inputs: vec![t(&[5, 3, 2], 29)],
            f: Box::new(|x| {
                let mut bn = BatchNorm1d::new(3).and_then(|m| m.to(&x[0].device()))?;
                bn.forward(&x[0])
            }),
        },
        Case {
            name: "mean",
            inputs: vec![t(&[3, 5], 30)],
            f: Box::new(|x| ops::mean(&x[0])),
        },
        Case {
            name: "cross_entropy",
            inputs: vec![t(&[6, 5], 31)],
            f: Box::new(move |x| {
                ops::cross_entropy(&ops::scale(&x[0], 2.0)?, &targets.to(&x[0].device())?)
            }),
        },
    ]
}

#[test]
fn every_op_backward_matches_finite_differences() {
    for case in cases() {
        check_finite_differences(&case);
    }
}

#[test]
fn gpu_gradients_equal_the_cpu_gradients() {
    let d = gpu();
    for case in cases() {
        let (c, g) = (grads(&case, &Device::Cpu), grads(&case, &d));
        let mut same = true;
        for (a, b) in c.iter().zip(&g) {
            let max = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 2e-6 * max.max(1e-6),
                    "{}: CPU {x} vs GPU {y}",
                    case.name
                );
                same &= x.to_bits() == y.to_bits();
            }
        }
        eprintln!(
            "{}: GPU gradients {}",
            case.name,
            if same {
                "bit-identical"
            } else {
                "within 2e-6 × max"
            }
        );
    }
}

#[test]
fn batch_norm_weight_and_bias_gradients_match_finite_differences() {
    let x = Tensor::from_slice(&randn(5 * 3 * 2, 40), &[5, 3, 2]).unwrap();
    let (w0, b0) = (randn(3, 41), randn(3, 42));
    let run = |w: &[f32], b: &[f32], backward: bool| -> (f64, Vec<f32>, Vec<f32>) {
        let mut bn = BatchNorm1d::new(3).unwrap();
        bn.weight
            .set_tensor(Tensor::from_slice(w, &[3]).unwrap())
            .unwrap();
        bn.bias
            .set_tensor(Tensor::from_slice(b, &[3]).unwrap())
            .unwrap();
        let loss = weigh(&bn.forward(&x).unwrap()).unwrap();
        let l = loss.item::<f32>().unwrap() as f64;
        if !backward {
            return (l, vec![], vec![]);
        }
        loss.backward().unwrap();
        let g = |p: &Parameter| p.grad().unwrap().to_vec::<f32>().unwrap();
        (l, g(&bn.weight), g(&bn.bias))
    };
    let (_, gw, gb) = run(&w0, &b0, true);
    let h = 1e-2;
    for c in 0..3 {
        for (which, g) in [(0, &gw), (1, &gb)] {
            let (mut wp, mut bp) = (w0.clone(), b0.clone());
            let (mut wm, mut bm) = (w0.clone(), b0.clone());
            let (p, m) = if which == 0 {
                (&mut wp, &mut wm)
            } else {
                (&mut bp, &mut bm)
            };
            p[c] += h;
            m[c] -= h;
            let fd = (run(&wp, &bp, false).0 - run(&wm, &bm, false).0) / (2.0 * h as f64);
            assert!(
                (fd - g[c] as f64).abs() < 2e-3,
                "channel {c}: {} vs {fd}",
                g[c]
            );
        }
    }
}

#[test]
fn only_what_requires_grad_gets_a_gradient() {
    // A frozen parameter and a plain tensor (a buffer's value) take part; neither gets one.
    let w = Parameter::new(Tensor::from_slice(&[1f32, 2., 3.], &[1, 3]).unwrap());
    let frozen = Parameter::frozen(Tensor::from_slice(&[0.5f32], &[1]).unwrap());
    let buffer = Tensor::from_slice(&[1f32, 1., 1.], &[1, 3]).unwrap();
    let x = ops::broadcast_add(w.tensor(), &buffer).unwrap();
    let y = ops::linear(&x, &buffer, Some(frozen.tensor())).unwrap();
    ops::mean(&y).unwrap().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec::<f32>().unwrap(), [1., 1., 1.]);
    assert!(frozen.grad().is_none());
    // Gradients accumulate over backward calls, as PyTorch's do, until zero_grad.
    let y = ops::linear(w.tensor(), &buffer, None).unwrap();
    ops::mean(&y).unwrap().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec::<f32>().unwrap(), [2., 2., 2.]);
    // Nothing trainable: a clear error, not a silent no-op.
    let e = ops::mean(&buffer)
        .unwrap()
        .backward()
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not require a gradient"), "{e}");
    // A buffer never takes a gradient, even given a value computed from a parameter.
    let b = wgnn::Buffer::new(ops::scale(w.tensor(), 2.0).unwrap());
    assert!(!b.tensor().requires_grad());
    // Inside no_grad nothing is recorded.
    let z = no_grad(|| ops::relu(w.tensor()).unwrap());
    assert!(!z.requires_grad());
    // backward needs a scalar; backward_with takes the output's gradient.
    let v = ops::scale(w.tensor(), 2.0).unwrap();
    assert!(v
        .backward()
        .unwrap_err()
        .to_string()
        .contains("one-element"));
    let mut p = w.clone();
    p.zero_grad();
    let v = ops::scale(p.tensor(), 2.0).unwrap();
    v.backward_with(&Tensor::from_slice(&[1f32, 0., -1.], &[1, 3]).unwrap())
        .unwrap();
    assert_eq!(p.grad().unwrap().to_vec::<f32>().unwrap(), [2., 0., -2.]);
    // The clone has its own slot: the original's grad is untouched.
    assert_eq!(w.grad().unwrap().to_vec::<f32>().unwrap(), [2., 2., 2.]);
    let bad = Tensor::zeros(&[3], DType::F32, &Device::Cpu).unwrap();
    assert!(p.set_grad(Some(bad)).is_err());
}

#[test]
fn empty_tensors_differentiate_and_clip() {
    use wgnn::module::Forward;
    use wgnn::nn::Linear;
    use wgnn::optim::{clip_grad_norm_, Adam};
    use wgnn::ModuleExt;
    for d in [Device::Cpu, gpu()] {
        // in_features = 0: the weight [2, 0] is empty, the output is the bias.
        let mut l = Linear::new(0, 2).and_then(|m| m.to(&d)).unwrap();
        l.bias
            .as_mut()
            .unwrap()
            .set_tensor(
                Tensor::from_slice(&[1f32, -2.], &[2])
                    .unwrap()
                    .to(&d)
                    .unwrap(),
            )
            .unwrap();
        let x = Tensor::zeros(&[3, 0], DType::F32, &d).unwrap();
        ops::mean(&l.forward(&x).unwrap())
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(l.weight.grad().unwrap().shape(), [2, 0]);
        assert_eq!(
            l.bias
                .as_ref()
                .unwrap()
                .grad()
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            [0.5, 0.5]
        );
        let norm = clip_grad_norm_(&mut l, 0.5).unwrap().value().unwrap();
        assert!((norm - 0.5f32.sqrt()).abs() < 1e-6, "{norm}");
        let mut opt = Adam::new(&l, 0.1);
        opt.step(&mut l).unwrap();
        // A broadcast over an empty dimension sums nothing: zeros.
        let b = Parameter::new(
            Tensor::from_slice(&[1f32; 4], &[4])
                .unwrap()
                .to(&d)
                .unwrap(),
        );
        let e = Tensor::zeros(&[0, 4], DType::F32, &d).unwrap();
        let y = ops::broadcast_add(&e, b.tensor()).unwrap();
        let z = ops::broadcast_add(
            &ops::linear(&y, &Tensor::zeros(&[1, 4], DType::F32, &d).unwrap(), None)
                .unwrap()
                .reshape([0])
                .unwrap(),
            &Tensor::zeros(&[1], DType::F32, &d).unwrap(),
        )
        .unwrap();
        z.backward_with(&Tensor::zeros(&[0], DType::F32, &d).unwrap())
            .unwrap();
        assert_eq!(b.grad().unwrap().to_vec::<f32>().unwrap(), [0.0; 4]);
    }
}

/// Issue 19, defect 2: `Module.to()` moves `.grad` with its parameter, in PyTorch and here.
#[test]
fn to_device_moves_gradients_with_their_parameters() {
    use wgnn::nn::Linear;
    use wgnn::ModuleExt;
    let gpu = gpu();
    let mut lin = Linear::new(3, 2).unwrap();
    let x = Tensor::from_slice(&randn(4 * 3, 9), &[4, 3]).unwrap();
    ops::mean(&lin.forward(&x).unwrap())
        .unwrap()
        .backward()
        .unwrap();
    let before: Vec<Vec<f32>> = lin
        .parameters()
        .iter()
        .map(|p| p.grad().unwrap().to_vec().unwrap())
        .collect();
    let submissions = gpu.as_gpu().unwrap().submission_count();
    lin.to_device(&gpu).unwrap();
    // Parameters and gradients went up together, in one submission.
    assert_eq!(gpu.as_gpu().unwrap().submission_count(), submissions + 1);
    for (p, want) in lin.parameters().iter().zip(&before) {
        let g = p.grad().expect("the gradient moved with its parameter");
        assert!(g.is_on(&gpu) && p.tensor().is_on(&gpu));
        assert_eq!(&g.to_vec::<f32>().unwrap(), want);
    }
    // The moved gradients keep accumulating on the device, and come back down with a move.
    ops::mean(&lin.forward(&x.to(&gpu).unwrap()).unwrap())
        .unwrap()
        .backward()
        .unwrap();
    lin.to_device(&Device::Cpu).unwrap();
    for (p, want) in lin.parameters().iter().zip(&before) {
        let g = p.grad().unwrap();
        assert!(g.is_on(&Device::Cpu));
        let twice: Vec<f32> = want.iter().map(|v| v * 2.0).collect();
        assert_eq!(g.to_vec::<f32>().unwrap(), twice);
    }
    // A frozen parameter has none to move; a parameter without a gradient stays without.
    lin.zero_grad();
    lin.to_device(&gpu).unwrap();
    assert!(lin.parameters().iter().all(|p| p.grad().is_none()));
}

/// Issue 20, the tape: what an op cannot differentiate is refused when it is recorded, and a
/// graph runs backward once (its saved tensors are freed as it goes), as PyTorch's default.
#[test]
fn undifferentiable_inputs_are_refused_when_recorded_and_backward_runs_once() {
    let x = Parameter::new(Tensor::from_slice(&[1f32, -2., 3., 4.], &[1, 4]).unwrap());
    let m = Parameter::new(Tensor::from_slice(&[1f32, 0., 1., 0.], &[1, 4]).unwrap());
    let e = ops::masked_fill(x.tensor(), m.tensor(), 0.0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("masked_fill") && e.contains("mask requires a gradient"),
        "{e}"
    );
    // A detached mask, or one made inside no_grad, is fine.
    ops::masked_fill(x.tensor(), &m.tensor().detach(), 0.0).unwrap();
    no_grad(|| ops::masked_fill(x.tensor(), m.tensor(), 0.0)).unwrap();
    // Given batch-norm statistics that require a gradient are refused the same way.
    let xb = Tensor::from_slice(&randn(2 * 4, 3), &[2, 4]).unwrap();
    let mean = Parameter::new(Tensor::zeros(&[4], DType::F32, &Device::Cpu).unwrap());
    let var = Tensor::ones(&[4], DType::F32, &Device::Cpu).unwrap();
    let e = ops::batch_norm(&xb, mean.tensor(), &var, None, None, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("running mean requires a gradient"), "{e}");
    // backward twice through one graph: an error that says why, not a wrong gradient.
    let loss = ops::mean(&ops::relu(x.tensor()).unwrap()).unwrap();
    loss.backward().unwrap();
    let e = loss.backward().unwrap_err().to_string();
    assert!(
        e.contains("second time") && e.contains("run the forward again"),
        "{e}"
    );
}

/// Issue 20, the tape frees as it goes: once a node's backward has run, what it saved is
/// dropped, while the loss (and so the graph) is still alive. A chain of ops that each save a
/// 1 MiB activation holds them all after forward; after backward, only what the caller holds.
#[test]
fn backward_frees_saved_tensors_as_it_goes() {
    let gpu = gpu();
    let g = gpu.as_gpu().unwrap();
    let n = 1 << 18; // 1 MiB of f32
    let w = Parameter::new(
        Tensor::from_slice(&randn(n, 5), &[n])
            .unwrap()
            .to(&gpu)
            .unwrap(),
    );
    g.synchronize().unwrap();
    let held_before = g.stats().live_bytes;
    let depth = 8;
    // relu saves its input; the chain's intermediates are dropped by this scope, so only the
    // graph keeps them.
    let loss = {
        let mut y = w.tensor().clone();
        for _ in 0..depth {
            y = ops::relu(&ops::scale(&y, 1.5).unwrap()).unwrap();
        }
        ops::mean(&y).unwrap()
    };
    let after_forward = g.stats().live_bytes - held_before;
    assert!(
        after_forward >= depth as u64 * (n as u64 * 4),
        "the graph holds the saved activations: {after_forward} bytes"
    );
    g.reset_peak();
    let peak_base = g.stats().live_bytes;
    loss.backward().unwrap();
    g.synchronize().unwrap();
    let after_backward = g.stats().live_bytes - held_before;
    // The loss is alive, its graph too; what stays is the gradient (1 MiB) and the loss.
    assert!(
        after_backward <= 2 * n as u64 * 4,
        "saved tensors outlived their node's backward: {after_backward} bytes held"
    );
    // And backward never held much more than what forward left: nodes free as they run.
    let peak = g.stats().peak_bytes - peak_base;
    assert!(
        peak <= 4 * n as u64 * 4,
        "backward's peak above what forward held: {peak} bytes"
    );
    assert_eq!(w.grad().unwrap().shape(), [n]);
    drop(loss);
}
