//! The one place that knows how work is cut to fit a device: bindings no larger than
//! `max_storage_buffer_binding_size` (offsets aligned), and dispatch grids within 65,535
//! workgroups per dimension. Every op's GPU path sizes its chunks with these.

use crate::error::{Error, Result};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;

/// Invocations per workgroup in every kernel (`@workgroup_size(256)`).
pub(crate) const WORKGROUP: u32 = 256;

/// A byte range of a buffer, bound as storage.
#[derive(Clone, Copy)]
pub(crate) struct Bind<'a> {
    pub buf: &'a GpuBuffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> Bind<'a> {
    /// The whole logical buffer.
    pub fn whole(buf: &'a GpuBuffer) -> Self {
        Bind {
            buf,
            offset: 0,
            size: buf.len,
        }
    }

    /// The range covering elements `[start, start + len)` of `unit`-byte elements, widened at
    /// the front to the storage offset alignment. Returns the range and the index of `start`
    /// inside it, in elements.
    pub fn elements(
        ctx: &GpuContext,
        buf: &'a GpuBuffer,
        start: u64,
        len: u64,
        unit: u64,
    ) -> (Self, u32) {
        let align = ctx.storage_align();
        let start_b = start * unit;
        let offset = start_b / align * align;
        let end = (start_b + len.max(1) * unit).min(buf.len).max(offset + 4);
        (
            Bind {
                buf,
                offset,
                size: end - offset,
            },
            ((start_b - offset) / unit) as u32,
        )
    }
}

/// How many `unit`-byte elements one binding can hold when its start may be moved back by up to
/// one alignment step: the chunk size for work split past one binding. An error naming the limit
/// when not even one fits (a device opened with a tiny `max_storage_buffer_binding_size`).
pub(crate) fn units_per_binding(ctx: &GpuContext, unit: u64, what: &str) -> Result<u64> {
    let n = ctx.max_binding().saturating_sub(ctx.storage_align()) / unit.max(1);
    if n == 0 {
        return Err(Error::Limit {
            what: format!("{what} ({unit} bytes per element, plus alignment)"),
            requested: unit + ctx.storage_align(),
            limit_name: "max_storage_buffer_binding_size",
            limit: ctx.max_binding(),
            adapter: ctx.describe(),
        });
    }
    Ok(n)
}

/// Checks that a whole buffer can be bound at once.
pub(crate) fn check_whole(ctx: &GpuContext, buf: &GpuBuffer, what: &str) -> Result<()> {
    if buf.len > ctx.max_binding() {
        return Err(Error::Limit {
            what: format!("{what} ({} bytes), bound whole", buf.len),
            requested: buf.len,
            limit_name: "max_storage_buffer_binding_size",
            limit: ctx.max_binding(),
            adapter: ctx.describe(),
        });
    }
    Ok(())
}

/// Kernels index elements with u32: an error naming the limit for larger work.
pub(crate) fn check_u32_index(ctx: &GpuContext, n: u64, what: &str) -> Result<()> {
    if n > u32::MAX as u64 {
        return Err(Error::Limit {
            what: what.to_string(),
            requested: n,
            limit_name: "u32 element index",
            limit: u32::MAX as u64,
            adapter: ctx.describe(),
        });
    }
    Ok(())
}

/// Largest number of workgroups per grid dimension.
pub(crate) fn max_groups(ctx: &GpuContext) -> u64 {
    ctx.limits.max_compute_workgroups_per_dimension.max(1) as u64
}

/// Splits `n` invocations into a 2-D grid of 256-wide workgroups within the per-dimension limit:
/// returns (groups x, groups y, invocations per grid row).
pub(crate) fn grid(ctx: &GpuContext, n: u64) -> Result<(u32, u32, u32)> {
    let max = max_groups(ctx);
    let groups = n.div_ceil(WORKGROUP as u64).max(1);
    let gx = groups.min(max);
    let gy = groups.div_ceil(gx);
    if gy > max {
        return Err(Error::Limit {
            what: format!("a dispatch of {n} invocations"),
            requested: n,
            limit_name: "max_compute_workgroups_per_dimension (squared, times 256)",
            limit: max * max * WORKGROUP as u64,
            adapter: ctx.describe(),
        });
    }
    Ok((gx as u32, gy as u32, (gx * WORKGROUP as u64) as u32))
}

/// Most invocations one 2-D grid covers.
pub(crate) fn max_invocations(ctx: &GpuContext) -> u64 {
    let m = max_groups(ctx);
    m * m * WORKGROUP as u64
}

/// `[start, start + len)` pieces of `0..total`, each at most `chunk` long.
pub(crate) fn chunks(total: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let chunk = chunk.max(1);
    (0..total.div_ceil(chunk)).map(move |i| {
        let s = i * chunk;
        (s, chunk.min(total - s))
    })
}
