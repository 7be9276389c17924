//! Conversions between the float storage formats the kernels take: float32, float16 and
//! bfloat16. The CPU uses the `half` crate; the GPU runs `convert.wgsl`, which does the same on
//! the bits (round to nearest even, overflow to ±inf, subnormals kept, NaN kept quiet), so the
//! two give the same bytes, on every adapter, without the `SHADER_F16` feature. 16-bit values
//! are stored packed, two to a 32-bit word.
//!
//! Every float op takes float16 and bfloat16 through [`run`](crate::ops::op::run): inputs are
//! widened to float32 here (exactly: every half value is a float32), the op computes in
//! float32, and its output is rounded once, here, to the inputs' dtype, as PyTorch's CPU and
//! CUDA kernels accumulate half types in float. Tensors at rest (parameters, buffers, the
//! activations autograd saves, every op's output) take half the memory; the float32 copies an
//! op works on live only while it runs.

use std::sync::Arc;

use half::{bf16, f16, slice::HalfFloatSliceExt};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::codes::Format;
use crate::gpu::kernels::{CastParams, Kernel};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::common::{elementwise_grid, launch_whole};
use crate::ops::op::{run, Op};
use crate::tensor::{HostBytes, Tensor};

/// The dtypes the kernels store floats in.
pub(crate) fn is_kernel_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::BF16)
}

fn format(d: DType) -> Option<Format> {
    match d {
        DType::F32 => Some(Format::F32),
        DType::F16 => Some(Format::F16),
        DType::BF16 => Some(Format::Bf16),
        _ => None,
    }
}

/// `t` widened to float32 with its layout kept — a view stays the same view, of a widened copy
/// of its whole storage — for the ops that read layouts themselves (the matrix products, whose
/// parameters were computed from the view's strides and offset).
pub(crate) fn widen_keeping_layout(t: &Tensor) -> Result<Tensor> {
    if t.is_dense() {
        return cast(t, DType::F32);
    }
    let whole = t.view_of(vec![t.storage_numel()], vec![1], 0);
    let wide = cast(&whole, DType::F32)?;
    Ok(wide.view_of(t.shape().to_vec(), t.strides().to_vec(), t.storage_offset()))
}

struct Cast {
    out: Vec<usize>,
    from: DType,
    to: DType,
}

/// `x` converted between float32, float16 and bfloat16 on its device (no gradient recorded:
/// [`Tensor::to_dtype`] records one).
pub(crate) fn cast(x: &Tensor, to: DType) -> Result<Tensor> {
    if x.dtype() == to {
        return Ok(x.clone());
    }
    if !is_kernel_float(x.dtype()) || !is_kernel_float(to) {
        return Err(Error::Dtype {
            op: format!("cast from {} on the device", x.dtype().name()),
            expected: "float32, float16 or bfloat16, to one of those".into(),
            got: to.name().into(),
        });
    }
    let op = Cast {
        out: x.shape().to_vec(),
        from: x.dtype(),
        to,
    };
    run(&op, &[x], None)
}

impl Op for Cast {
    fn name(&self) -> &'static str {
        "to_dtype"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn out_dtype(&self) -> DType {
        self.to
    }
    fn moves_bits(&self) -> bool {
        true
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        // Host bytes are 8-byte aligned, so they view as any float type without a copy.
        let x = inputs[0].bytes();
        let wide: Vec<f32>;
        let f: &[f32] = match self.from {
            DType::F32 => inputs[0].as_f32(),
            DType::F16 => {
                let h: &[f16] = bytemuck::cast_slice(x);
                wide = h.to_f32_vec();
                &wide
            }
            _ => {
                let h: &[bf16] = bytemuck::cast_slice(x);
                wide = h.to_f32_vec();
                &wide
            }
        };
        let y = out.bytes_mut();
        match self.to {
            DType::F32 => y.copy_from_slice(bytemuck::cast_slice(f)),
            DType::F16 => bytemuck::cast_slice_mut::<u8, f16>(y).convert_from_f32_slice(f),
            _ => bytemuck::cast_slice_mut::<u8, bf16>(y).convert_from_f32_slice(f),
        }
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let (Some(src), Some(dst)) = (format(self.from), format(self.to)) else {
            return Err(Error::internal("cast between non-kernel dtypes"));
        };
        let n = self.out.iter().product::<usize>() as u64;
        let words = if self.to == DType::F32 {
            n
        } else {
            n.div_ceil(2)
        };
        elementwise_grid(ctx, "to_dtype", &[inputs[0], out], n)?;
        let (gx, gy, row_width) = crate::gpu::split::grid(ctx, words)?;
        launch_whole(
            ctx,
            Kernel::Cast(CastParams {
                count: words as u32,
                row_width,
                n: n as u32,
                src: src.code(),
                dst: dst.code(),
                _pad: [0; 3],
            }),
            &[inputs[0], out],
            [gx, gy, 1],
        )
    }
}
