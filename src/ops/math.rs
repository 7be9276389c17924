//! The math ops a user writes models with: `neg`, `exp`, `log`, `sqrt`, `rsqrt`, `pow`,
//! `tanh`, `sigmoid`, `gelu` (exact and `approximate="tanh"`), `silu`, `clamp`, the activations
//! `elu`, `leaky_relu`, `softplus` and `hardtanh`, and the
//! broadcasting `mul`, `sub`, `div`. Each records its backward here, written with these ops
//! (gelu, silu and clamp through their derivative kernels).
//!
//! Numbers: `neg`, `clamp`, `mul` and `sub` are exactly rounded (the same bits on the CPU and
//! every GPU). The others use the device's functions: on the CPU Rust's (`f32::exp`, …; `erfc`
//! from `libm`; sigmoid, silu, gelu and rsqrt in f64, rounded once), within 2 ulp of the f64
//! value; on the GPU WGSL's builtins, which WGSL does not require to be exactly rounded. Bounds
//! of the GPU against the CPU, relative to |y| (ulp = 2⁻²³), following WGSL's accuracy rules
//! (`exp(x)` within 3 + 2|x| ulp, `log` 3 ulp or 2⁻²¹ absolute in [0.5, 2], `pow` through
//! `exp2(y · log2 x)`, division 2.5 ulp) plus a few ulp of the kernels' own arithmetic:
//!
//! | op | bound | measured (lavapipe, llvmpipe) |
//! |---|---|---|
//! | exp | 5 + 2\|x\| ulp | 0.36 of it |
//! | log, sqrt, rsqrt | 4 ulp (log: or 2⁻²¹ absolute in [0.5, 2]) | 0.34, 0, 0.25 |
//! | pow(x, e) | 8 + 4\|e\|·\|log2 \|x\|\| ulp | 0.24 |
//! | tanh | 6 + 4\|x\| ulp | 0.32 |
//! | sigmoid, silu | 6 + 2\|x\| ulp | 0.23 |
//! | gelu | 8 + x² ulp (the erfc tail's exp) | 0.88 |
//! | gelu, tanh form | 8 + 4\|u\| ulp, u = √(2/π)(x + 0.044715x³) | 0.57 |
//! | elu | 5 + 2\|x\| ulp (expm1: a polynomial below 0.01) | — |
//! | softplus | 8 + 2\|βx\| ulp (log1p corrected) | — |
//! | leaky_relu, hardtanh | exact | — |
//! | div | 3 ulp | — |
//!
//! Subnormal results may be flushed to zero on a GPU. `tanh` avoids the builtin (which some
//! drivers compute as (e²ˣ - 1)/(e²ˣ + 1), with no relative accuracy near 0), gelu is
//! `x·erfc(-x/√2)/2` and its tanh form `x·sigmoid(2u)`, so that neither cancels in the tail.
//! `tests/math_ops.rs` asserts every bound over [-12, 12] and at the special values.

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::gpu::codes::UnaryOp;
use crate::ops::add::broadcast_shape;
use crate::ops::grad::{div_same, mul, sub_same, sum_to};
use crate::ops::unary::math_unary;
use crate::tensor::Tensor;

/// The CPU value of `op` at `v` (the GPU's is `unary.wgsl`'s `math`).
pub(crate) fn cpu(op: UnaryOp, v: f32, a: f32, b: f32) -> f32 {
    const SQRT1_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
    let gelu_c = (2.0 / std::f64::consts::PI).sqrt();
    let x = v as f64;
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let r = match op {
        UnaryOp::Neg => return -v,
        UnaryOp::Exp => return v.exp(),
        UnaryOp::Log => return v.ln(),
        UnaryOp::Sqrt => return v.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Pow => return v.powf(a),
        UnaryOp::Tanh => return v.tanh(),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Gelu => 0.5 * x * libm::erfc(-x * SQRT1_2),
        // 0.5·x·(1 + tanh(u)) = x · sigmoid(2u).
        UnaryOp::GeluTanh => x * sigmoid(2.0 * gelu_c * (x + 0.044715 * x * x * x)),
        UnaryOp::Silu => x * sigmoid(x),
        UnaryOp::Clamp => {
            return if v.is_nan() { v } else { v.max(a).min(b) };
        }
        UnaryOp::GeluGrad => {
            0.5 * libm::erfc(-x * SQRT1_2)
                + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
        }
        UnaryOp::GeluTanhGrad => {
            let s = sigmoid(2.0 * gelu_c * (x + 0.044715 * x * x * x));
            let du = gelu_c * (1.0 + 3.0 * 0.044715 * x * x);
            s + 2.0 * x * s * (1.0 - s) * du
        }
        UnaryOp::SiluGrad => {
            let s = sigmoid(x);
            s * (1.0 + x * (1.0 - s))
        }
        UnaryOp::ClampGrad => {
            return if v >= a && v <= b { 1.0 } else { 0.0 };
        }
        UnaryOp::Elu => {
            return if v > 0.0 {
                v
            } else {
                (a as f64 * x.exp_m1()) as f32
            };
        }
        UnaryOp::EluGrad => {
            return if v > 0.0 {
                1.0
            } else {
                (a as f64 * x.exp()) as f32
            };
        }
        UnaryOp::LeakyRelu => return if v > 0.0 { v } else { v * a },
        UnaryOp::LeakyReluGrad => return if v > 0.0 { 1.0 } else { a },
        UnaryOp::Softplus => {
            let z = x * a as f64;
            return if z > b as f64 {
                v
            } else {
                (z.exp().ln_1p() / a as f64) as f32
            };
        }
        UnaryOp::SoftplusGrad => {
            let z = x * a as f64;
            return if z > b as f64 { 1.0 } else { sigmoid(z) as f32 };
        }
        UnaryOp::HardtanhGrad => {
            return if v <= a || v >= b { 0.0 } else { 1.0 };
        }
        // Not math ops (their kernels are unary.rs's own).
        UnaryOp::Relu | UnaryOp::Scale | UnaryOp::Dropout | UnaryOp::Uniform => return v,
    };
    r as f32
}

/// One math op with its backward `grad(g, x, y)`.
fn unary_op(
    name: &'static str,
    x: &Tensor,
    op: UnaryOp,
    (a, b): (f32, f32),
    grad: fn(&Tensor, &Tensor, &Tensor, f32, f32) -> Result<Tensor>,
) -> Result<Tensor> {
    let y = math_unary(name, x, op, a, b)?;
    let saved = y.detach();
    Ok(record(name, y, &[x], || {
        let x = x.detach();
        Box::new(move |g, _| Ok(vec![Some(grad(g, &x, &saved, a, b)?)]))
    }))
}

/// `1 - t` elementwise (for derivatives).
fn one_minus(t: &Tensor) -> Result<Tensor> {
    let one = Tensor::full(&[1], 1f32, &t.device())?;
    sub(&one, t)
}

/// `-x`.
pub fn neg(x: &Tensor) -> Result<Tensor> {
    unary_op("neg", x, UnaryOp::Neg, (0.0, 0.0), |g, _, _, _, _| neg(g))
}

/// `torch.exp(x)`.
pub fn exp(x: &Tensor) -> Result<Tensor> {
    unary_op("exp", x, UnaryOp::Exp, (0.0, 0.0), |g, _, y, _, _| {
        mul(g, y)
    })
}

/// `torch.log(x)` (natural; NaN below 0, -inf at 0).
pub fn log(x: &Tensor) -> Result<Tensor> {
    unary_op("log", x, UnaryOp::Log, (0.0, 0.0), |g, x, _, _, _| {
        div_same(g, x)
    })
}

/// `torch.sqrt(x)`.
pub fn sqrt(x: &Tensor) -> Result<Tensor> {
    unary_op("sqrt", x, UnaryOp::Sqrt, (0.0, 0.0), |g, _, y, _, _| {
        div_same(g, &crate::ops::scale(y, 2.0)?)
    })
}

/// `torch.rsqrt(x)`: `1 / sqrt(x)`.
pub fn rsqrt(x: &Tensor) -> Result<Tensor> {
    unary_op("rsqrt", x, UnaryOp::Rsqrt, (0.0, 0.0), |g, _, y, _, _| {
        // d/dx x^(-1/2) = -1/2 · y³.
        mul(g, &crate::ops::scale(&pow(y, 3.0)?, -0.5)?)
    })
}

/// `torch.pow(x, exponent)` for a scalar exponent (a negative base takes integer exponents,
/// as in PyTorch).
pub fn pow(x: &Tensor, exponent: f32) -> Result<Tensor> {
    if !exponent.is_finite() {
        return Err(Error::invalid(format!(
            "pow: the exponent must be finite, got {exponent}"
        )));
    }
    unary_op("pow", x, UnaryOp::Pow, (exponent, 0.0), |g, x, _, e, _| {
        if e == 0.0 {
            return Tensor::zeros(g.shape(), g.dtype(), &g.device());
        }
        mul(g, &crate::ops::scale(&pow(x, e - 1.0)?, e)?)
    })
}

/// `torch.tanh(x)`.
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    unary_op("tanh", x, UnaryOp::Tanh, (0.0, 0.0), |g, _, y, _, _| {
        mul(g, &one_minus(&mul(y, y)?)?)
    })
}

/// `torch.sigmoid(x)`: `1 / (1 + exp(-x))`.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    unary_op(
        "sigmoid",
        x,
        UnaryOp::Sigmoid,
        (0.0, 0.0),
        |g, _, y, _, _| mul(g, &mul(y, &one_minus(y)?)?),
    )
}

/// `F.gelu(x)` (`approximate="none"`: `x · Φ(x)`) or, with `tanh_approximation`,
/// `F.gelu(x, approximate="tanh")`.
pub fn gelu(x: &Tensor, tanh_approximation: bool) -> Result<Tensor> {
    let (op, grad) = if tanh_approximation {
        (UnaryOp::GeluTanh, UnaryOp::GeluTanhGrad)
    } else {
        (UnaryOp::Gelu, UnaryOp::GeluGrad)
    };
    let y = math_unary("gelu", x, op, 0.0, 0.0)?;
    Ok(record("gelu", y, &[x], || {
        let x = x.detach();
        Box::new(move |g, _| {
            Ok(vec![Some(mul(
                g,
                &math_unary("gelu backward", &x, grad, 0.0, 0.0)?,
            )?)])
        })
    }))
}

/// `F.silu(x)`: `x · sigmoid(x)`.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    unary_op("silu", x, UnaryOp::Silu, (0.0, 0.0), |g, x, _, _, _| {
        mul(
            g,
            &math_unary("silu backward", x, UnaryOp::SiluGrad, 0.0, 0.0)?,
        )
    })
}

/// `torch.clamp(x, min, max)` (NaN stays NaN; the gradient passes where `min ≤ x ≤ max`).
pub fn clamp(x: &Tensor, min: f32, max: f32) -> Result<Tensor> {
    if min.is_nan() || max.is_nan() || min > max {
        return Err(Error::invalid(format!(
            "clamp: min ({min}) must not exceed max ({max})"
        )));
    }
    unary_op("clamp", x, UnaryOp::Clamp, (min, max), |g, x, _, lo, hi| {
        mul(
            g,
            &math_unary("clamp backward", x, UnaryOp::ClampGrad, lo, hi)?,
        )
    })
}

/// An activation `f(x)` whose backward is `g · f'(x)`, `f'` the kernel `grad`.
fn with_derivative(
    name: &'static str,
    x: &Tensor,
    (op, grad): (UnaryOp, UnaryOp),
    (a, b): (f32, f32),
) -> Result<Tensor> {
    let y = math_unary(name, x, op, a, b)?;
    Ok(record(name, y, &[x], || {
        let x = x.detach();
        Box::new(move |g, _| {
            let d = math_unary(name, &x, grad, a, b)?;
            Ok(vec![Some(mul(g, &d)?)])
        })
    }))
}

/// `F.elu(x, alpha)`: `x` above 0, `alpha · (exp(x) - 1)` at and below (computed as `expm1`,
/// so small inputs keep their digits). The gradient at 0 is `alpha` (PyTorch's convention).
pub fn elu(x: &Tensor, alpha: f32) -> Result<Tensor> {
    with_derivative("elu", x, (UnaryOp::Elu, UnaryOp::EluGrad), (alpha, 0.0))
}

/// `F.leaky_relu(x, negative_slope)`: `x` above 0, `x · negative_slope` at and below; the
/// gradient at 0 is `negative_slope`, as PyTorch's.
pub fn leaky_relu(x: &Tensor, negative_slope: f32) -> Result<Tensor> {
    with_derivative(
        "leaky_relu",
        x,
        (UnaryOp::LeakyRelu, UnaryOp::LeakyReluGrad),
        (negative_slope, 0.0),
    )
}

/// `F.softplus(x, beta, threshold)`: `log(1 + exp(beta·x)) / beta`, and `x` itself where
/// `beta·x > threshold` (PyTorch's switch; its defaults are beta 1, threshold 20).
pub fn softplus(x: &Tensor, beta: f32, threshold: f32) -> Result<Tensor> {
    if beta == 0.0 || !beta.is_finite() || threshold.is_nan() {
        return Err(Error::invalid(format!(
            "softplus: beta must be finite and non-zero, threshold a number (got beta {beta}, \
             threshold {threshold})"
        )));
    }
    with_derivative(
        "softplus",
        x,
        (UnaryOp::Softplus, UnaryOp::SoftplusGrad),
        (beta, threshold),
    )
}

/// `F.hardtanh(x, min_val, max_val)`: `x` clamped to `[min_val, max_val]`; the gradient passes
/// only strictly inside (0 at the bounds, as PyTorch's, where `clamp`'s passes).
pub fn hardtanh(x: &Tensor, min_val: f32, max_val: f32) -> Result<Tensor> {
    if min_val.is_nan() || max_val.is_nan() || min_val > max_val {
        return Err(Error::invalid(format!(
            "hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})"
        )));
    }
    with_derivative(
        "hardtanh",
        x,
        (UnaryOp::Clamp, UnaryOp::HardtanhGrad),
        (min_val, max_val),
    )
}

/// Both operands expanded to their broadcast shape (views; made dense by the kernel's run).
fn broadcast(name: &str, a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let shape = broadcast_shape(a.shape(), b.shape()).map_err(|_| {
        Error::shape(
            name,
            format!("a {:?} and b {:?} do not broadcast", a.shape(), b.shape()),
        )
    })?;
    let ab = crate::autograd::no_grad(|| crate::ops::expand(a, &shape))?;
    let bb = crate::autograd::no_grad(|| crate::ops::expand(b, &shape))?;
    Ok((ab, bb))
}

/// `a * b` with PyTorch's broadcasting.
pub fn mul_(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ab, bb) = broadcast("mul", a, b)?;
    let y = mul(&ab, &bb)?;
    Ok(record("mul", y, &[a, b], || {
        let (ab, bb, sa, sb) = (ab, bb, a.shape().to_vec(), b.shape().to_vec());
        Box::new(move |g, needs| {
            Ok(vec![
                crate::autograd::wants(needs, 0)
                    .then(|| sum_to(&mul(g, &bb)?, &sa))
                    .transpose()?,
                crate::autograd::wants(needs, 1)
                    .then(|| sum_to(&mul(g, &ab)?, &sb))
                    .transpose()?,
            ])
        })
    }))
}

/// `a - b` with PyTorch's broadcasting.
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ab, bb) = broadcast("sub", a, b)?;
    let y = sub_same(&ab, &bb)?;
    Ok(record("sub", y, &[a, b], || {
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        Box::new(move |g, needs| {
            Ok(vec![
                crate::autograd::wants(needs, 0)
                    .then(|| sum_to(g, &sa))
                    .transpose()?,
                crate::autograd::wants(needs, 1)
                    .then(|| sum_to(&neg(g)?, &sb))
                    .transpose()?,
            ])
        })
    }))
}

/// `a / b` with PyTorch's broadcasting.
pub fn div(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ab, bb) = broadcast("div", a, b)?;
    let y = div_same(&ab, &bb)?;
    let saved = y.detach();
    Ok(record("div", y, &[a, b], || {
        let (bb, sa, sb) = (bb, a.shape().to_vec(), b.shape().to_vec());
        Box::new(move |g, needs| {
            let ga = div_same(g, &bb.contiguous()?)?;
            Ok(vec![
                crate::autograd::wants(needs, 0)
                    .then(|| sum_to(&ga, &sa))
                    .transpose()?,
                // d(a/b)/db = -(a/b)/b = -y/b.
                crate::autograd::wants(needs, 1)
                    .then(|| sum_to(&neg(&mul(&ga, &saved)?)?, &sb))
                    .transpose()?,
            ])
        })
    }))
}

/// `torch.where(cond, a, b)`: `a` where `cond` is non-zero (true), else `b`, with PyTorch's
/// broadcasting of all three. `cond` may be bool, uint8 or a float (as `masked_fill`'s mask);
/// `a` and `b` float32, float16 or bfloat16. A select: the same bits everywhere, signed zeros and NaNs kept.
pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let name = "where";
    crate::autograd::refuse_grad(name, cond, "condition")?;
    crate::ops::op::check_float(name, a, "a")?;
    crate::ops::op::check_float(name, b, "b")?;
    let shape = broadcast_shape(a.shape(), b.shape())
        .and_then(|s| broadcast_shape(&s, cond.shape()))
        .map_err(|_| {
            Error::shape(
                name,
                format!(
                    "cond {:?}, a {:?} and b {:?} do not broadcast",
                    cond.shape(),
                    a.shape(),
                    b.shape()
                ),
            )
        })?;
    let mask = crate::autograd::no_grad(|| -> Result<Tensor> {
        // The condition as a 0/1 float mask of the full shape.
        let ones = Tensor::full(&shape, 1f32, &a.device())?;
        crate::ops::masked_fill(&ones, cond, 0.0)
    })?;
    let y = select(&mask, a, b, &shape)?;
    Ok(record(name, y, &[a, b], || {
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        Box::new(move |g, needs| {
            let zeros = Tensor::zeros(g.shape(), g.dtype(), &g.device())?;
            Ok(vec![
                crate::autograd::wants(needs, 0)
                    .then(|| sum_to(&select(&mask, g, &zeros, g.shape())?, &sa))
                    .transpose()?,
                crate::autograd::wants(needs, 1)
                    .then(|| sum_to(&select(&mask, &zeros, g, g.shape())?, &sb))
                    .transpose()?,
            ])
        })
    }))
}

/// `m != 0 ? a : b` of `shape` (operands broadcast to it).
fn select(m: &Tensor, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let full = |t: &Tensor| crate::autograd::no_grad(|| crate::ops::expand(t, shape));
    let (a, b) = (full(a)?, full(b)?);
    crate::ops::op::run(
        &Select {
            out: shape.to_vec(),
        },
        &[m, &a, &b],
        None,
    )
}

struct Select {
    out: Vec<usize>,
}

impl crate::ops::op::Op for Select {
    fn name(&self) -> &'static str {
        "where"
    }
    /// The 0/1 mask does not set the result's dtype.
    fn is_operand(&self, i: usize) -> bool {
        i > 0
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(
        &self,
        inputs: &[&crate::tensor::HostBytes],
        out: &mut crate::tensor::HostBytes,
    ) -> Result<()> {
        let (m, a, b) = (inputs[0].as_f32(), inputs[1].as_f32(), inputs[2].as_f32());
        for (i, y) in out.as_f32_mut().iter_mut().enumerate() {
            *y = if m[i] != 0.0 { a[i] } else { b[i] };
        }
        Ok(())
    }
    fn gpu(
        &self,
        ctx: &std::sync::Arc<crate::gpu::GpuContext>,
        inputs: &[&crate::gpu::pool::GpuBuffer],
        out: &crate::gpu::pool::GpuBuffer,
    ) -> Result<()> {
        use crate::gpu::kernels::{BinaryParams, Kernel};
        let n = self.out.iter().product::<usize>() as u64;
        let bufs = [inputs[0], inputs[1], inputs[2], out];
        let (gx, gy, row_width) = crate::ops::common::elementwise_grid(ctx, "where", &bufs, n)?;
        crate::ops::common::launch_whole(
            ctx,
            Kernel::WhereSelect(BinaryParams {
                count: n as u32,
                row_width,
                op: 0,
                alpha: 0.0,
            }),
            &bufs,
            [gx, gy, 1],
        )
    }
}
