//! Elementwise `relu`, `scale` and train-mode `dropout`, with the seeded [`Generator`] whose
//! stream is the same on the CPU and every GPU. Each result is exactly rounded, so the CPU and
//! GPU paths give the same bits.

use std::sync::Arc;

use crate::autograd::record;
use crate::error::{Error, Result};
use crate::gpu::codes::UnaryOp;
use crate::gpu::kernels::{Kernel, UnaryParams};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::common::{elementwise_grid, launch_whole};
use crate::ops::grad::relu_backward;
use crate::ops::op::{check_float, run, Op};
use crate::ops::threads::par_chunks;
use crate::tensor::{HostBytes, Tensor};

/// A seeded, counter-based random stream: element `i` of a draw is a hash of
/// `(seed, offset + i)`, so a kernel computes any element independently and the CPU and GPU
/// give the same stream. Each draw advances `offset` by its element count (like the offset of
/// PyTorch's Philox generator). Not PyTorch's stream: the same seed gives other numbers than
/// `torch.manual_seed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generator {
    seed: u64,
    offset: u64,
}

impl Generator {
    /// A stream seeded with `seed`, at offset 0.
    pub fn new(seed: u64) -> Self {
        Generator { seed, offset: 0 }
    }
    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Elements drawn so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Reserves `n` elements of the stream; returns where they start.
    pub(crate) fn take(&mut self, n: u64) -> u64 {
        let at = self.offset;
        self.offset = self.offset.wrapping_add(n);
        at
    }
}

/// Chris Wellons' lowbias32 hash (mirrored in `unary.wgsl`).
fn mix32(v: u32) -> u32 {
    let mut h = v;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// The 24-bit uniform integer at `counter` of the stream of `seed` (`uniform24` in the shader).
pub(crate) fn uniform24(seed: u64, counter: u64) -> u32 {
    let (lo, hi) = (counter as u32, (counter >> 32) as u32);
    let mut h = mix32(lo ^ seed as u32);
    h = mix32(h ^ hi ^ 0x9e37_79b9);
    h = mix32(h ^ (seed >> 32) as u32);
    h >> 8
}

/// 2⁻²⁴: turns a 24-bit integer into a float in [0, 1) exactly.
const U24: f32 = 1.0 / (1u32 << 24) as f32;

/// Values uniform in `[lo, hi)` of `shape` on `device`, from `generator` (which advances by
/// the element count): the same bits on the CPU and every GPU, computed where they are used.
pub fn uniform(
    shape: &[usize],
    lo: f32,
    hi: f32,
    generator: &mut Generator,
    device: &crate::Device,
) -> Result<Tensor> {
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(Error::invalid(format!(
            "uniform({lo}, {hi}): the bounds must be finite, lo ≤ hi"
        )));
    }
    let zeros = Tensor::zeros(shape, crate::DType::F32, device)?;
    let offset = generator.take(zeros.numel() as u64);
    let u = unary(
        "uniform",
        &zeros,
        Kind::Uniform {
            seed: generator.seed,
            offset,
        },
    )?;
    if (lo, hi) == (0.0, 1.0) {
        return Ok(u);
    }
    // Scaled and shifted by separate ops: each one rounding, the same on every device.
    let scaled = scale(&u, hi - lo)?;
    let shift = Tensor::full(&[1], lo, device)?;
    crate::ops::broadcast_add(&scaled, &shift)
}

/// Standard normal values of `shape` on `device` from `generator`: Box–Muller on the host from
/// the generator's uniform stream (in f64, rounded once), then uploaded — so the same seed gives
/// the same bits on every device (WGSL's `log` and `cos` are not exactly rounded, so the GPU does
/// not compute them).
pub fn normal(
    shape: &[usize],
    generator: &mut Generator,
    device: &crate::Device,
) -> Result<Tensor> {
    let n = crate::tensor::numel_of(shape)?;
    let pairs = n.div_ceil(2) as u64;
    let offset = generator.take(2 * pairs);
    let mut v: Vec<f32> = crate::tensor::try_zeroed_vec(n, "normal values")?;
    for (k, out) in v.chunks_mut(2).enumerate() {
        let c = offset.wrapping_add(2 * k as u64);
        let u1 = (uniform24(generator.seed, c) as f64 + 1.0) / (1u64 << 24) as f64;
        let u2 = uniform24(generator.seed, c.wrapping_add(1)) as f64 / (1u64 << 24) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out[0] = (r * t.cos()) as f32;
        if out.len() > 1 {
            out[1] = (r * t.sin()) as f32;
        }
    }
    Tensor::from_slice(&v, shape)?.to(device)
}

#[derive(Clone, Copy)]
enum Kind {
    Relu,
    Scale(f32),
    /// keep when u24 ≥ threshold, then × scale.
    Dropout {
        seed: u64,
        offset: u64,
        threshold: u32,
        scale: f32,
    },
    /// x + u · 2⁻²⁴ (exact).
    Uniform {
        seed: u64,
        offset: u64,
    },
    /// A math function of `src/ops/math.rs` with its two scalars.
    Math(UnaryOp, f32, f32),
}

struct Unary {
    name: &'static str,
    kind: Kind,
    out: Vec<usize>,
}

/// `op` of the math family applied to every element (see `src/ops/math.rs`).
pub(crate) fn math_unary(
    name: &'static str,
    x: &Tensor,
    op: UnaryOp,
    alpha: f32,
    beta: f32,
) -> Result<Tensor> {
    unary(name, x, Kind::Math(op, alpha, beta))
}

fn unary(name: &'static str, x: &Tensor, kind: Kind) -> Result<Tensor> {
    check_float(name, x, "x")?;
    run(
        &Unary {
            name,
            kind,
            out: x.shape().to_vec(),
        },
        &[x],
        None,
    )
}

/// `torch.relu(x)`: negatives become 0 (NaN stays NaN).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    // A sum not computed yet (`&z + &x` under no gradient): added inside the ReLU's pass.
    if let Some((a, b)) = x.pending_add() {
        return crate::ops::add_relu(&a, &b);
    }
    let y = unary("relu", x, Kind::Relu)?;
    Ok(record("relu", y, &[x], || {
        let x = x.detach();
        Box::new(move |g, _| Ok(vec![Some(relu_backward(g, &x)?)]))
    }))
}

/// `x * alpha` (one rounding per element).
pub fn scale(x: &Tensor, alpha: f32) -> Result<Tensor> {
    let y = unary("scale", x, Kind::Scale(alpha))?;
    Ok(record("scale", y, &[x], || {
        Box::new(move |g, _| Ok(vec![Some(scale(g, alpha)?)]))
    }))
}

/// `F.dropout(x, p, training)`: in training, each element is zeroed with probability `p` and the
/// others multiplied by `1 / (1 - p)` (inverted dropout); otherwise `x` itself. The mask comes
/// from `generator`, which advances by `x.numel()`. The probability of a zero is `p` rounded to
/// a multiple of 2⁻²⁴.
pub fn dropout(x: &Tensor, p: f64, training: bool, generator: &mut Generator) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(format!(
            "dropout probability has to be between 0 and 1, but got {p}"
        )));
    }
    check_float("dropout", x, "x")?;
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let threshold = (p * (1u64 << 24) as f64).round() as u32;
    let scale = if p >= 1.0 {
        0.0
    } else {
        (1.0 / (1.0 - p)) as f32
    };
    let offset = generator.take(x.numel() as u64);
    let kind = Kind::Dropout {
        seed: generator.seed,
        offset,
        threshold,
        scale,
    };
    let y = unary("dropout", x, kind)?;
    // The same stream at the same offset gives the same mask: the gradient is g · mask / (1 - p).
    Ok(record("dropout", y, &[x], || {
        Box::new(move |g, _| Ok(vec![Some(unary("dropout backward", g, kind)?)]))
    }))
}

impl Op for Unary {
    fn name(&self) -> &'static str {
        self.name
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let x = inputs[0].as_f32();
        let kind = self.kind;
        par_chunks(out.as_f32_mut(), |start, chunk| {
            let xs = &x[start..start + chunk.len()];
            match kind {
                Kind::Relu => {
                    for (y, &v) in chunk.iter_mut().zip(xs) {
                        *y = if v < 0.0 { 0.0 } else { v };
                    }
                }
                Kind::Scale(a) => {
                    for (y, &v) in chunk.iter_mut().zip(xs) {
                        *y = v * a;
                    }
                }
                Kind::Uniform { seed, offset } => {
                    for (j, (y, &v)) in chunk.iter_mut().zip(xs).enumerate() {
                        let u = uniform24(seed, offset.wrapping_add((start + j) as u64)) as f32;
                        *y = v + u * U24;
                    }
                }
                Kind::Math(op, a, b) => {
                    for (y, &v) in chunk.iter_mut().zip(xs) {
                        *y = crate::ops::math::cpu(op, v, a, b);
                    }
                }
                Kind::Dropout {
                    seed,
                    offset,
                    threshold,
                    scale,
                } => {
                    for (j, (y, &v)) in chunk.iter_mut().zip(xs).enumerate() {
                        // The GPU adds the element index to the offset in 32-bit words with a
                        // carry into the high word: the same 64-bit sum.
                        let keep =
                            uniform24(seed, offset.wrapping_add((start + j) as u64)) >= threshold;
                        *y = if keep { v * scale } else { 0.0 };
                    }
                }
            }
        });
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let n = self.out.iter().product::<usize>() as u64;
        let (gx, gy, row_width) = elementwise_grid(ctx, self.name, &[inputs[0], out], n)?;
        let mut p = UnaryParams {
            count: n as u32,
            row_width,
            ..Default::default()
        };
        match self.kind {
            Kind::Relu => p.op = UnaryOp::Relu.code(),
            Kind::Math(op, a, b) => {
                p.op = op.code();
                p.alpha = a;
                p.beta = b;
            }
            Kind::Scale(a) => {
                p.op = UnaryOp::Scale.code();
                p.alpha = a;
            }
            Kind::Uniform { seed, offset } => {
                p.op = UnaryOp::Uniform.code();
                p.seed_lo = seed as u32;
                p.seed_hi = (seed >> 32) as u32;
                p.offset_lo = offset as u32;
                p.offset_hi = (offset >> 32) as u32;
            }
            Kind::Dropout {
                seed,
                offset,
                threshold,
                scale,
            } => {
                p.op = UnaryOp::Dropout.code();
                p.alpha = scale;
                p.seed_lo = seed as u32;
                p.seed_hi = (seed >> 32) as u32;
                p.offset_lo = offset as u32;
                p.offset_hi = (offset >> 32) as u32;
                p.threshold = threshold;
            }
        }
        launch_whole(ctx, Kernel::Unary(p), &[inputs[0], out], [gx, gy, 1])
    }
}
