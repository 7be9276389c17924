//! Device buffers behind tensors, and the pool that recycles op outputs.
//!
//! An op's output comes from the pool when a buffer of its size class is free there; when the
//! last tensor sharing a buffer drops, the buffer goes back. Reuse is safe without waiting:
//! every use of a buffer is recorded into the device's pending command buffers or submitted after
//! it, so a later op that writes a recycled buffer is ordered after every earlier read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::Result;
use crate::gpu::transfer::{padded, STORAGE_USAGE};
use crate::gpu::GpuContext;

static NEXT_BUFFER: AtomicU64 = AtomicU64::new(1);

/// Most bytes the pool keeps for reuse per device; past it the oldest free buffers are freed.
pub(crate) const POOL_BYTES: u64 = 512 << 20;

/// A wgpu buffer with an identity (bind groups are cached by it) and a logical length.
pub(crate) struct GpuBuffer {
    pub id: u64,
    /// Bytes that belong to the tensor, padded to 4 (at least 4); the buffer may be larger.
    pub len: u64,
    buffer: Option<wgpu::Buffer>,
    /// The size class, for pooled buffers.
    class: Option<u64>,
    ctx: Arc<GpuContext>,
}

impl GpuBuffer {
    pub fn buffer(&self) -> &wgpu::Buffer {
        // Only `Drop` takes the buffer out.
        self.buffer
            .as_ref()
            .unwrap_or_else(|| unreachable!("buffer taken before drop"))
    }

    /// A buffer that is not recycled (uploads, `zeros`): wgpu zero-fills new buffers. Must be
    /// called inside an error scope.
    pub fn fresh(ctx: &Arc<GpuContext>, len: u64, label: &str) -> Result<GpuBuffer> {
        let size = padded(len);
        ctx.check_buffer_size(&format!("{label} ({len} bytes)"), size)?;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: STORAGE_USAGE,
            mapped_at_creation: false,
        });
        ctx.hold(size);
        Ok(GpuBuffer {
            id: NEXT_BUFFER.fetch_add(1, Ordering::Relaxed),
            len: size,
            buffer: Some(buffer),
            class: None,
            ctx: ctx.clone(),
        })
    }

    /// An op output of `len` bytes, from the pool when one is free. Its contents are whatever
    /// was there: the op must write every byte it later reads. Must be called inside an error
    /// scope.
    pub fn output(ctx: &Arc<GpuContext>, len: u64) -> Result<GpuBuffer> {
        let need = padded(len);
        ctx.check_buffer_size(&format!("an op output of {len} bytes"), need)?;
        let class = size_class(need).min(ctx.limits.max_buffer_size.max(need));
        let (id, buffer) = match ctx.pool().take(class) {
            Some(b) => b,
            None => (
                NEXT_BUFFER.fetch_add(1, Ordering::Relaxed),
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgnn op output"),
                    size: class,
                    usage: STORAGE_USAGE,
                    mapped_at_creation: false,
                }),
            ),
        };
        ctx.hold(class);
        Ok(GpuBuffer {
            id,
            len: need,
            buffer: Some(buffer),
            class: Some(class),
            ctx: ctx.clone(),
        })
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        let Some(buffer) = self.buffer.take() else {
            return;
        };
        self.ctx.release(self.class.unwrap_or(self.len));
        match self.class {
            Some(class) => {
                let evicted = self.ctx.pool().put(class, self.id, buffer);
                if !evicted.is_empty() {
                    let mut p = self.ctx.pending();
                    for id in evicted {
                        p.forget_buffer(id);
                    }
                }
            }
            None => self.ctx.pending().forget_buffer(self.id),
        }
    }
}

/// Rounds a byte size up to its class: four classes per power of two from 256 bytes, so a
/// pooled buffer wastes at most a fifth of its size.
pub(crate) fn size_class(bytes: u64) -> u64 {
    if bytes <= 256 {
        return 256;
    }
    let p = 63 - (bytes - 1).leading_zeros() as u64; // 2^p < bytes <= 2^(p+1)
    let quarter = 1u64 << (p - 2);
    let base = 1u64 << p;
    let steps = (bytes - base).div_ceil(quarter);
    base + steps * quarter
}

/// Free output buffers by size class, oldest first.
#[derive(Default)]
pub(crate) struct Pool {
    free: BTreeMap<u64, Vec<(u64, wgpu::Buffer)>>,
    order: VecDeque<(u64, u64)>,
    bytes: u64,
    /// Buffers handed out from the pool (a test asserts reuse with it).
    pub hits: u64,
}

impl Pool {
    fn take(&mut self, class: u64) -> Option<(u64, wgpu::Buffer)> {
        let list = self.free.get_mut(&class)?;
        let b = list.pop()?;
        self.bytes -= class;
        self.hits += 1;
        if let Some(i) = self
            .order
            .iter()
            .position(|&(c, id)| c == class && id == b.0)
        {
            self.order.remove(i);
        }
        Some(b)
    }

    /// Keeps a buffer for reuse; returns the ids of buffers freed to stay under
    /// [`POOL_BYTES`].
    fn put(&mut self, class: u64, id: u64, buffer: wgpu::Buffer) -> Vec<u64> {
        let mut evicted = Vec::new();
        if class > POOL_BYTES {
            evicted.push(id);
            return evicted;
        }
        self.free.entry(class).or_default().push((id, buffer));
        self.order.push_back((class, id));
        self.bytes += class;
        while self.bytes > POOL_BYTES {
            let Some((c, old)) = self.order.pop_front() else {
                break;
            };
            if let Some(list) = self.free.get_mut(&c) {
                if let Some(i) = list.iter().position(|b| b.0 == old) {
                    list.remove(i);
                    self.bytes -= c;
                    evicted.push(old);
                }
            }
        }
        evicted
    }

    /// Bytes held for reuse.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_and_waste_little() {
        let mut last = 0;
        for b in (1..200_000u64)
            .step_by(7)
            .chain([1 << 20, (1 << 20) + 1, 3 << 30])
        {
            let c = size_class(b);
            assert!(c >= b, "{b} -> {c}");
            assert!(c >= last);
            last = c;
            if b > 256 {
                assert!((c - b) * 4 <= b, "{b} -> {c} wastes more than a quarter");
            }
        }
        assert_eq!(size_class(1024), 1024);
        assert_eq!(size_class(1025), 1280);
    }
}
