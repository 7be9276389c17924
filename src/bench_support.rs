//! Hooks for `examples/bench.rs`: the kernels with their bind groups built once, so the bench
//! times the GPU work and not the setup. Not part of the API.

use crate::device::GpuDevice;
use crate::error::{Error, Result};
use crate::ops::threads::par_chunks;
use crate::ops::PreparedAdd;
use crate::tensor::Tensor;

/// A prepared row-broadcast add `y = x + t[..row]` over `rows` rows.
pub struct GpuAdd(PreparedAdd);

/// Prepares `y = x + t[..row]` (all three on `g`).
pub fn prepare_rows_add(
    g: &GpuDevice,
    x: &Tensor,
    t: &Tensor,
    y: &Tensor,
    rows: usize,
    row: usize,
) -> Result<GpuAdd> {
    Ok(GpuAdd(PreparedAdd::rows(g, x, t, y, rows, row)?))
}

impl GpuAdd {
    /// Runs the add `repeats` times in one submission and waits.
    pub fn run(&self, repeats: usize) -> Result<()> {
        self.0.run(repeats)
    }
}

/// Copies `src` into `dst` with `copy_buffer_to_buffer`, `repeats` times in one submission.
pub fn gpu_copy(g: &GpuDevice, src: &Tensor, dst: &Tensor, repeats: usize) -> Result<()> {
    let ctx = &g.0;
    let (Some(s), Some(d)) = (src.wgpu_buffer(), dst.wgpu_buffer()) else {
        return Err(Error::invalid("gpu_copy needs GPU tensors"));
    };
    let size = s.size().min(d.size());
    let cmd = ctx.scoped("bench copy", || {
        let mut e = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("bench copy"),
            });
        for _ in 0..repeats {
            e.copy_buffer_to_buffer(s, 0, d, 0, size);
        }
        Ok(e.finish())
    })?;
    let idx = ctx.submit("bench copy", [cmd])?;
    ctx.wait("bench copy", Some(idx))
}

/// The CPU add of `PositionalEncoding::forward` on slices: `y[r*row+i] = x[r*row+i] + t[i]`.
pub fn cpu_add_rows(x: &[f32], t: &[f32], y: &mut [f32]) {
    crate::ops::add_rows_into(x, t, y)
}

/// `y.copy_from_slice(x)` split over the same threads as the CPU add.
pub fn cpu_copy(x: &[f32], y: &mut [f32]) {
    par_chunks(y, |start, c| c.copy_from_slice(&x[start..start + c.len()]));
}
