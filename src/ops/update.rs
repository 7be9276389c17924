//! The optimizers' elementwise updates (`adam.wgsl`): Adam's two moments and its step, SGD's
//! momentum buffer and step, in PyTorch's single-tensor order (see [`crate::optim`]). Each
//! launch makes one new tensor; the CPU path computes the same expressions in the same order.
//! `sqrt` in WGSL is not required to be exactly rounded and a GPU may fuse a multiply-add, so the
//! updates are bounded rather than bit-identical across devices: `tests/training.rs` holds 20
//! Adam steps within 3e-8 of PyTorch's weights on the CPU and the GPU (but for the noise-driven
//! key bias the README explains), and `tests/tensor_kinds_training.rs` checks SGD and Adam
//! against their formulas in float32.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::kernels::{AdamParams, Kernel};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::common::{elementwise_grid, launch_whole};
use crate::ops::op::{run, Op};
use crate::ops::threads::par_chunks;
use crate::tensor::{HostBytes, Tensor};

pub(crate) use crate::gpu::codes::Update;

/// The scalars of one update, as float32 (PyTorch casts its Python floats the same way).
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Hyper {
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub weight_decay: f32,
    pub neg_step: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
    pub momentum: f32,
}

struct UpdateOp {
    what: Update,
    h: Hyper,
    out: Vec<usize>,
}

/// One update over `p`, its gradient `g` and the state tensors `m`, `v` (pass `p` for those an
/// update does not read).
pub(crate) fn update(
    what: Update,
    h: Hyper,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
) -> Result<Tensor> {
    for t in [g, m, v] {
        if t.shape() != p.shape() || t.dtype() != p.dtype() {
            return Err(Error::shape(
                "optimizer step",
                format!(
                    "state of shape {:?} ({}) for a parameter {:?}",
                    t.shape(),
                    t.dtype().name(),
                    p.shape()
                ),
            ));
        }
    }
    crate::ops::op::check_float("optimizer step", p, "parameter")?;
    run(
        &UpdateOp {
            what,
            h,
            out: p.shape().to_vec(),
        },
        &[p, g, m, v],
        None,
    )
}

impl Op for UpdateOp {
    fn name(&self) -> &'static str {
        "optimizer step"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let (p, g, m, v) = (
            inputs[0].as_f32(),
            inputs[1].as_f32(),
            inputs[2].as_f32(),
            inputs[3].as_f32(),
        );
        let (h, what) = (self.h, self.what);
        par_chunks(out.as_f32_mut(), |start, chunk| {
            for (j, y) in chunk.iter_mut().enumerate() {
                let i = start + j;
                let mut gv = g[i];
                if h.weight_decay != 0.0 {
                    gv += p[i] * h.weight_decay;
                }
                *y = match what {
                    Update::AdamExpAvg => m[i] + h.one_minus_beta1 * (gv - m[i]),
                    Update::AdamExpAvgSq => v[i] * h.beta2 + (h.one_minus_beta2 * gv) * gv,
                    Update::AdamParam => {
                        let denom = v[i].sqrt() / h.bc2_sqrt + h.eps;
                        p[i] + h.neg_step * (m[i] / denom)
                    }
                    Update::SgdBuffer => m[i] * h.momentum + gv,
                    Update::SgdParamMomentum => p[i] + h.neg_step * m[i],
                    Update::SgdParam => p[i] + h.neg_step * gv,
                };
            }
        });
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let n = self.out.iter().product::<usize>() as u64;
        let mut bufs = inputs.to_vec();
        bufs.push(out);
        let (gx, gy, row_width) = elementwise_grid(ctx, "optimizer step", &bufs, n)?;
        let h = self.h;
        launch_whole(
            ctx,
            Kernel::Adam(AdamParams {
                count: n as u32,
                row_width,
                op: self.what.code(),
                one_minus_beta1: h.one_minus_beta1,
                beta2: h.beta2,
                one_minus_beta2: h.one_minus_beta2,
                weight_decay: h.weight_decay,
                neg_step: h.neg_step,
                bc2_sqrt: h.bc2_sqrt,
                eps: h.eps,
                momentum: h.momentum,
                _pad: 0,
            }),
            &bufs,
            [gx, gy, 1],
        )
    }
}
