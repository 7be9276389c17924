//! `cross_entropy` (PyTorch's `F.cross_entropy(logits, targets)`, mean reduction) and `mean`.
//! Per row as `log_softmax` + `nll_loss`; the mean adds in the row kernels' order (64 strided
//! partial sums, then a tree) on both devices. Bound against PyTorch: 1e-5 relative (tested on
//! the tutorial's first training batch).

use std::sync::Arc;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::kernels::{CountParams, Kernel, RowParams};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::common::{as_i64, check_dtype, elementwise_grid, launch_whole, row_grid, sum64};
use crate::ops::op::{check_f32, run, Op};
use crate::tensor::{HostBytes, Tensor};

struct CeRows {
    rows: usize,
    width: usize,
    out: Vec<usize>,
}

struct Mean {
    n: usize,
}

/// `F.cross_entropy(logits, targets)`: logits `[N, C]` float32, targets `[N]` int64 class
/// indices, the mean over rows as a 0-d tensor. A target outside `0..C` is an error on the
/// CPU; on a GPU (which cannot stop mid-kernel) it makes the loss NaN.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let name = "cross_entropy";
    check_f32(name, logits, "logits")?;
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
    mean(&per_row)
}

/// The mean of every element, as a 0-d float32 tensor.
pub fn mean(x: &Tensor) -> Result<Tensor> {
    check_f32("mean", x, "x")?;
    if x.numel() == 0 {
        return Err(Error::shape("mean", "the mean of an empty tensor"));
    }
    run(&Mean { n: x.numel() }, &[x], None)
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
            let c = usize::try_from(t[r])
                .ok()
                .filter(|&c| c < w)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "cross_entropy: target {} is out of range for {w} classes",
                        t[r]
                    ))
                })?;
            let m = row.iter().fold(-f32::MAX, |m, &v| m.max(v));
            let s = sum64(w, |i| (row[i] - m).exp());
            *y = -((row[c] - m) - s.ln());
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
        let (gx, gy) = row_grid(ctx, "cross_entropy", self.rows as u64)?;
        launch_whole(
            ctx,
            Kernel::CrossEntropyRows(RowParams {
                rows: self.rows as u32,
                width: self.width as u32,
                groups_x: gx,
                _pad: 0,
            }),
            &[inputs[0], inputs[1], out],
            [gx, gy, 1],
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
        out.as_f32_mut()[0] = sum64(self.n, |i| x[i]) / self.n as f32;
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        elementwise_grid(ctx, "mean", &[inputs[0], out], self.n as u64)?;
        launch_whole(
            ctx,
            Kernel::Mean(CountParams {
                count: self.n as u32,
                _pad: [0; 3],
            }),
            &[inputs[0], out],
            [1, 1, 1],
        )
    }
}
