//! `cross_entropy` (PyTorch's `F.cross_entropy(logits, targets)`, mean reduction) and `mean`.
//! Per row as `log_softmax` + `nll_loss`; the mean adds in the row kernels' order (64 strided
//! partial sums, then a tree) on both devices. Bound against PyTorch: 1e-5 relative (tested on
//! the tutorial's first training batch).

use std::sync::Arc;

use crate::autograd::record;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::codes::CrossEntropyOp;
use crate::gpu::kernels::{CountParams, Kernel, RowOpParams};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::common::{
    as_i64, check_dtype, elementwise_grid, launch_rows, launch_whole, row_plan, sum64,
};
use crate::ops::op::{check_float, run, Op};
use crate::tensor::{HostBytes, Tensor};

struct CeRows {
    rows: usize,
    width: usize,
    out: Vec<usize>,
}

/// The sum of `n` values divided by `divisor` (`n`, or the count the values are partial sums
/// of).
struct Mean {
    n: usize,
    divisor: usize,
}

/// `F.cross_entropy(logits, targets)`: logits `[N, C]` float (32, 16 or bf16), targets `[N]` int64 class
/// indices, the mean over rows as a 0-d tensor. A target outside `0..C` is an error on the
/// CPU; on a GPU (which cannot stop mid-kernel) it makes the loss NaN.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let name = "cross_entropy";
    check_float(name, logits, "logits")?;
    check_dtype(name, targets, "targets", DType::I64)?;
    let (rows, width) = match logits.shape() {
        [n, c] => (*n, *c),
        s => {
            return Err(Error::shape(
                name,
                format!("logits must be [N, C] (view [B, S, C] as [B·S, C] first), got {s:?}"),
            ))
        }
    };
    if targets.shape() != [rows] || width == 0 || rows == 0 {
        return Err(Error::shape(
            name,
            format!(
                "targets must be [N] = [{rows}] for logits {:?} with at least one row and class, got {:?}",
                logits.shape(),
                targets.shape()
            ),
        ));
    }
    let per_row = run(
        &CeRows {
            rows,
            width,
            out: vec![rows],
        },
        &[logits, targets],
        None,
    )?;
    let loss = crate::autograd::no_grad(|| mean(&per_row))?;
    Ok(record(name, loss, &[logits, targets], || {
        let (x, t) = (logits.detach(), targets.detach());
        Box::new(move |g, _| Ok(vec![Some(cross_entropy_backward(&x, &t, g)?), None]))
    }))
}

/// The mean of every element, as a 0-d tensor of `x`'s dtype.
pub fn mean(x: &Tensor) -> Result<Tensor> {
    check_float("mean", x, "x")?;
    if x.numel() == 0 {
        return Err(Error::shape("mean", "the mean of an empty tensor"));
    }
    let n = x.numel();
    let y = match crate::ops::common::pieces(1, n) {
        // The pieces' sums in many workgroups, then their mean over all n.
        Some(p) => {
            let parts = crate::autograd::no_grad(|| {
                crate::ops::grad::row_sum(&x.reshape([n])?, p, n / p, false)
            })?;
            run(&Mean { n: p, divisor: n }, &[&parts], None)?
        }
        None => run(&Mean { n, divisor: n }, &[x], None)?,
    };
    Ok(record("mean", y, &[x], || {
        let shape = x.shape().to_vec();
        let n = x.numel();
        Box::new(move |g, _| {
            // Every element gets g / n.
            let ones: Vec<usize> = vec![1; shape.len()];
            let each = crate::ops::expand(&g.reshape(&ones)?, &shape)?;
            // g · (1/n): PyTorch divides; the two agree exactly when n is a power of two and
            // within one rounding otherwise.
            Ok(vec![Some(crate::ops::scale(&each, 1.0 / n as f32)?)])
        })
    }))
}

/// One row of logits against its target, as both directions need it (CPU): the target as an
/// index (an error when out of range), the row's maximum `m` and `log Σ exp(x - m)`, summed in
/// the GPU kernel's order.
pub(crate) fn ce_row(row: &[f32], target: i64, op: &str) -> Result<(usize, f32, f32)> {
    let w = row.len();
    let c = usize::try_from(target)
        .ok()
        .filter(|&c| c < w)
        .ok_or_else(|| {
            Error::invalid(format!(
                "{op}: target {target} is out of range for {w} classes"
            ))
        })?;
    let m = row.iter().fold(-f32::MAX, |m, &v| m.max(v));
    Ok((c, m, sum64(w, |i| (row[i] - m).exp()).ln()))
}

impl Op for CeRows {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let x = inputs[0].as_f32();
        let t = as_i64(inputs[1].bytes());
        let w = self.width;
        for (r, y) in out.as_f32_mut().iter_mut().enumerate() {
            let row = &x[r * w..(r + 1) * w];
            let (c, m, ls) = ce_row(row, t[r], "cross_entropy")?;
            *y = -((row[c] - m) - ls);
        }
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        elementwise_grid(
            ctx,
            "cross_entropy",
            &[inputs[0], inputs[1], out],
            (self.rows * self.width) as u64,
        )?;
        let (grid, short) = row_plan(ctx, "cross_entropy", self.rows, self.width)?;
        launch_whole(
            ctx,
            Kernel::CrossEntropyRows(RowOpParams {
                rows: self.rows as u32,
                width: self.width as u32,
                groups_x: grid[0],
                op: CrossEntropyOp::Loss.code() | (short * CrossEntropyOp::ShortRows.code()),
            }),
            // The gradient binding is unused forward: x stands in.
            &[inputs[0], inputs[1], inputs[0], out],
            grid,
        )
    }
}

impl Op for Mean {
    fn name(&self) -> &'static str {
        "mean"
    }
    fn out_shape(&self) -> &[usize] {
        &[]
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let x = inputs[0].as_f32();
        out.as_f32_mut()[0] = sum64(self.n, |i| x[i]) / self.divisor as f32;
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        elementwise_grid(ctx, "mean", &[inputs[0], out], self.n as u64)?;
        launch_whole(
            ctx,
            Kernel::Mean(CountParams {
                count: self.n as u32,
                _pad: [self.divisor as u32, 0, 0],
            }),
            &[inputs[0], out],
            [1, 1, 1],
        )
    }
}

/// The mean cross entropy's gradient with respect to `logits` [N, C], `g` the loss's gradient:
/// `(softmax(x) - onehot(t)) · g / N` per row, by the forward's kernel in its gradient mode.
pub(crate) fn cross_entropy_backward(
    logits: &Tensor,
    targets: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    let (rows, width) = match logits.shape() {
        [n, c] => (*n, *c),
        s => return Err(Error::internal(format!("cross_entropy backward of {s:?}"))),
    };
    if targets.dtype() != DType::I64 {
        return Err(Error::internal("cross_entropy backward: targets not int64"));
    }
    run(
        &CeBackward {
            rows,
            width,
            out: vec![rows, width],
        },
        &[logits, targets, g],
        None,
    )
}

struct CeBackward {
    rows: usize,
    width: usize,
    out: Vec<usize>,
}

impl Op for CeBackward {
    fn name(&self) -> &'static str {
        "cross_entropy backward"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let w = self.width;
        let x = inputs[0].as_f32();
        let t = as_i64(inputs[1].bytes());
        let gs = inputs[2].as_f32()[0] / self.rows as f32;
        for (r, dx) in out.as_f32_mut().chunks_mut(w).enumerate() {
            let row = &x[r * w..(r + 1) * w];
            let (c, m, ls) = ce_row(row, t[r], "cross_entropy backward")?;
            for i in 0..w {
                let v = ((row[i] - m) - ls).exp() * gs;
                dx[i] = if i == c { v - gs } else { v };
            }
        }
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
                Kernel::CrossEntropyRows(RowOpParams {
                    rows: rows as u32,
                    width: width as u32,
                    groups_x: gx,
                    op: CrossEntropyOp::Grad.code() | (short * CrossEntropyOp::ShortRows.code()),
                })
            },
        )
    }
}
