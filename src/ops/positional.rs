//! The sinusoidal positional-encoding table (PyTorch's float32 formula, correctly rounded).

use std::sync::Arc;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, PeParams};
use crate::gpu::launch::Launch;
use crate::gpu::pool::GpuBuffer;
use crate::gpu::split::{self, Bind};
use crate::gpu::{transfer, GpuContext};
use crate::ops::op::{run, Op};
use crate::ops::threads::par_chunks;
use crate::tensor::{try_zeroed_vec, HostBytes, Tensor};

/// Largest angle (in radians, so also the largest position with `div[0] = 1`) for which the
/// GPU kernel's angle reduction is exact: k · (π/2 pieces) must stay exact in f32 (k < 2^18).
pub const MAX_GPU_POSITION: usize = 411_774;

/// Most hard entries one GPU table records for the host to fix; past it (never seen: about one
/// pair in 30,000 is hard) the whole table is computed on the host and uploaded.
const HARD_CAPACITY: u64 = 1 << 16;

/// `div_term[k] = f32(exp(f32(f32(2k) · f32(-ln(10000) / d_model))))`, exp correctly rounded
/// (computed in f64, rounded once), `k = 0 .. ceil(d_model / 2)`. An impossible `d_model` is an
/// error naming the size.
pub fn div_term(d_model: usize) -> Result<Vec<f32>> {
    let scale = (-(10000f64.ln()) / d_model as f64) as f32;
    let mut v: Vec<f32> = try_zeroed_vec(d_model.div_ceil(2), "the positional div_term")?;
    for (k, x) in v.iter_mut().enumerate() {
        let a = (2 * k) as f32 * scale;
        *x = (a as f64).exp() as f32;
    }
    Ok(v)
}

/// The reference value of `pe[pos, col]` given `div_term`: one f32 multiply, then sin or cos
/// evaluated in f64 and rounded once. `None` when `col` is past the table (`col / 2 ≥
/// div.len()`).
pub fn reference_value(div: &[f32], pos: usize, col: usize) -> Option<f32> {
    let theta = pos as f32 * *div.get(col / 2)?;
    let t = theta as f64;
    Some(
        (if col.is_multiple_of(2) {
            t.sin()
        } else {
            t.cos()
        }) as f32,
    )
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
    max_len
        .checked_mul(d_model)
        .filter(|n| n.checked_mul(4).is_some_and(|b| b <= isize::MAX as usize))
        .ok_or_else(|| Error::OutOfMemory {
            what: format!("a positional table of max_len {max_len} × d_model {d_model}"),
            bytes: max_len as u128 * d_model as u128 * 4,
        })
}

/// The table op: no tensor inputs, `div_term` computed on the host.
struct Table {
    max_len: usize,
    d_model: usize,
    div: Vec<f32>,
    shape: [usize; 2],
    /// On a GPU, the kernel's list of hard pairs: `[count, index…]`, zeroed.
    hard: Option<GpuBuffer>,
}

/// The `[max_len, d_model]` table on `device`: computed on the host for `Device::Cpu`, generated
/// by the `positional_encoding` kernel on a GPU (only `div_term`, d_model/2 values, goes up,
/// plus the few entries the kernel cannot round with certainty, which the host computes; so the
/// two devices give the same bits).
///
/// Natively the GPU path waits for the short list of hard entries; in a browser that wait is
/// an error that points to [`positional_table_async`] (or build the table on `Device::Cpu` and
/// move it with `.to()`, which is exact).
pub fn positional_table(max_len: usize, d_model: usize, device: &Device) -> Result<Tensor> {
    let (t, table) = record_table(max_len, d_model, device)?;
    if let Device::Gpu(g) = device {
        #[cfg(not(target_arch = "wasm32"))]
        pollster::block_on(table.fix_hard_entries(&g.0, &t))?;
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (g, table);
            return Err(Error::invalid(
                "positional_table on a GPU waits for a read-back, which a browser cannot do: \
                 use positional_table_async, or build the table on Device::Cpu and move it",
            ));
        }
    }
    Ok(t)
}

/// [`positional_table`] for every target, the browser included.
pub async fn positional_table_async(
    max_len: usize,
    d_model: usize,
    device: &Device,
) -> Result<Tensor> {
    let (t, table) = record_table(max_len, d_model, device)?;
    if let Device::Gpu(g) = device {
        table.fix_hard_entries(&g.0, &t).await?;
    }
    Ok(t)
}

/// The table recorded on `device` (on a GPU, before its hard entries are fixed).
fn record_table(max_len: usize, d_model: usize, device: &Device) -> Result<(Tensor, Table)> {
    let n = check(max_len, d_model)?;
    if let Device::Gpu(g) = device {
        g.0.check_buffer_size(
            &format!("a positional table of {max_len} × {d_model}"),
            n as u64 * 4,
        )?;
    }
    let div = div_term(d_model)?;
    let hard = match device {
        Device::Gpu(g) => Some(g.0.scoped("positional table", || {
            let pairs = max_len as u64 * d_model.div_ceil(2) as u64;
            let capacity = HARD_CAPACITY
                .min(pairs)
                .min(split::units_per_binding(&g.0, 4, "the hard-entry list")?.saturating_sub(1))
                .max(1);
            GpuBuffer::fresh(&g.0, (capacity + 1) * 4, "wgnn hard entries")
        })?),
        Device::Cpu => None,
    };
    let table = Table {
        max_len,
        d_model,
        div,
        shape: [max_len, d_model],
        hard,
    };
    let t = run(&table, &[], Some(device))?;
    Ok((t, table))
}

impl Op for Table {
    fn name(&self) -> &'static str {
        "positional table"
    }
    fn out_shape(&self) -> &[usize] {
        &self.shape
    }

    fn cpu(&self, _: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let (d, div) = (self.d_model, &self.div);
        par_chunks(out.as_f32_mut(), |start, out| {
            for (j, v) in out.iter_mut().enumerate() {
                let i = start + j;
                *v = reference_value(div, i / d, i % d).unwrap_or(f32::NAN);
            }
        });
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, _: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let (max_len, d_model) = (self.max_len, self.d_model);
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
        split::check_u32_index(
            ctx,
            (max_len * d_model) as u64,
            &format!("a positional table of {max_len} × {d_model}"),
        )?;
        let hard = self
            .hard
            .as_ref()
            .ok_or_else(|| Error::internal("GPU table without its hard-entry list"))?;
        let capacity = hard.len / 4 - 1;
        // div_term goes up with the next submission, before the launches recorded here run.
        let div = GpuBuffer::fresh(ctx, self.div.len() as u64 * 4, "wgnn div_term")?;
        ctx.queue
            .write_buffer(div.buffer(), 0, bytemuck::cast_slice(&self.div));
        let (d, pairs) = (d_model as u64, d_model.div_ceil(2) as u64);
        // Each chunk is whole rows that fit one binding and one 2-D grid.
        let rows_per_binding = split::units_per_binding(ctx, d * 4, "one positional table row")?;
        let max_rows = rows_per_binding.min(split::max_invocations(ctx) / pairs);
        if max_rows == 0 {
            return Err(Error::Limit {
                what: format!("one row of a positional table with d_model {d_model}"),
                requested: pairs,
                limit_name: "max_compute_workgroups_per_dimension (squared, times 256)",
                limit: split::max_invocations(ctx),
                adapter: ctx.describe(),
            });
        }
        let mut launches = Vec::new();
        for (row0, rows) in split::chunks(max_len as u64, max_rows) {
            let count = rows * pairs;
            let (gx, gy, row_width) = split::grid(ctx, count)?;
            let (range, base) = Bind::elements(ctx, out, row0 * d, rows * d, 4);
            launches.push(Launch {
                kernel: Kernel::PositionalEncoding(PeParams {
                    d_model: d_model as u32,
                    pairs: pairs as u32,
                    count: count as u32,
                    row0: row0 as u32,
                    out_base: base,
                    row_width,
                    zero: 0,
                    capacity: capacity as u32,
                }),
                binds: vec![Bind::whole(&div), range, Bind::whole(hard)],
                groups: [gx, gy, 1],
            });
        }
        ctx.record(&launches)
    }
}

impl Table {
    /// Reads the kernel's list of hard pairs and writes their correctly rounded values.
    async fn fix_hard_entries(&self, ctx: &Arc<GpuContext>, table: &Tensor) -> Result<()> {
        let Some(hard) = &self.hard else {
            return Ok(());
        };
        let Some(out) = table.gpu_buffer() else {
            return Err(Error::internal("GPU table without a buffer"));
        };
        let mut got = transfer::download_many_async(ctx, &[(hard, hard.len)]).await?;
        let bytes = got
            .pop()
            .ok_or_else(|| Error::internal("read-back returned nothing"))?;
        let list: &[u32] = bytemuck::cast_slice(&bytes);
        let count = *list.first().unwrap_or(&0) as usize;
        let (d, pairs) = (self.d_model, self.d_model.div_ceil(2));
        if count > list.len() - 1 {
            log::warn!(
                "positional table: {count} hard entries, more than the {} the kernel records; \
                 computing the table on the host",
                list.len() - 1
            );
            let host = run(self, &[], Some(&Device::Cpu))?;
            let bytes = host.to_bytes()?;
            ctx.scoped("positional table", || {
                ctx.queue.write_buffer(out.buffer(), 0, &bytes);
                Ok(())
            })?;
            return Ok(());
        }
        log::debug!("positional table: {count} pair(s) computed on the host");
        ctx.scoped("positional table", || {
            for &i in &list[1..=count] {
                let (pos, k) = (i as usize / pairs, i as usize % pairs);
                let col = 2 * k;
                let cols = if col + 1 < d { 2 } else { 1 };
                let vals: Vec<f32> = (col..col + cols)
                    .filter_map(|c| reference_value(&self.div, pos, c))
                    .collect();
                let at = ((pos * d + col) * 4) as u64;
                ctx.queue
                    .write_buffer(out.buffer(), at, bytemuck::cast_slice(&vals));
            }
            Ok(())
        })
    }
}
