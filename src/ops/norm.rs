//! Row reductions: `softmax` over the last dimension and `layer_norm` over the last dimensions,
//! plus the attention mask `masked_fill`. On the GPU one 64-invocation workgroup reduces a row;
//! the CPU path adds in the same order (64 strided partial sums, then a tree), so the two differ
//! only through `exp` and `inverseSqrt`, which WGSL does not round exactly. Bound against
//! PyTorch: within 1e-6 relative for softmax, 2e-6 × max|y| for layer_norm (tested).

use std::sync::Arc;

use crate::autograd::{record, refuse_grad, wants};
use crate::error::{Error, Result};
use crate::gpu::codes::LayerNormFlag;
use crate::gpu::kernels::{Kernel, LayerNormParams, MaskedFillParams, RowParams};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::add::broadcast_shape;
use crate::ops::common::{
    contiguous_strides, elementwise_grid, launch_rows, launch_whole, pad8, row_plan, rows_of,
    sum64, width_rows,
};
use crate::ops::grad::{mul, sum_to};
use crate::ops::op::{check_float, run, Op};
use crate::ops::threads::{par_chunks, par_rows};
use crate::tensor::{HostBytes, Tensor};

struct Softmax {
    out: Vec<usize>,
}

/// `F.softmax(x, dim=-1)`: the row maximum is subtracted before `exp`.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    check_float("softmax", x, "x")?;
    if x.shape().is_empty() {
        return Err(Error::shape(
            "softmax",
            "x must have at least one dimension",
        ));
    }
    let y = run(
        &Softmax {
            out: x.shape().to_vec(),
        },
        &[x],
        None,
    )?;
    let saved = y.detach();
    Ok(record("softmax", y, &[x], move || {
        Box::new(move |g, _| Ok(vec![Some(softmax_backward(&saved, g)?)]))
    }))
}

impl Op for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let x = inputs[0].as_f32();
        let (w, _) = width_rows(&self.out);
        par_rows(out.as_f32_mut(), w, |r, y| {
            let row = &x[r * w..(r + 1) * w];
            let m = row.iter().fold(-f32::MAX, |m, &v| m.max(v));
            let s = sum64(w, |i| (row[i] - m).exp());
            let inv = 1.0 / s;
            for (o, &v) in y.iter_mut().zip(row) {
                *o = (v - m).exp() * inv;
            }
        });
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let (w, rows) = width_rows(&self.out);
        let (grid, short) = row_plan(ctx, "softmax", rows, w)?;
        elementwise_grid(ctx, "softmax", &[inputs[0], out], (w * rows) as u64)?;
        launch_whole(
            ctx,
            Kernel::Softmax(RowParams {
                rows: rows as u32,
                width: w as u32,
                groups_x: grid[0],
                short_rows: short,
            }),
            &[inputs[0], out],
            grid,
        )
    }
}

struct LayerNorm {
    out: Vec<usize>,
    width: usize,
    eps: f32,
    /// bit 0: weight, bit 1: bias, bit 3: a residual (inputs[3]) added to x first.
    affine: u32,
}

/// `F.layer_norm(x, normalized_shape, weight, bias, eps)`: each row of the last
/// `normalized_shape.len()` dimensions becomes `(x - mean) / sqrt(var + eps) * weight + bias`
/// (biased variance). `weight` and `bias`, when given, have shape `normalized_shape`.
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    // A sum not computed yet (`&x + &residual` under no gradient): added inside the norm.
    if let Some((a, b)) = x.pending_add() {
        return add_layer_norm(&a, &b, normalized_shape, weight, bias, eps);
    }
    layer_norm_of("layer_norm", x, None, normalized_shape, weight, bias, eps)
}

/// `F.layer_norm(x + residual, …)`, the residual add of a post-norm block fused into the
/// norm's reads (one kernel, the sum never written) where no gradient is recorded; where one
/// is, the two ops, which record their backward. The same bits either way: the sum rounds as
/// the add op's. `residual` has `x`'s shape.
pub fn add_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let records = crate::autograd::is_grad_enabled()
        && [Some(x), Some(residual), weight, bias]
            .into_iter()
            .flatten()
            .any(Tensor::requires_grad);
    if records || x.shape() != residual.shape() {
        let sum = crate::ops::broadcast_add(x, residual)?;
        return layer_norm(&sum, normalized_shape, weight, bias, eps);
    }
    layer_norm_of(
        "add_layer_norm",
        x,
        Some(residual),
        normalized_shape,
        weight,
        bias,
        eps,
    )
}

/// layer_norm (and, with `residual`, add_layer_norm, which records no backward).
fn layer_norm_of(
    name: &'static str,
    x: &Tensor,
    residual: Option<&Tensor>,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    check_float(name, x, "x")?;
    let s = x.shape();
    if normalized_shape.is_empty()
        || normalized_shape.len() > s.len()
        || s[s.len() - normalized_shape.len()..] != *normalized_shape
    {
        return Err(Error::shape(
            name,
            format!("x {s:?} does not end in normalized_shape {normalized_shape:?}"),
        ));
    }
    let mut inputs = vec![x];
    let mut affine = 0;
    for (flag, (t, which)) in [
        (LayerNormFlag::Weight, (weight, "weight")),
        (LayerNormFlag::Bias, (bias, "bias")),
    ] {
        if let Some(t) = t {
            check_float(name, t, which)?;
            if t.shape() != normalized_shape {
                return Err(Error::shape(
                    name,
                    format!(
                        "{which} must have normalized_shape {normalized_shape:?}, got {:?}",
                        t.shape()
                    ),
                ));
            }
            affine |= flag.code();
        }
    }
    // Absent affine tensors are bound as x (never read).
    inputs.push(weight.unwrap_or(x));
    inputs.push(bias.unwrap_or(x));
    let width: usize = normalized_shape.iter().product();
    let op = LayerNorm {
        out: s.to_vec(),
        width,
        eps: eps as f32,
        affine,
    };
    if let Some(r) = residual {
        check_float(name, r, "residual")?;
        if r.shape() != s {
            return Err(Error::shape(
                name,
                format!("residual {:?} must have x's shape {s:?}", r.shape()),
            ));
        }
        let op = LayerNorm {
            affine: affine | LayerNormFlag::Residual.code(),
            ..op
        };
        inputs.push(r);
        return run(&op, &inputs, None);
    }
    let y = run(&op, &inputs, None)?;
    let recorded: Vec<&Tensor> = [Some(x), weight, bias].into_iter().flatten().collect();
    Ok(record(name, y, &recorded, || {
        let (x, w) = (x.detach(), weight.map(Tensor::detach));
        let ns = normalized_shape.to_vec();
        let has_bias = bias.is_some();
        Box::new(move |g, needs| {
            // dx from the row kernel; dweight = Σ g·x̂ and dbias = Σ g over the leading dims.
            let mut grads = vec![wants(needs, 0)
                .then(|| layer_norm_backward(&x, w.as_ref(), g, width, eps as f32))
                .transpose()?];
            if w.is_some() {
                grads.push(
                    wants(needs, 1)
                        .then(|| {
                            let xhat = layer_norm(&x, &ns, None, None, eps)?;
                            sum_to(&mul(g, &xhat)?, &ns)
                        })
                        .transpose()?,
                );
            }
            if has_bias {
                grads.push(
                    wants(needs, grads.len())
                        .then(|| sum_to(g, &ns))
                        .transpose()?,
                );
            }
            Ok(grads)
        })
    }))
}

impl LayerNorm {
    fn residual(&self) -> bool {
        self.affine & LayerNormFlag::Residual.code() != 0
    }
}

impl Op for LayerNorm {
    fn name(&self) -> &'static str {
        if self.residual() {
            "add_layer_norm"
        } else {
            "layer_norm"
        }
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let (x, w, b) = (inputs[0].as_f32(), inputs[1].as_f32(), inputs[2].as_f32());
        let res = inputs
            .get(3)
            .map(|r| r.as_f32())
            .filter(|_| self.residual());
        let width = self.width;
        let n = width as f32;
        par_rows(out.as_f32_mut(), width, |r, y| {
            let row = &x[r * width..(r + 1) * width];
            // Element i: x, or x + residual rounded as the add op rounds it.
            let at = |i: usize| match res {
                Some(res) => row[i] + res[r * width + i],
                None => row[i],
            };
            let mean = sum64(width, at) / n;
            let var = sum64(width, |i| (at(i) - mean) * (at(i) - mean)) / n;
            let rstd = 1.0 / (var + self.eps).sqrt();
            for (i, o) in y.iter_mut().enumerate() {
                let mut t = (at(i) - mean) * rstd;
                if self.affine & 1 != 0 {
                    t *= w[i];
                }
                if self.affine & 2 != 0 {
                    t += b[i];
                }
                *o = t;
            }
        });
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let total = self.out.iter().product::<usize>();
        let rows = total.checked_div(self.width).unwrap_or(0);
        let (grid, short) = row_plan(ctx, self.name(), rows, self.width)?;
        // The residual where there is one, else x again (never read).
        let r = inputs.get(3).copied().unwrap_or(inputs[0]);
        elementwise_grid(
            ctx,
            self.name(),
            &[inputs[0], r, inputs[1], inputs[2], out],
            total as u64,
        )?;
        launch_whole(
            ctx,
            Kernel::LayerNorm(LayerNormParams {
                rows: rows as u32,
                width: self.width as u32,
                groups_x: grid[0],
                affine: self.affine,
                eps: self.eps,
                short_rows: short,
                ..Default::default()
            }),
            &[inputs[0], r, inputs[1], inputs[2], out],
            grid,
        )
    }
}

struct MaskedFill {
    out: Vec<usize>,
    mask_strides: Vec<usize>,
    value: f32,
    /// One byte an element (bool / uint8) rather than float32.
    bytes: bool,
}

/// `x.masked_fill(mask == 0, value)` — the tutorial's attention mask — with a `mask` (a float,
/// bool or uint8; zero masks, anything else keeps) that broadcasts to `x`'s shape (`[S, S]`,
/// `[B, 1, S, S]`, …). Bit-identical on CPU and GPU.
pub fn masked_fill(x: &Tensor, mask: &Tensor, value: f32) -> Result<Tensor> {
    let name = "masked_fill";
    check_float(name, x, "x")?;
    let bytes = match mask.dtype() {
        crate::DType::F32 | crate::DType::F16 | crate::DType::BF16 => false,
        crate::DType::Bool | crate::DType::U8 => true,
        other => {
            return Err(Error::Dtype {
                op: "masked_fill (mask)".into(),
                expected: "float32, bool or uint8 (zero masks, anything else keeps)".into(),
                got: other.name().into(),
            })
        }
    };
    let (xs, ms) = (x.shape(), mask.shape());
    if broadcast_shape(xs, ms).ok().as_deref() != Some(xs) {
        return Err(Error::shape(
            name,
            format!("mask {ms:?} does not broadcast to x {xs:?}"),
        ));
    }
    let st = contiguous_strides(ms);
    let off = xs.len() - ms.len();
    let mut mask_strides = vec![0; xs.len()];
    for i in 0..ms.len() {
        if ms[i] != 1 {
            mask_strides[off + i] = st[i];
        }
    }
    let op = MaskedFill {
        out: xs.to_vec(),
        mask_strides,
        value,
        bytes,
    };
    refuse_grad(name, mask, "mask")?;
    let y = run(&op, &[x, mask], None)?;
    Ok(record(name, y, &[x], || {
        let mask = mask.detach();
        Box::new(move |g, _| {
            // The filled positions did not come from x: their gradient is 0.
            Ok(vec![Some(masked_fill(g, &mask, 0.0)?)])
        })
    }))
}

impl Op for MaskedFill {
    fn name(&self) -> &'static str {
        "masked_fill"
    }
    fn is_operand(&self, i: usize) -> bool {
        i == 0
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let x = inputs[0].as_f32();
        let mb = inputs[1].bytes();
        let zero = |i: usize| -> bool {
            if self.bytes {
                mb[i] == 0
            } else {
                let w = [mb[4 * i], mb[4 * i + 1], mb[4 * i + 2], mb[4 * i + 3]];
                u32::from_le_bytes(w) & 0x7fff_ffff == 0
            }
        };
        let (shape, st) = (&self.out, &self.mask_strides);
        par_chunks(out.as_f32_mut(), |start, chunk| {
            for (j, y) in chunk.iter_mut().enumerate() {
                let i = start + j;
                let (mut o, mut mi) = (i, 0);
                for d in (0..shape.len()).rev() {
                    mi += (o % shape[d]) * st[d];
                    o /= shape[d];
                }
                *y = if zero(mi) { self.value } else { x[i] };
            }
        });
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let n = self.out.iter().product::<usize>() as u64;
        let (gx, gy, row_width) =
            elementwise_grid(ctx, "masked_fill", &[inputs[0], inputs[1], out], n)?;
        let (shape, mask_strides) = pad8("masked_fill", &self.out, &self.mask_strides)?;
        launch_whole(
            ctx,
            Kernel::MaskedFill(MaskedFillParams {
                count: n as u32,
                row_width,
                value: self.value,
                bytes: self.bytes as u32,
                shape,
                mask_strides,
            }),
            &[inputs[0], inputs[1], out],
            [gx, gy, 1],
        )
    }
}

/// softmax's gradient from its output `y` and the output's gradient `g` (last dimension):
/// `dx = y · (g - Σ g·y)` per row (`softmax_backward.wgsl`).
pub(crate) fn softmax_backward(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (width, rows) = width_rows(y.shape());
    run(
        &SoftmaxBackward {
            rows,
            width,
            out: y.shape().to_vec(),
        },
        &[y, g],
        None,
    )
}

struct SoftmaxBackward {
    rows: usize,
    width: usize,
    out: Vec<usize>,
}

impl Op for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax backward"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let w = self.width;
        let (y, g) = (inputs[0].as_f32(), inputs[1].as_f32());
        par_rows(out.as_f32_mut(), w, |r, dx| {
            let (y, g) = (&y[r * w..(r + 1) * w], &g[r * w..(r + 1) * w]);
            let dot = sum64(w, |i| g[i] * y[i]);
            for i in 0..w {
                dx[i] = y[i] * (g[i] - dot);
            }
        });
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let (rows, width) = (self.rows, self.width);
        launch_rows(
            ctx,
            self.name(),
            inputs,
            out,
            (rows, width),
            true,
            |gx, short| {
                Kernel::SoftmaxBackward(RowParams {
                    rows: rows as u32,
                    width: width as u32,
                    groups_x: gx,
                    short_rows: short,
                })
            },
        )
    }
}

/// LayerNorm's gradient with respect to `x` (normalised over the last `width` elements), by the
/// same kernel as the forward with its backward flag (`layer_norm.wgsl`).
pub(crate) fn layer_norm_backward(
    x: &Tensor,
    weight: Option<&Tensor>,
    g: &Tensor,
    width: usize,
    eps: f32,
) -> Result<Tensor> {
    run(
        &LayerNormBackward {
            rows: rows_of(x.shape(), width),
            width,
            eps,
            weight: weight.is_some(),
            out: x.shape().to_vec(),
        },
        &[x, weight.unwrap_or(x), g],
        None,
    )
}

struct LayerNormBackward {
    rows: usize,
    width: usize,
    eps: f32,
    weight: bool,
    out: Vec<usize>,
}

impl Op for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer_norm backward"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let (w, eps, weight) = (self.width, self.eps, self.weight);
        let (x, wt, g) = (inputs[0].as_f32(), inputs[1].as_f32(), inputs[2].as_f32());
        let n = w as f32;
        par_rows(out.as_f32_mut(), w, |r, dx| {
            let (xr, gr) = (&x[r * w..(r + 1) * w], &g[r * w..(r + 1) * w]);
            let h = |i: usize| if weight { gr[i] * wt[i] } else { gr[i] };
            let mean = sum64(w, |i| xr[i]) / n;
            let var = sum64(w, |i| (xr[i] - mean) * (xr[i] - mean)) / n;
            let rstd = 1.0 / (var + eps).sqrt();
            let mh = sum64(w, h) / n;
            let mhx = sum64(w, |i| h(i) * ((xr[i] - mean) * rstd)) / n;
            for i in 0..w {
                let xh = (xr[i] - mean) * rstd;
                dx[i] = rstd * ((h(i) - mh) - xh * mhx);
            }
        });
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let affine = if self.weight {
            LayerNormFlag::Weight.code()
        } else {
            0
        } | LayerNormFlag::Backward.code();
        let (rows, width, eps) = (self.rows, self.width, self.eps);
        // x, (no residual: x again), weight, g.
        launch_rows(
            ctx,
            self.name(),
            &[inputs[0], inputs[0], inputs[1], inputs[2]],
            out,
            (rows, width),
            true,
            |gx, short| {
                Kernel::LayerNorm(LayerNormParams {
                    rows: rows as u32,
                    width: width as u32,
                    groups_x: gx,
                    affine,
                    eps,
                    short_rows: short,
                    _pad: [0; 2],
                })
            },
        )
    }
}
