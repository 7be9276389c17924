//! The sinusoidal positional-encoding table (PyTorch's float32 formula, correctly rounded).

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::kernels::{grid, Dispatch, PeParams, Prepared, Range};
use crate::gpu::{transfer, GpuContext};
use crate::ops::threads::par_chunks;
use crate::tensor::{HostBytes, Storage, Tensor};

/// Largest angle (in radians, so also the largest position with `div[0] = 1`) for which the
/// GPU kernel's angle reduction is exact: k · (π/2 pieces) must stay exact in f32 (k < 2^18).
pub const MAX_GPU_POSITION: usize = 411_774;

/// `div_term[k] = f32(exp(f32(f32(2k) · f32(-ln(10000) / d_model))))`, exp correctly rounded
/// (computed in f64, rounded once), `k = 0 .. ceil(d_model / 2)`.
pub fn div_term(d_model: usize) -> Vec<f32> {
    let scale = (-(10000f64.ln()) / d_model as f64) as f32;
    (0..d_model.div_ceil(2))
        .map(|k| {
            let a = (2 * k) as f32 * scale;
            (a as f64).exp() as f32
        })
        .collect()
}

/// The reference value of `pe[pos, col]` given `div_term`: one f32 multiply, then sin or cos
/// evaluated in f64 and rounded once.
pub fn reference_value(div: &[f32], pos: usize, col: usize) -> f32 {
    let theta = pos as f32 * div[col / 2];
    let t = theta as f64;
    (if col.is_multiple_of(2) {
        t.sin()
    } else {
        t.cos()
    }) as f32
}

fn check(max_len: usize, d_model: usize) -> Result<usize> {
    if d_model == 0 {
        return Err(Error::invalid(
            "positional encoding: d_model must be at least 1, got 0",
        ));
    }
    if max_len == 0 {
        return Err(Error::invalid(
            "positional encoding: max_len must be at least 1, got 0",
        ));
    }
    max_len.checked_mul(d_model).ok_or_else(|| {
        Error::invalid(format!(
            "positional encoding: max_len {max_len} × d_model {d_model} overflows"
        ))
    })
}

/// The `[max_len, d_model]` table on `device`: computed on the host for `Device::Cpu`, generated
/// by the `positional_encoding` kernel on a GPU (only `div_term`, d_model/2 values, is uploaded).
pub fn positional_table(max_len: usize, d_model: usize, device: &Device) -> Result<Tensor> {
    let n = check(max_len, d_model)?;
    let div = div_term(d_model);
    match device {
        Device::Cpu => {
            let mut host = HostBytes::zeroed(n * 4);
            par_chunks(host.as_f32_mut(), |start, out| {
                for (j, v) in out.iter_mut().enumerate() {
                    let i = start + j;
                    *v = reference_value(&div, i / d_model, i % d_model);
                }
            });
            Tensor::from_host(host, &[max_len, d_model], DType::F32)
        }
        Device::Gpu(g) => {
            let buffer = table_gpu(&g.0, max_len, d_model, &div)?;
            Ok(Tensor::from_parts(
                vec![max_len, d_model],
                DType::F32,
                Storage::Gpu {
                    buffer,
                    device: g.clone(),
                },
            ))
        }
    }
}

fn table_gpu(
    ctx: &GpuContext,
    max_len: usize,
    d_model: usize,
    div: &[f32],
) -> Result<wgpu::Buffer> {
    if max_len - 1 > MAX_GPU_POSITION {
        return Err(Error::Limit {
            what: format!(
                "a GPU positional table with max_len {max_len} (build it on Device::Cpu and move it with .to(), which is exact)"
            ),
            requested: max_len as u64,
            limit_name: "MAX_GPU_POSITION + 1 (exact f32 angle reduction)",
            limit: MAX_GPU_POSITION as u64 + 1,
            adapter: ctx.describe(),
        });
    }
    let n = (max_len * d_model) as u64;
    if n > u32::MAX as u64 {
        return Err(Error::Limit {
            what: format!("a positional table of {max_len} × {d_model}"),
            requested: n,
            limit_name: "u32 element index",
            limit: u32::MAX as u64,
            adapter: ctx.describe(),
        });
    }
    let mut up = transfer::upload_many(ctx, &[bytemuck::cast_slice(div)])?;
    let div_buf = up
        .pop()
        .ok_or_else(|| Error::invalid("upload returned nothing"))?;
    let out = ctx.scoped("positional table", || {
        transfer::storage_buffer(ctx, n * 4, "wgnn positional table")
    })?;
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let (d, pairs) = (d_model as u64, d_model.div_ceil(2) as u64);
    // Each chunk is whole rows that fit one binding (with room for the alignment slack) and
    // one 2-D grid.
    let max_rows = ((ctx.max_binding() - align) / 4 / d)
        .min(ctx.limits.max_compute_workgroups_per_dimension as u64 * 256 * 1024 / pairs);
    if max_rows == 0 {
        return Err(Error::Limit {
            what: format!("one row of a positional table with d_model {d_model}"),
            requested: d * 4,
            limit_name: "max_storage_buffer_binding_size",
            limit: ctx.max_binding(),
            adapter: ctx.describe(),
        });
    }
    let mut dispatches = Vec::new();
    let mut row0 = 0u64;
    while row0 < max_len as u64 {
        let rows = max_rows.min(max_len as u64 - row0);
        let count = rows * pairs;
        let (gx, gy, row_width) = grid(ctx, count)?;
        let (range, base) = Range::elements(&out, row0 * d, rows * d, align);
        let params = PeParams {
            d_model: d_model as u32,
            pairs: pairs as u32,
            count: count as u32,
            row0: row0 as u32,
            out_base: base,
            row_width,
            zero: 0,
            _pad: 0,
        };
        dispatches.push(Dispatch {
            params: bytemuck::bytes_of(&params).to_vec(),
            storage: vec![Range::whole(&div_buf), range],
            groups: [gx, gy, 1],
        });
        row0 += rows;
    }
    Prepared::new(ctx, "positional_encoding", &dispatches)?.submit(ctx, "positional table", 1)?;
    Ok(out)
}
