//! Batch normalisation: per-channel batch statistics, the normalisation itself, and the update
//! of the running statistics and step counter — all on the device of the input, so a train-mode
//! forward on a GPU never reads anything back. `BatchNorm1d` composes these.

use std::sync::Arc;

use crate::autograd::{record, refuse_grad, wants};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::codes::BatchNormFlag;
use crate::gpu::kernels::{BnParams, BnRunningParams, BnStatsParams, CountParams, Kernel};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::split;
use crate::gpu::GpuContext;
use crate::ops::common::{as_i64, check_dtype, elementwise_grid, launch_whole, sum64};
use crate::ops::grad::{mul, sum_to};
use crate::ops::op::{check_float, run, Op};
use crate::tensor::{HostBytes, Tensor};

/// `(n, channels, inner)` of a batch-norm input `[N, C]`, `[N, C, L]` or `[N, C, H, W]`.
pub(crate) fn bn_dims(name: &str, x: &Tensor) -> Result<(usize, usize, usize)> {
    match x.shape() {
        [n, c] => Ok((*n, *c, 1)),
        [n, c, l] => Ok((*n, *c, *l)),
        [n, c, h, w] => Ok((*n, *c, h * w)),
        s => Err(Error::shape(
            name,
            format!("expected 2D, 3D or 4D input [N, C], [N, C, L] or [N, C, H, W], got {s:?}"),
        )),
    }
}

enum Kind {
    /// x → [2, C]: mean, biased variance.
    Stats,
    /// x, mean source, var source, weight, bias → y.
    Apply {
        mean_base: usize,
        var_base: usize,
        eps: f32,
        affine: bool,
        relu: bool,
    },
    /// running, stats, counter → new running.
    Running {
        stat_base: usize,
        momentum: Option<f32>,
        unbias: f32,
    },
    /// int64 + 1.
    Increment,
    /// x, mean source, var source, weight, g, sums [2, C] (Σ g·x̂ ; Σ g) → dx.
    Backward {
        mean_base: usize,
        var_base: usize,
        eps: f32,
        weight: bool,
        batch: bool,
    },
}

struct Bn {
    name: &'static str,
    kind: Kind,
    dims: (usize, usize, usize),
    out: Vec<usize>,
}

/// Per-channel batch mean and biased variance of `x` (`[N, C]` or `[N, C, L]`) as `[2, C]`.
pub(crate) fn batch_stats(x: &Tensor) -> Result<Tensor> {
    let name = "batch_norm";
    check_float(name, x, "input")?;
    let dims = bn_dims(name, x)?;
    let op = Bn {
        name,
        kind: Kind::Stats,
        dims,
        out: vec![2, dims.1],
    };
    run(&op, &[x], None)
}

/// Normalises `x` with the per-channel statistics `mean[mean_base..]`, `var[var_base..]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn normalize(
    x: &Tensor,
    mean: (&Tensor, usize),
    var: (&Tensor, usize),
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    normalize_with(x, mean, var, weight, bias, eps, false)
}

/// [`normalize`], with a ReLU on the result when `relu`.
#[allow(clippy::too_many_arguments)]
fn normalize_with(
    x: &Tensor,
    mean: (&Tensor, usize),
    var: (&Tensor, usize),
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let name = "batch_norm";
    check_float(name, x, "input")?;
    let dims = bn_dims(name, x)?;
    let c = dims.1;
    for (t, base, which) in [
        (Some(mean.0), mean.1, "mean"),
        (Some(var.0), var.1, "var"),
        (weight, 0, "weight"),
        (bias, 0, "bias"),
    ] {
        if let Some(t) = t {
            check_float(name, t, which)?;
            if t.numel() < base + c {
                return Err(Error::shape(
                    name,
                    format!(
                        "{which} {:?} has fewer than the {c} channels of input {:?}",
                        t.shape(),
                        x.shape()
                    ),
                ));
            }
        }
    }
    let affine = match (weight, bias) {
        (Some(w), Some(b)) => Some((w, b)),
        (None, None) => None,
        _ => {
            return Err(Error::invalid(
                "batch_norm: weight and bias are both given or both absent",
            ))
        }
    };
    let op = Bn {
        name,
        kind: Kind::Apply {
            mean_base: mean.1,
            var_base: var.1,
            eps: eps as f32,
            affine: affine.is_some(),
            relu,
        },
        dims,
        out: x.shape().to_vec(),
    };
    let (w, b) = affine.unwrap_or((x, x));
    run(&op, &[x, mean.0, var.0, w, b], None)
}

/// Records batch norm's node on its output `y`: `batch` when `mean` / `var` are the batch's own
/// statistics (training: the gradient flows through them too), else given statistics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_batch_norm(
    y: Tensor,
    x: &Tensor,
    mean: (&Tensor, usize),
    var: (&Tensor, usize),
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    batch: bool,
) -> Result<Tensor> {
    let dims = bn_dims("batch_norm", x)?;
    if !batch {
        refuse_grad("batch_norm", mean.0, "running mean")?;
        refuse_grad("batch_norm", var.0, "running variance")?;
    }
    let inputs: Vec<&Tensor> = [Some(x), weight, bias].into_iter().flatten().collect();
    Ok(record("batch_norm", y, &inputs, || {
        let (x, w) = (x.detach(), weight.map(Tensor::detach));
        let (mt, mb, vt, vb) = (mean.0.detach(), mean.1, var.0.detach(), var.1);
        let has_bias = bias.is_some();
        Box::new(move |g, needs| {
            let (_, c, _) = dims;
            // Per-channel sums over the batch (and length) dimensions.
            let per_channel = |t: &Tensor| -> Result<Tensor> {
                match x.shape().len() {
                    2 => sum_to(t, &[c]),
                    3 => sum_to(t, &[c, 1])?.reshape([c]),
                    _ => sum_to(t, &[c, 1, 1])?.reshape([c]),
                }
            };
            // Σ g·x̂ (the weight's gradient) and Σ g (the bias's) per channel: wanted by the
            // weight and the bias, and by dx when the statistics are the batch's own.
            let sums_for_dx = batch && wants(needs, 0);
            let dw = (sums_for_dx || (w.is_some() && wants(needs, 1)))
                .then(|| {
                    let xhat = normalize(&x, (&mt, mb), (&vt, vb), None, None, eps)?;
                    per_channel(&mul(g, &xhat)?)
                })
                .transpose()?;
            let bias_at = 1 + w.is_some() as usize;
            let db = (sums_for_dx || (has_bias && wants(needs, bias_at)))
                .then(|| per_channel(g))
                .transpose()?;
            let dx = if wants(needs, 0) {
                let sums = match (&dw, &db) {
                    (Some(dw), Some(db)) if batch => crate::ops::stack(&[dw, db], 0)?,
                    // Given statistics: dx = w·rstd·g needs no sums (g stands in, unread).
                    _ => g.clone(),
                };
                let op = Bn {
                    name: "batch_norm backward",
                    kind: Kind::Backward {
                        mean_base: mb,
                        var_base: vb,
                        eps: eps as f32,
                        weight: w.is_some(),
                        batch,
                    },
                    dims,
                    out: x.shape().to_vec(),
                };
                let wt = w.as_ref().unwrap_or(&x);
                Some(run(&op, &[&x, &mt, &vt, wt, g, &sums], None)?)
            } else {
                None
            };
            let mut grads = vec![dx];
            if w.is_some() {
                grads.push(dw.filter(|_| wants(needs, 1)));
            }
            if has_bias {
                grads.push(db.filter(|_| wants(needs, bias_at)));
            }
            Ok(grads)
        })
    }))
}

/// `F.batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=eps)`: `x`
/// (`[N, C]`, `[N, C, L]` or `[N, C, H, W]`) normalised with the given per-channel statistics.
pub fn batch_norm(
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let y = normalize(x, (mean, 0), (var, 0), weight, bias, eps)?;
    record_batch_norm(y, x, (mean, 0), (var, 0), weight, bias, eps, false)
}

/// `F.relu(F.batch_norm(x, running_mean, running_var, weight, bias, training=False, eps))` in
/// one pass, where no gradient is recorded (eval-mode inference, as a ResNet runs BatchNorm
/// then ReLU); where one is, the two ops, which record their backward. The same bits either
/// way.
pub fn batch_norm_relu(
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let records = crate::autograd::is_grad_enabled()
        && [Some(x), weight, bias]
            .into_iter()
            .flatten()
            .any(|t| t.requires_grad());
    if records {
        return crate::ops::relu(&batch_norm(x, mean, var, weight, bias, eps)?);
    }
    normalize_with(x, (mean, 0), (var, 0), weight, bias, eps, true)
}

/// `(1 - f) · running + f · stats[stat_base..] · unbias`, with `f` the momentum or, for
/// `None`, `1 / counter` (the cumulative average; `counter` already counts this step).
pub(crate) fn running_update(
    running: &Tensor,
    stats: &Tensor,
    stat_base: usize,
    counter: &Tensor,
    momentum: Option<f64>,
    unbias: f64,
) -> Result<Tensor> {
    let name = "batch_norm running statistics";
    check_float(name, running, "running statistic")?;
    check_dtype(name, counter, "num_batches_tracked", DType::I64)?;
    let c = running.numel();
    if stats.numel() < stat_base + c || counter.numel() != 1 {
        return Err(Error::shape(
            name,
            format!(
                "running statistic {:?}, batch statistics {:?} and counter {:?} do not fit",
                running.shape(),
                stats.shape(),
                counter.shape()
            ),
        ));
    }
    let op = Bn {
        name,
        kind: Kind::Running {
            stat_base,
            momentum: momentum.map(|m| m as f32),
            unbias: unbias as f32,
        },
        dims: (1, c, 1),
        out: running.shape().to_vec(),
    };
    run(&op, &[running, stats, counter], None)
}

/// `counter + 1` for an int64 tensor, on its device.
pub(crate) fn increment(counter: &Tensor) -> Result<Tensor> {
    let name = "increment";
    check_dtype(name, counter, "counter", DType::I64)?;
    let op = Bn {
        name,
        kind: Kind::Increment,
        dims: (counter.numel(), 1, 1),
        out: counter.shape().to_vec(),
    };
    run(&op, &[counter], None)
}

impl Bn {
    /// The params and grid of the one-invocation-per-element kernels (`batch_norm.wgsl` and
    /// `batch_norm_backward.wgsl`, which share their `Params`).
    fn per_element(
        &self,
        ctx: &GpuContext,
        bufs: &[&GpuBuffer],
        mean_base: usize,
        var_base: usize,
        eps: f32,
        affine: u32,
    ) -> Result<(BnParams, [u32; 3])> {
        let (n, c, l) = self.dims;
        let u = |v: usize| {
            u32::try_from(v).map_err(|_| Error::shape(self.name, format!("size {v} beyond u32")))
        };
        let total = (n * c * l) as u64;
        let (gx, gy, row_width) = elementwise_grid(ctx, self.name, bufs, total)?;
        let p = BnParams {
            count: total as u32,
            row_width,
            channels: u(c)?,
            inner: u(l)?,
            mean_base: u(mean_base)?,
            var_base: u(var_base)?,
            affine,
            eps,
        };
        Ok((p, [gx, gy, 1]))
    }
}

impl Op for Bn {
    fn name(&self) -> &'static str {
        self.name
    }
    /// The result takes the input's dtype (or the running statistic's), whatever the
    /// statistics' and weights' (as PyTorch's batch_norm of a half input with float stats).
    fn is_operand(&self, i: usize) -> bool {
        i == 0
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn out_dtype(&self) -> DType {
        match self.kind {
            Kind::Increment => DType::I64,
            _ => DType::F32,
        }
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let (n, c, l) = self.dims;
        match self.kind {
            Kind::Stats => {
                let x = inputs[0].as_f32();
                let y = out.as_f32_mut();
                let total = n * l;
                let at = |ch: usize, j: usize| x[((j / l) * c + ch) * l + j % l];
                for ch in 0..c {
                    let mean = sum64(total, |j| at(ch, j)) / total as f32;
                    let var = sum64(total, |j| {
                        let d = at(ch, j) - mean;
                        d * d
                    }) / total as f32;
                    y[ch] = mean;
                    y[c + ch] = var;
                }
            }
            Kind::Apply {
                mean_base,
                var_base,
                eps,
                affine,
                relu,
            } => {
                let x = inputs[0].as_f32();
                let (m, v) = (inputs[1].as_f32(), inputs[2].as_f32());
                let (w, b) = (inputs[3].as_f32(), inputs[4].as_f32());
                // Per channel once: the same values as per element, so the same bits.
                let rstd: Vec<f32> = (0..c)
                    .map(|ch| 1.0 / (v[var_base + ch] + eps).sqrt())
                    .collect();
                // One plane (image, channel) of `l` elements at a time.
                crate::ops::threads::par_rows(out.as_f32_mut(), l, |row, ys| {
                    let ch = row % c;
                    let (mean, r) = (m[mean_base + ch], rstd[ch]);
                    let xs = &x[row * l..][..l];
                    let (wc, bc) = if affine { (w[ch], b[ch]) } else { (1.0, 0.0) };
                    let f = |v: f32| {
                        let t = (v - mean) * r;
                        if affine {
                            t * wc + bc
                        } else {
                            t
                        }
                    };
                    // The ReLU in the same pass (a select: NaN stays NaN, as `relu`'s).
                    if relu {
                        for (y, &v) in ys.iter_mut().zip(xs) {
                            let t = f(v);
                            *y = if t < 0.0 { 0.0 } else { t };
                        }
                    } else {
                        for (y, &v) in ys.iter_mut().zip(xs) {
                            *y = f(v);
                        }
                    }
                });
            }
            Kind::Backward {
                mean_base,
                var_base,
                eps,
                weight,
                batch,
            } => {
                let x = inputs[0].as_f32();
                let (m, v, w) = (inputs[1].as_f32(), inputs[2].as_f32(), inputs[3].as_f32());
                let (g, sums) = (inputs[4].as_f32(), inputs[5].as_f32());
                let count = (n * l) as f32;
                for (i, dx) in out.as_f32_mut().iter_mut().enumerate() {
                    let ch = (i / l) % c;
                    let rstd = 1.0 / (v[var_base + ch] + eps).sqrt();
                    let scale = if weight { w[ch] * rstd } else { rstd };
                    let mut t = g[i];
                    if batch {
                        let xh = (x[i] - m[mean_base + ch]) * rstd;
                        t = (t - sums[c + ch] / count) - xh * (sums[ch] / count);
                    }
                    *dx = scale * t;
                }
            }
            Kind::Running {
                stat_base,
                momentum,
                unbias,
            } => {
                let (r, s) = (inputs[0].as_f32(), inputs[1].as_f32());
                let count = as_i64(inputs[2].bytes())[0];
                let f = momentum.unwrap_or(1.0 / count as f32);
                for (ch, y) in out.as_f32_mut().iter_mut().enumerate() {
                    *y = (1.0 - f) * r[ch] + f * (s[stat_base + ch] * unbias);
                }
            }
            Kind::Increment => {
                let v: Vec<i64> = as_i64(inputs[0].bytes())
                    .into_iter()
                    .map(|v| v.wrapping_add(1))
                    .collect();
                out.bytes_mut().copy_from_slice(bytemuck::cast_slice(&v));
            }
        }
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let (n, c, l) = self.dims;
        let u = |v: usize| {
            u32::try_from(v).map_err(|_| Error::shape(self.name, format!("size {v} beyond u32")))
        };
        let mut bufs: Vec<&GpuBuffer> = inputs.to_vec();
        bufs.push(out);
        match self.kind {
            Kind::Stats => {
                elementwise_grid(ctx, self.name, &bufs, (n * c * l) as u64)?;
                if c as u64 > split::max_groups(ctx) {
                    return Err(Error::Limit {
                        what: format!("batch statistics of {c} channels"),
                        requested: c as u64,
                        limit_name: "max_compute_workgroups_per_dimension",
                        limit: split::max_groups(ctx),
                        adapter: ctx.describe(),
                    });
                }
                let p = BnStatsParams {
                    n: u(n)?,
                    channels: u(c)?,
                    inner: u(l)?,
                    _pad: 0,
                };
                launch_whole(ctx, Kernel::BatchNormStats(p), &bufs, [c as u32, 1, 1])
            }
            Kind::Apply {
                mean_base,
                var_base,
                eps,
                affine,
                relu,
            } => {
                let flag = |on: bool, f: BatchNormFlag| if on { f.code() } else { 0 };
                let bits = flag(affine, BatchNormFlag::Weight) | flag(relu, BatchNormFlag::Relu);
                let (p, groups) = self.per_element(ctx, &bufs, mean_base, var_base, eps, bits)?;
                launch_whole(ctx, Kernel::BatchNorm(p), &bufs, groups)
            }
            Kind::Backward {
                mean_base,
                var_base,
                eps,
                weight,
                batch,
            } => {
                let flag = |on: bool, f: BatchNormFlag| if on { f.code() } else { 0 };
                let bits =
                    flag(weight, BatchNormFlag::Weight) | flag(batch, BatchNormFlag::BatchStats);
                let (p, groups) = self.per_element(ctx, &bufs, mean_base, var_base, eps, bits)?;
                launch_whole(ctx, Kernel::BatchNormBackward(p), &bufs, groups)
            }
            Kind::Running {
                stat_base,
                momentum,
                unbias,
            } => {
                let (gx, gy, _) = elementwise_grid(ctx, self.name, &bufs, c as u64)?;
                if gy > 1 {
                    return Err(Error::shape(
                        self.name,
                        format!("{c} channels are more than one row of workgroups covers"),
                    ));
                }
                let p = BnRunningParams {
                    channels: u(c)?,
                    stat_base: u(stat_base)?,
                    cumulative: momentum.is_none() as u32,
                    momentum: momentum.unwrap_or(0.0),
                    unbias,
                    _pad: [0; 3],
                };
                launch_whole(ctx, Kernel::BatchNormRunning(p), &bufs, [gx, 1, 1])
            }
            Kind::Increment => {
                let (gx, _, _) = elementwise_grid(ctx, self.name, &bufs, n as u64)?;
                let p = CountParams {
                    count: u(n)?,
                    _pad: [0; 3],
                };
                launch_whole(ctx, Kernel::AddScalarI64(p), &bufs, [gx, 1, 1])
            }
        }
    }
}
