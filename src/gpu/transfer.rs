//! Transfers: many tensors go up in one staging copy and one submission; read-backs wait with a
//! bound.

use std::sync::Arc;

use crate::error::{Error, GpuErrorKind, Result};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;

/// Bytes a device buffer for `len` bytes occupies: copies move whole 4-byte words, and wgpu
/// refuses zero-sized bindings.
pub(crate) fn padded(len: u64) -> u64 {
    len.div_ceil(4).max(1) * 4
}

pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Groups consecutive pieces so that each group's total (each piece padded) fits in one buffer.
fn groups(sizes: &[u64], max: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut total = 0u64;
    for (i, &s) in sizes.iter().enumerate() {
        let p = padded(s);
        if i > start && total + p > max {
            out.push(start..i);
            start = i;
            total = 0;
        }
        total += p;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

fn map_error(op: &str, ctx: &GpuContext, e: impl std::fmt::Display) -> Error {
    Error::Gpu {
        op: op.into(),
        adapter: ctx.describe(),
        kind: GpuErrorKind::Other,
        message: e.to_string(),
    }
}

/// Uploads every slice into a new storage buffer: one staging buffer (more only past
/// `max_buffer_size`), one command encoder, one queue submission (after any recorded ops).
pub(crate) fn upload_many(ctx: &Arc<GpuContext>, datas: &[&[u8]]) -> Result<Vec<GpuBuffer>> {
    let op = "upload";
    let sizes: Vec<u64> = datas.iter().map(|d| d.len() as u64).collect();
    for &s in &sizes {
        ctx.check_buffer_size(&format!("a tensor of {s} bytes"), padded(s))?;
    }
    let dsts = ctx.scoped(op, || {
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgnn upload"),
            });
        let mut dsts = Vec::with_capacity(datas.len());
        for g in groups(&sizes, ctx.limits.max_buffer_size) {
            let total: u64 = sizes[g.clone()].iter().map(|&s| padded(s)).sum();
            let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgnn staging"),
                size: total,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            });
            {
                let mut view = staging
                    .get_mapped_range_mut(..)
                    .map_err(|e| map_error(op, ctx, e))?;
                let mut off = 0usize;
                for d in &datas[g.clone()] {
                    if !d.is_empty() {
                        view.slice(off..off + d.len()).copy_from_slice(d);
                    }
                    off += padded(d.len() as u64) as usize;
                }
            }
            staging.unmap();
            let mut off = 0u64;
            for &s in &sizes[g] {
                let dst = GpuBuffer::fresh(ctx, s, "wgnn tensor")?;
                if s > 0 {
                    encoder.copy_buffer_to_buffer(&staging, off, dst.buffer(), 0, padded(s));
                }
                off += padded(s);
                dsts.push(dst);
            }
        }
        ctx.submit_unscoped([encoder.finish()]);
        Ok(dsts)
    })?;
    Ok(dsts)
}

/// Reads device buffers back to host bytes: one read-back buffer per `max_buffer_size`, one
/// submission (recorded ops first), one bounded wait. The blocking form of
/// [`download_many_async`], native only.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn download_many(ctx: &GpuContext, srcs: &[(&GpuBuffer, u64)]) -> Result<Vec<Vec<u8>>> {
    pollster::block_on(download_many_async(ctx, srcs))
}

/// In a browser a blocking read-back is an error that says what to use instead.
#[cfg(target_arch = "wasm32")]
pub(crate) fn download_many(ctx: &GpuContext, srcs: &[(&GpuBuffer, u64)]) -> Result<Vec<Vec<u8>>> {
    let _ = (ctx, srcs);
    Err(Error::invalid(
        "this reads GPU data back and waits for it, which a browser cannot do: use the async \
         forms (to_vec_async, to_bytes_async, item_async), or the CPU device",
    ))
}

/// The read-back itself, for every target: natively its waits are bounded blocking waits (so
/// `pollster` runs it to the end in one go); in a browser they are awaits on wgpu's callbacks,
/// and errors recorded by earlier ops are reported here, naming their op.
pub(crate) async fn download_many_async(
    ctx: &GpuContext,
    srcs: &[(&GpuBuffer, u64)],
) -> Result<Vec<Vec<u8>>> {
    let op = "read back";
    let sizes: Vec<u64> = srcs.iter().map(|s| s.1).collect();
    let gs = groups(&sizes, ctx.limits.max_buffer_size);
    let (readbacks, idx) = ctx.scoped(op, || {
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgnn read back"),
            });
        let mut readbacks = Vec::new();
        for g in &gs {
            let total: u64 = sizes[g.clone()].iter().map(|&s| padded(s)).sum();
            let rb = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgnn read-back"),
                size: total,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut off = 0;
            for &(src, len) in &srcs[g.clone()] {
                if len > 0 {
                    encoder.copy_buffer_to_buffer(src.buffer(), 0, &rb, off, padded(len));
                }
                off += padded(len);
            }
            readbacks.push(rb);
        }
        let idx = ctx.submit_unscoped([encoder.finish()]);
        Ok((readbacks, idx))
    })?;
    // Each mapping reports through a signal. Natively the callback runs in whichever thread's
    // poll sees the copy finish: with several threads on one device that may be another
    // thread, still inside its poll when ours returns, so the result is awaited, not just
    // looked at.
    let mut results = Vec::with_capacity(readbacks.len());
    ctx.scoped(op, || {
        for rb in &readbacks {
            let (tx, rx) = crate::gpu::signal::signal();
            rb.map_async(wgpu::MapMode::Read, .., move |r| tx.set(r));
            results.push(rx);
        }
        Ok(())
    })?;
    ctx.wait_async(op, Some(idx)).await?;
    let mut out = Vec::with_capacity(srcs.len());
    for (rb, (rx, g)) in readbacks.iter().zip(results.into_iter().zip(&gs)) {
        #[cfg(not(target_arch = "wasm32"))]
        let mapped = rx.wait_timeout(ctx.timeout);
        #[cfg(target_arch = "wasm32")]
        let mapped = Some(rx.await);
        match mapped {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return Err(map_error(
                    op,
                    ctx,
                    format!("mapping the read-back buffer failed: {e}"),
                ))
            }
            None => {
                return Err(Error::Timeout {
                    op: format!("{op} (buffer never mapped)"),
                    adapter: ctx.describe(),
                    seconds: ctx.timeout.as_secs_f64(),
                })
            }
        }
        {
            let view = rb.get_mapped_range(..).map_err(|e| map_error(op, ctx, e))?;
            let mut off = 0usize;
            for &s in &sizes[g.clone()] {
                out.push(view[off..off + s as usize].to_vec());
                off += padded(s) as usize;
            }
        }
        rb.unmap();
    }
    Ok(out)
}
