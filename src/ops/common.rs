//! Pieces every op file shares: dtype checks, contiguous strides, the rank-8 padding the
//! strided kernels take, one-dispatch-per-element launches, and the CPU helpers that split rows
//! over cores and sum in the GPU kernels' order.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::kernels::Kernel;
use crate::gpu::launch::Launch;
use crate::gpu::pool::GpuBuffer;
use crate::gpu::split::{self, Bind};
use crate::gpu::GpuContext;
use crate::tensor::Tensor;

/// Highest rank the strided kernels take.
pub(crate) const MAX_RANK: usize = 8;

/// Threads that cooperate on one row in the row kernels (`softmax`, `layer_norm`, batch-norm
/// statistics): the CPU paths add in the same order.
pub(crate) use crate::gpu::tuning::ROW_THREADS;

/// `t` must have `dtype`; the error says what the op takes.
pub(crate) fn check_dtype(op: &str, t: &Tensor, which: &str, dtype: DType) -> Result<()> {
    if t.dtype() != dtype {
        return Err(Error::Dtype {
            op: format!("{op} ({which})"),
            expected: dtype.name().into(),
            got: t.dtype().name().into(),
        });
    }
    Ok(())
}

/// Row-major strides of `shape`, in elements.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        st[i] = acc;
        acc *= shape[i];
    }
    st
}

/// A shape and its strides padded with leading 1s / 0s to rank 8, as u32 for the kernels.
pub(crate) fn pad8(op: &str, shape: &[usize], strides: &[usize]) -> Result<([u32; 8], [u32; 8])> {
    if shape.len() > MAX_RANK {
        return Err(Error::shape(
            op,
            format!(
                "rank {} (shape {shape:?}) is more than the {MAX_RANK} dimensions supported",
                shape.len()
            ),
        ));
    }
    let mut s = [1u32; 8];
    let mut st = [0u32; 8];
    let off = MAX_RANK - shape.len();
    for i in 0..shape.len() {
        s[off + i] = u32::try_from(shape[i]).map_err(|_| too_big(op, shape))?;
        st[off + i] = u32::try_from(strides[i]).map_err(|_| too_big(op, shape))?;
    }
    Ok((s, st))
}

fn too_big(op: &str, shape: &[usize]) -> Error {
    Error::shape(op, format!("shape {shape:?} has a dimension beyond u32"))
}

/// The common GPU checks of a one-invocation-per-element kernel: every buffer bound whole fits
/// a binding, `n` fits a u32 index and one 2-D grid. Returns the grid (x, y, row width).
pub(crate) fn elementwise_grid(
    ctx: &GpuContext,
    op: &str,
    buffers: &[&GpuBuffer],
    n: u64,
) -> Result<(u32, u32, u32)> {
    for b in buffers {
        split::check_whole(ctx, b, &format!("a buffer of {op}"))?;
    }
    split::check_u32_index(ctx, n, &format!("{op} of {n} elements"))?;
    split::grid(ctx, n)
}

/// Records one launch of `kernel` over whole buffers.
pub(crate) fn launch_whole(
    ctx: &GpuContext,
    kernel: Kernel,
    buffers: &[&GpuBuffer],
    groups: [u32; 3],
) -> Result<()> {
    let binds = buffers.iter().map(|b| Bind::whole(b)).collect();
    ctx.record(&[Launch {
        kernel,
        binds,
        groups,
    }])
}

/// A 2-D grid of `rows` workgroups (one per row): (groups x, groups y).
pub(crate) fn row_grid(ctx: &GpuContext, op: &str, rows: u64) -> Result<(u32, u32)> {
    let max = split::max_groups(ctx);
    let gx = rows.clamp(1, max);
    let gy = rows.div_ceil(gx).max(1);
    if gy > max {
        return Err(Error::Limit {
            what: format!("{op} over {rows} rows"),
            requested: rows,
            limit_name: "max_compute_workgroups_per_dimension (squared)",
            limit: max * max,
            adapter: ctx.describe(),
        });
    }
    Ok((gx as u32, gy as u32))
}

/// The number of rows of `width` elements in a tensor of `shape` (0 when `width` is 0).
pub(crate) fn rows_of(shape: &[usize], width: usize) -> usize {
    shape
        .iter()
        .product::<usize>()
        .checked_div(width)
        .unwrap_or(0)
}

/// The last dimension of `shape` (1 for a scalar) and the number of rows of it.
pub(crate) fn width_rows(shape: &[usize]) -> (usize, usize) {
    let w = shape.last().copied().unwrap_or(1);
    (w, rows_of(shape, w))
}

/// The sum of `f(i)` for `i < n` in the order of the row kernels: 64 strided partial sums,
/// then a pairwise tree over them.
pub(crate) fn sum64(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut part = [0f32; ROW_THREADS];
    if n <= ROW_THREADS {
        // One element per partial (0 + f(t), as the general loop adds it).
        for (t, p) in part.iter_mut().enumerate().take(n) {
            *p = 0.0 + f(t);
        }
    } else {
        sum_strided(&mut part, n, &f);
    }
    let mut s = ROW_THREADS / 2;
    while s > 0 {
        for t in 0..s {
            part[t] += part[t + s];
        }
        s /= 2;
    }
    part[0]
}

/// `sum64`'s 64 strided partial sums of a row longer than 64.
fn sum_strided(part: &mut [f32; ROW_THREADS], n: usize, f: &impl Fn(usize) -> f32) {
    for (t, p) in part.iter_mut().enumerate() {
        let mut s = 0f32;
        let mut i = t;
        while i < n {
            s += f(i);
            i += ROW_THREADS;
        }
        *p = s;
    }
}

/// int64 indices as i64 values (CPU).
pub(crate) fn as_i64(bytes: &[u8]) -> Vec<i64> {
    bytemuck::pod_collect_to_vec(bytes)
}

/// Records one row kernel over `[rows, width]` (one workgroup per row): the inputs and `out`
/// checked against the binding limits, the 2-D grid of rows, and `kernel(groups_x)` launched
/// over `inputs` then `out`.
pub(crate) fn launch_rows(
    ctx: &GpuContext,
    name: &str,
    inputs: &[&GpuBuffer],
    out: &GpuBuffer,
    (rows, width): (usize, usize),
    has_short_rows: bool,
    kernel: impl FnOnce(u32, u32) -> Kernel,
) -> Result<()> {
    let mut bufs: Vec<&GpuBuffer> = inputs.to_vec();
    bufs.push(out);
    elementwise_grid(ctx, name, &bufs, (rows * width) as u64)?;
    let (grid, short) = if has_short_rows {
        row_plan(ctx, name, rows, width)?
    } else {
        let (gx, gy) = row_grid(ctx, name, rows as u64)?;
        ([gx, gy, 1], 0)
    };
    launch_whole(ctx, kernel(grid[0], short), &bufs, grid)
}

/// The grid of a row kernel over `rows` rows of `width`, and its `short_rows` flag: one
/// workgroup per row, or one invocation per row ([`crate::gpu::tuning::short_rows`]).
pub(crate) fn row_plan(
    ctx: &GpuContext,
    name: &str,
    rows: usize,
    width: usize,
) -> Result<([u32; 3], u32)> {
    let short = crate::gpu::tuning::short_rows(ctx, rows, width);
    let groups = if short {
        rows.div_ceil(ROW_THREADS)
    } else {
        rows
    };
    let (gx, gy) = row_grid(ctx, name, groups as u64)?;
    Ok(([gx, gy, 1], short as u32))
}

/// Pieces a long reduction of `rows` rows of `width` is split into, or `None`: where rows are
/// few (under 64) and long (8192 and more), each row's sum becomes the sum of up to 64 pieces'
/// sums (each piece at least 1024 long, a power of two that divides `width`), so that a loss's
/// mean or a gradient's squared norm runs in many workgroups rather than one. Decided from the
/// sizes alone, so the CPU adds in the same order as every GPU.
pub(crate) fn pieces(rows: usize, width: usize) -> Option<usize> {
    if rows >= 64 || width < 8192 {
        return None;
    }
    (1..=6)
        .rev()
        .map(|e| 1usize << e)
        .find(|&p| width.is_multiple_of(p) && width / p >= 1024)
}
