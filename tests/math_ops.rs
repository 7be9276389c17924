//! The math ops (issue 20, part 3): the CPU against f64 references, the GPU against the CPU
//! within the bounds stated in `src/ops/math.rs`, and GELU written from the other ops equal to
//! `ops::gelu` within that bound.

mod common;

use common::{gpu, randn};
use wgnn::{ops, Device, Tensor};

type F = fn(&Tensor) -> wgnn::Result<Tensor>;

/// Inputs spanning the interesting ranges: [-12, 12], plus exact specials.
fn inputs(positive: bool) -> Vec<f32> {
    let mut v: Vec<f32> = randn(2000, 77).iter().map(|x| x * 12.0).collect();
    v.extend([
        0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 9.5, -9.5, 30.0, -30.0, 1e-20, 88.0,
    ]);
    if positive {
        v.iter_mut().for_each(|x| *x = x.abs() + 1e-3);
    }
    v
}

/// `n` units in the last place, relative (2⁻²³ each).
fn ulps(n: f64) -> f64 {
    n * f64::from(f32::EPSILON)
}

/// Each op: its name, the op, whether its inputs must be positive, the f64 reference, and the
/// bound of the GPU against the CPU at x, relative to |y|. The bounds follow WGSL's accuracy
/// rules (`exp(x)` within 3 + 2|x| ulp, `log` 3 ulp or 2⁻²¹ absolute in [0.5, 2], `pow`
/// inherited from `exp2(y · log2 x)`, …) plus a few ulp of our own arithmetic; 0 is exact.
type Bound = fn(f64) -> f64;
type Row = (&'static str, F, bool, fn(f64) -> f64, Bound);
fn ops_table() -> Vec<Row> {
    fn erfc(x: f64) -> f64 {
        libm::erfc(x)
    }
    fn gelu_u(x: f64) -> f64 {
        (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)
    }
    vec![
        ("neg", |x| ops::neg(x), false, |x| -x, |_| 0.0),
        (
            "exp",
            |x| ops::exp(x),
            false,
            f64::exp,
            |x| ulps(5.0 + 2.0 * x.abs()),
        ),
        ("log", |x| ops::log(x), true, f64::ln, |_| ulps(4.0)),
        ("sqrt", |x| ops::sqrt(x), true, f64::sqrt, |_| ulps(4.0)),
        (
            "rsqrt",
            |x| ops::rsqrt(x),
            true,
            |x| 1.0 / x.sqrt(),
            |_| ulps(4.0),
        ),
        (
            "pow 3",
            |x| ops::pow(x, 3.0),
            false,
            |x| x * x * x,
            |x| ulps(8.0 + 12.0 * x.abs().log2().abs()),
        ),
        (
            "pow 0.5",
            |x| ops::pow(x, 0.5),
            true,
            f64::sqrt,
            |x| ulps(8.0 + 2.0 * x.log2().abs()),
        ),
        (
            "tanh",
            |x| ops::tanh(x),
            false,
            f64::tanh,
            |x| ulps(6.0 + 4.0 * x.abs()),
        ),
        (
            "sigmoid",
            |x| ops::sigmoid(x),
            false,
            |x| 1.0 / (1.0 + (-x).exp()),
            |x| ulps(6.0 + 2.0 * x.abs()),
        ),
        (
            "gelu",
            |x| ops::gelu(x, false),
            false,
            |x| 0.5 * x * erfc(-x / 2f64.sqrt()),
            |x| ulps(8.0 + x * x),
        ),
        (
            "gelu tanh",
            |x| ops::gelu(x, true),
            false,
            // 0.5·x·(1 + tanh(u)) = x · sigmoid(2u), without f64's cancellation.
            |x| x / (1.0 + (-2.0 * gelu_u(x)).exp()),
            |x| ulps(8.0 + 4.0 * gelu_u(x).abs()),
        ),
        (
            "silu",
            |x| ops::silu(x),
            false,
            |x| x / (1.0 + (-x).exp()),
            |x| ulps(6.0 + 2.0 * x.abs()),
        ),
        (
            "clamp",
            |x| ops::clamp(x, -1.5, 2.0),
            false,
            |x| x.clamp(-1.5, 2.0),
            |_| 0.0,
        ),
    ]
}

/// |got - want| within `rel` of |want|, or both below the smallest normal float (GPUs may
/// flush subnormal results to zero).
fn within(got: f32, want: f64, rel: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    let err = (got as f64 - want).abs();
    err <= rel * want.abs()
        || (rel > 0.0 && err <= f64::from(f32::MIN_POSITIVE))
        || (rel == 0.0 && err == 0.0)
}

#[test]
fn cpu_matches_f64_and_gpu_matches_cpu_within_the_stated_bounds() {
    let g = gpu();
    for (name, f, positive, reference, bound) in ops_table() {
        let xs = inputs(positive);
        let x = Tensor::from_slice(&xs, &[xs.len()]).unwrap();
        let cpu = f(&x).unwrap().to_vec::<f32>().unwrap();
        let gpu_v = f(&x.to(&g).unwrap()).unwrap().to_vec::<f32>().unwrap();
        let (mut worst_cpu, mut worst_gpu) = (0f64, 0f64);
        for ((&v, &c), &d) in xs.iter().zip(&cpu).zip(&gpu_v) {
            let want = reference(v as f64);
            let exact = bound(1.0) == 0.0;
            // The CPU: within 2 ulp of the f64 value (Rust's f32 functions, or f64 rounded
            // once); exactly rounded ops exactly.
            let cpu_rel = if exact { 0.0 } else { ulps(2.0) };
            assert!(
                within(c, want as f32 as f64, cpu_rel) || within(c, want, cpu_rel),
                "{name}({v}): cpu {c} vs {want}"
            );
            // The GPU: within the op's bound at x of the CPU's value (log: 2⁻²¹ absolute in
            // [0.5, 2], as WGSL allows).
            let log_abs = name == "log" && (0.5..=2.0).contains(&v) && (d - c).abs() <= 4.8e-7;
            if std::env::var("MEASURE").is_err() {
                assert!(
                    log_abs || within(d, c as f64, bound(v as f64)),
                    "{name}({v}): gpu {d} vs cpu {c} (bound {:.2e} relative)",
                    bound(v as f64)
                );
            }
            if c.abs() >= f32::MIN_POSITIVE && !log_abs {
                worst_gpu = worst_gpu
                    .max((d as f64 - c as f64).abs() / c.abs() as f64 / bound(v as f64).max(1e-30));
            }
            worst_cpu = worst_cpu.max((c as f64 - want).abs() / want.abs().max(1e-38));
        }
        eprintln!(
            "{name}: cpu vs f64 {worst_cpu:.2e} relative; gpu vs cpu {worst_gpu:.2} of the bound"
        );
    }
}

#[test]
fn binary_ops_broadcast_and_are_exact_where_they_can_be() {
    for d in [Device::Cpu, gpu()] {
        let a = Tensor::from_slice(&randn(2 * 3 * 4, 1), &[2, 3, 4])
            .unwrap()
            .to(&d)
            .unwrap();
        let b = Tensor::from_slice(&randn(4, 2), &[4])
            .unwrap()
            .to(&d)
            .unwrap();
        let av = a.to_vec::<f32>().unwrap();
        let bv = b.to_vec::<f32>().unwrap();
        let m = ops::mul(&a, &b).unwrap().to_vec::<f32>().unwrap();
        let s = ops::sub(&b, &a).unwrap().to_vec::<f32>().unwrap();
        let q = ops::div(&a, &b).unwrap().to_vec::<f32>().unwrap();
        for i in 0..24 {
            assert_eq!(m[i], av[i] * bv[i % 4]);
            assert_eq!(s[i], bv[i % 4] - av[i]);
            let want = (av[i] / bv[i % 4]) as f64;
            assert!(within(q[i], want, ulps(3.0)), "{} vs {want}", q[i]);
        }
        let e = ops::mul(
            &a,
            &Tensor::from_slice(&[1f32; 3], &[3])
                .unwrap()
                .to(&d)
                .unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("broadcast"), "{e}");
    }
}

/// GELU (the tanh form) written with the public ops equals `ops::gelu` within its bound.
#[test]
fn gelu_written_from_the_ops_equals_ops_gelu() {
    for d in [Device::Cpu, gpu()] {
        let xs = inputs(false);
        let x = Tensor::from_slice(&xs, &[xs.len()])
            .unwrap()
            .to(&d)
            .unwrap();
        let c = (2.0 / std::f64::consts::PI).sqrt() as f32;
        let half = Tensor::full(&[1], 0.5f32, &d).unwrap();
        let one = Tensor::full(&[1], 1f32, &d).unwrap();
        let inner = ops::scale(
            &ops::broadcast_add(
                &x,
                &ops::scale(&ops::pow(&x, 3.0).unwrap(), 0.044715).unwrap(),
            )
            .unwrap(),
            c,
        )
        .unwrap();
        let t = ops::broadcast_add(&ops::tanh(&inner).unwrap(), &one).unwrap();
        let composed = ops::mul(&ops::mul(&x, &half).unwrap(), &t).unwrap();
        let direct = ops::gelu(&x, true).unwrap();
        let (a, b) = (
            composed.to_vec::<f32>().unwrap(),
            direct.to_vec::<f32>().unwrap(),
        );
        let max = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        for ((v, p), q) in xs.iter().zip(&a).zip(&b) {
            assert!(
                (p - q).abs() <= 2e-6 * max.max(1.0),
                "gelu({v}) on {d}: {p} vs {q}"
            );
        }
    }
}

/// Reductions over dimensions: shapes with and without `keepdim`, `sum` and `amax` bit for bit
/// the same on the CPU and the GPU (the same order of additions; the maximum is exact) and
/// within the summation bound of f64, `max` with PyTorch's first index, `var` both ways.
#[test]
fn reductions_over_dimensions() {
    let xs = randn(2 * 3 * 5, 31);
    let at = |a: usize, b: usize, c: usize| xs[(a * 3 + b) * 5 + c] as f64;
    for d in [Device::Cpu, gpu()] {
        let x = Tensor::from_slice(&xs, &[2, 3, 5]).unwrap().to(&d).unwrap();
        let s = ops::sum(&x, &[0, 2], false).unwrap();
        assert_eq!(s.shape(), [3]);
        assert_eq!(ops::sum(&x, &[0, 2], true).unwrap().shape(), [1, 3, 1]);
        assert_eq!(ops::sum(&x, &[], false).unwrap().shape(), [] as [usize; 0]);
        let sv = s.to_vec::<f32>().unwrap();
        for (b, &got) in sv.iter().enumerate() {
            let (mut want, mut mag) = (0.0, 0.0);
            for a in 0..2 {
                for c in 0..5 {
                    want += at(a, b, c);
                    mag += at(a, b, c).abs();
                }
            }
            assert!(
                (got as f64 - want).abs() <= 10.0 * mag * 2f64.powi(-24),
                "{got} vs {want}"
            );
        }
        let m = ops::amax(&x, &[1], false).unwrap().to_vec::<f32>().unwrap();
        let (v, i) = ops::max(&x, 1, true).unwrap();
        assert_eq!(v.shape(), [2, 1, 5]);
        assert_eq!(i.to_vec::<i64>().unwrap().len(), 10);
        let iv = i.to_vec::<i64>().unwrap();
        for a in 0..2 {
            for c in 0..5 {
                let col: Vec<f64> = (0..3).map(|b| at(a, b, c)).collect();
                let best = col.iter().cloned().fold(f64::MIN, f64::max);
                assert_eq!(m[a * 5 + c] as f64, best);
                assert_eq!(col[iv[a * 5 + c] as usize], best);
            }
        }
        for unbiased in [true, false] {
            let var = ops::var(&x, &[2], unbiased, false)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            for a in 0..2 {
                for b in 0..3 {
                    let row: Vec<f64> = (0..5).map(|c| at(a, b, c)).collect();
                    let mean = row.iter().sum::<f64>() / 5.0;
                    let ss: f64 = row.iter().map(|v| (v - mean) * (v - mean)).sum();
                    let want = ss / if unbiased { 4.0 } else { 5.0 };
                    assert!(((var[a * 3 + b] as f64) - want).abs() <= 1e-6 * want.max(1e-3));
                }
            }
        }
        let mean = ops::mean_dim(&x, &[0, 1, 2], false)
            .unwrap()
            .item::<f32>()
            .unwrap() as f64;
        assert!((mean - xs.iter().map(|&v| v as f64).sum::<f64>() / 30.0).abs() < 1e-6);
        let e = ops::sum(&x, &[3], false).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
    }
    // The same bits on the CPU and the GPU.
    let g = gpu();
    let x = Tensor::from_slice(&randn(4 * 300, 9), &[4, 300]).unwrap();
    for (name, f) in [
        ("sum", (|x: &Tensor| ops::sum(x, &[1], false)) as F),
        ("amax", |x: &Tensor| ops::amax(x, &[0, 1], false)),
    ] {
        let (c, d) = (f(&x).unwrap(), f(&x.to(&g).unwrap()).unwrap());
        assert_eq!(
            c.to_vec::<f32>().unwrap(),
            d.to_vec::<f32>().unwrap(),
            "{name}"
        );
    }
}

/// `cat`, `stack` and `where`: copies and selects, the same bits on the CPU and the GPU as the
/// index arithmetic gives, for 4- and 8-byte dtypes.
#[test]
fn cat_stack_and_where() {
    let a = randn(2 * 3 * 4, 41);
    let b = randn(2 * 2 * 4, 42);
    for d in [Device::Cpu, gpu()] {
        let ta = Tensor::from_slice(&a, &[2, 3, 4]).unwrap().to(&d).unwrap();
        let tb = Tensor::from_slice(&b, &[2, 2, 4]).unwrap().to(&d).unwrap();
        let c = ops::cat(&[&ta, &tb], 1).unwrap();
        assert_eq!(c.shape(), [2, 5, 4]);
        let cv = c.to_vec::<f32>().unwrap();
        for i in 0..2 {
            for j in 0..5 {
                for k in 0..4 {
                    let want = if j < 3 {
                        a[(i * 3 + j) * 4 + k]
                    } else {
                        b[(i * 2 + j - 3) * 4 + k]
                    };
                    assert_eq!(cv[(i * 5 + j) * 4 + k].to_bits(), want.to_bits());
                }
            }
        }
        // Along the first and the last dimension, of a view, and of int64.
        let c0 = ops::cat(&[&ta, &ta], 0).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(&c0[..24], &a[..]);
        assert_eq!(&c0[24..], &a[..]);
        let tv = ops::transpose(&ta, 1, 2).unwrap();
        let c2 = ops::cat(&[&tv, &tv], 2).unwrap();
        assert_eq!(c2.shape(), [2, 4, 6]);
        let i64s = Tensor::from_slice(&[1i64, 2, 3], &[3])
            .unwrap()
            .to(&d)
            .unwrap();
        assert_eq!(
            ops::cat(&[&i64s, &i64s], 0)
                .unwrap()
                .to_vec::<i64>()
                .unwrap(),
            [1, 2, 3, 1, 2, 3]
        );
        let s = ops::stack(&[&ta, &ta, &ta], 1).unwrap();
        assert_eq!(s.shape(), [2, 3, 3, 4]);
        assert_eq!(ops::select(&s, 1, 2).unwrap().to_vec::<f32>().unwrap(), a);
        let e = ops::cat(&[&ta, &tb], 0).unwrap_err().to_string();
        assert!(e.contains("dimension 0"), "{e}");
        // where: broadcast condition, signed zeros and NaN kept.
        let cond = Tensor::from_slice(&[true, false, true, false], &[4])
            .unwrap()
            .to(&d)
            .unwrap();
        let x = Tensor::from_slice(&[-0.0f32, 1.0, f32::NAN, 3.0], &[4])
            .unwrap()
            .to(&d)
            .unwrap();
        let y = Tensor::from_slice(&[5.0f32, -0.0, 7.0, f32::INFINITY], &[4])
            .unwrap()
            .to(&d)
            .unwrap();
        let w = ops::where_(&cond, &x, &y).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(w[0].to_bits(), (-0.0f32).to_bits());
        assert_eq!(w[1].to_bits(), (-0.0f32).to_bits());
        assert!(w[2].is_nan());
        assert_eq!(w[3], f32::INFINITY);
        let wb = ops::where_(&cond, &ta, &Tensor::full(&[1], 9f32, &d).unwrap()).unwrap();
        assert_eq!(wb.shape(), [2, 3, 4]);
        assert_eq!(wb.to_vec::<f32>().unwrap()[1], 9.0);
    }
}
