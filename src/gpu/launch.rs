//! Recording kernel launches without per-call setup. A device keeps the ops' pending command
//! buffers (one per op, finished in the op's own error scope): nothing is submitted until a read-back, an
//! upload, [`crate::GpuDevice::flush`] / `synchronize`, a full uniform ring, or a submission's
//! worth of estimated work (`work_per_submission`) asks for it, so a model's forward of dozens
//! of small ops is one submission and a long job is several of bounded length. Params go into a uniform ring (one
//! `write_buffer`, bound at a dynamic offset) and bind groups are cached by the identity of the
//! buffers they bind, so a repeated op creates no wgpu objects at all.

use std::collections::HashMap;

use crate::error::Result;
use crate::gpu::kernels::{Kernel, KernelId};
use crate::gpu::split::Bind;
use crate::gpu::GpuContext;

/// Most slots in the uniform ring; the pending work is submitted when they run out. A device
/// whose `max_buffer_size` holds fewer gets a smaller ring (see [`ring_slots`]).
const RING_SLOTS: u64 = 256;
/// Cached bind groups per device; past it the cache starts over.
const MAX_GROUPS: usize = 4096;

/// One dispatch: a kernel with its params, its storage bindings (binding 1, 2, …) and its grid.
pub(crate) struct Launch<'a> {
    pub kernel: Kernel,
    pub binds: Vec<Bind<'a>>,
    pub groups: [u32; 3],
}

impl Launch<'_> {
    /// An estimate of the dispatch's work, to size submissions: the FLOPs of a matrix product,
    /// the bytes bound for every other kernel (each touches its bindings about once).
    fn work(&self) -> u64 {
        match &self.kernel {
            Kernel::Matmul(p) => {
                2 * p.m as u64 * p.n as u64 * (p.k as u64).max(1) * self.groups[2] as u64
            }
            Kernel::MatmulDirect(p) => {
                2 * p.rows as u64 * p.cols as u64 * (p.k as u64).max(1) * self.groups[2] as u64
            }
            Kernel::MatmulK4(p) | Kernel::MatmulN4(p) => {
                8 * p.rows as u64 * p.cols as u64 * (p.k as u64).max(1) * self.groups[2] as u64
            }
            // K counted whole (only the rows and columns are read as vec4s).
            Kernel::MatmulT4(p) => {
                2 * p.rows as u64 * p.cols as u64 * (p.k as u64).max(1) * self.groups[2] as u64
            }
            _ => self.binds.iter().map(|b| b.size).sum(),
        }
    }
}

/// What wgpu validates of a dispatch only when its encoder is finished: the kernel, the
/// workgroup counts, and which bindings share a buffer (bind groups themselves are validated
/// when created, inside the op's scope).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    kernel: KernelId,
    groups: [u32; 3],
    /// For each binding, the first binding of the same buffer (no allocation per launch).
    aliasing: [u8; 8],
}

impl Shape {
    fn of(l: &Launch<'_>) -> Shape {
        let mut aliasing = [u8::MAX; 8];
        for (a, b) in aliasing.iter_mut().zip(&l.binds) {
            *a = l
                .binds
                .iter()
                .position(|c| c.buf.id == b.buf.id)
                .unwrap_or(0) as u8;
        }
        Shape {
            kernel: l.kernel.id(),
            groups: l.groups,
            aliasing,
        }
    }
}

/// Shapes remembered as validated; past it the memory starts over.
const MAX_SHAPES: usize = 4096;

#[derive(Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    kernel: KernelId,
    /// (buffer id, offset, size) of each storage binding.
    binds: Vec<(u64, u64, u64)>,
}

struct Ring {
    buffer: wgpu::Buffer,
    stride: u64,
    next: u64,
}

/// The distance between two params slots: the uniform offset alignment, at least 256.
pub(crate) fn ring_stride(limits: &wgpu::Limits) -> u64 {
    (limits.min_uniform_buffer_offset_alignment as u64).max(256)
}

/// Slots the uniform ring has on a device: [`RING_SLOTS`], or as many as `max_buffer_size`
/// holds (at least one: devices that cannot hold one are refused when opened).
pub(crate) fn ring_slots(limits: &wgpu::Limits) -> u64 {
    (limits.max_buffer_size / ring_stride(limits)).clamp(1, RING_SLOTS)
}

impl Ring {
    fn new(ctx: &GpuContext) -> Ring {
        let stride = ring_stride(&ctx.limits);
        Ring {
            buffer: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgnn params ring"),
                size: stride * ring_slots(&ctx.limits),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            stride,
            next: 0,
        }
    }
}

thread_local! {
    /// The error scope this thread is in (0 outside any): [`GpuContext::scoped`] sets it.
    static SCOPE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

static NEXT_SCOPE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The error scope this thread is recording in.
pub(crate) fn current_scope() -> u64 {
    SCOPE.with(|s| s.get())
}

/// Enters a new error scope on this thread; returns (its id, the scope to restore after).
pub(crate) fn enter_scope() -> (u64, u64) {
    let id = NEXT_SCOPE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (id, SCOPE.with(|s| s.replace(id)))
}

/// Leaves a scope entered with [`enter_scope`].
pub(crate) fn leave_scope(previous: u64) {
    SCOPE.with(|s| s.set(previous));
}

/// The device's recording state.
#[derive(Default)]
pub(crate) struct Pending {
    /// Finished command buffers recorded since the last submission, in order, each tagged with
    /// the error scope that recorded it ([`current_scope`]; 0 for a shared one).
    buffers: Vec<(u64, wgpu::CommandBuffer)>,
    /// The encoder ops of already validated shapes share (see [`GpuContext::record`]).
    open: Option<wgpu::CommandEncoder>,
    /// Launch shapes that have been finished in a command buffer of their own, with the scope
    /// that did it (forgotten if that scope reports an error).
    validated: HashMap<Shape, u64>,
    /// Dispatches recorded since the last submission.
    recorded: u64,
    /// Their estimated work (`Launch::work`).
    work: u64,
    ring: Option<Ring>,
    groups: HashMap<GroupKey, wgpu::BindGroup>,
    by_buffer: HashMap<u64, Vec<GroupKey>>,
    /// Bind groups created so far (a test asserts the cache works with it).
    pub groups_created: u64,
    /// Dispatches recorded so far, by kernel (tests count copy kernels with it).
    pub dispatched: HashMap<KernelId, u64>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty() && self.open.is_none()
    }

    /// Closes the shared encoder, if open, into the list.
    fn close(&mut self) {
        if let Some(e) = self.open.take() {
            self.buffers.push((0, e.finish()));
        }
    }

    /// The recorded command buffers, in order, for one submission; the ring starts over.
    pub fn take_recorded(&mut self) -> Vec<wgpu::CommandBuffer> {
        self.close();
        self.recorded = 0;
        self.work = 0;
        if let Some(r) = self.ring.as_mut() {
            r.next = 0;
        }
        std::mem::take(&mut self.buffers)
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }

    /// Drops the command buffers error scope `scope` recorded: its op failed, and wgpu would
    /// refuse the whole submission for an invalid one.
    pub fn discard(&mut self, scope: u64) {
        self.validated.retain(|_, s| *s != scope);
        let before = self.buffers.len() as u64;
        self.buffers.retain(|(s, _)| *s != scope);
        self.recorded = self
            .recorded
            .saturating_sub(before - self.buffers.len() as u64);
    }

    /// Drops the cached bind groups that bind buffer `id` (it is being freed).
    pub fn forget_buffer(&mut self, id: u64) {
        if let Some(keys) = self.by_buffer.remove(&id) {
            for k in keys {
                self.groups.remove(&k);
            }
        }
    }
}

impl GpuContext {
    /// Records `launches` in one compute pass, in order. Must be called inside an error scope
    /// (the op's one scope).
    ///
    /// wgpu reports the errors of a dispatch (workgroups beyond the limits, a buffer bound
    /// twice in conflicting ways) only when its encoder is finished: with one encoder shared
    /// by every op, in the scope of whichever op happens to submit, which the error would
    /// name, and the one faulty command would void every op recorded with it. So a launch of a
    /// shape not seen before ([`Shape`]) is finished in a command buffer of its own, inside
    /// its op's scope: its error names its op, and [`GpuContext::scoped`] drops the buffer, so
    /// the ops around it run. Shapes finished once without an error are recorded into one
    /// shared encoder, as everything was before (a command buffer per op costs about 20 µs a
    /// dispatch on lavapipe: see the note of issue 20). All go to the queue in one submission.
    pub(crate) fn record(&self, launches: &[Launch<'_>]) -> Result<()> {
        // An op split into more dispatches than the ring has slots records them in batches
        // (its dispatches write disjoint chunks, so a submission between them is harmless).
        for batch in launches.chunks(ring_slots(&self.limits) as usize) {
            self.record_batch(batch)?;
        }
        Ok(())
    }

    fn record_batch(&self, launches: &[Launch<'_>]) -> Result<()> {
        let built = launches
            .iter()
            .map(|l| self.kernels.get(self, l.kernel.id()))
            .collect::<Result<Vec<_>>>()?;
        let work: u64 = launches.iter().map(|l| l.work()).sum();
        let mut guard = self.pending();
        if guard.recorded + launches.len() as u64 > ring_slots(&self.limits)
            || (guard.recorded > 0 && guard.work.saturating_add(work) > self.work_per_submission)
        {
            // The ring's slots are all spoken for by recorded work, or the recorded work is
            // as much as one submission should hold (see `GpuContext::wait`): submit it first.
            let recorded = guard.take_recorded();
            self.submit_encoder(recorded, []);
        }
        guard.work = guard.work.saturating_add(work);
        let Pending {
            buffers,
            open,
            validated,
            recorded,
            ring,
            groups,
            by_buffer,
            groups_created,
            dispatched,
            ..
        } = &mut *guard;
        for l in launches {
            *dispatched.entry(l.kernel.id()).or_default() += 1;
        }
        let ring = ring.get_or_insert_with(|| Ring::new(self));
        let mut bound = Vec::with_capacity(launches.len());
        for (l, b) in launches.iter().zip(&built) {
            let offset = ring.next * ring.stride;
            ring.next += 1;
            self.queue
                .write_buffer(&ring.buffer, offset, l.kernel.params());
            let id = l.kernel.id();
            let key = GroupKey {
                kernel: id,
                binds: l
                    .binds
                    .iter()
                    .map(|b| (b.buf.id, b.offset, b.size))
                    .collect(),
            };
            let bg = match groups.get(&key) {
                Some(bg) => bg.clone(),
                None => {
                    if groups.len() >= MAX_GROUPS {
                        groups.clear();
                        by_buffer.clear();
                    }
                    let bg = self.create_group(id, &b.layout, &ring.buffer, &l.binds);
                    *groups_created += 1;
                    for (bid, _, _) in &key.binds {
                        by_buffer.entry(*bid).or_default().push(key.clone());
                    }
                    groups.insert(key, bg.clone());
                    bg
                }
            };
            bound.push((bg, offset as u32));
        }
        *recorded += launches.len() as u64;
        let shapes: Vec<Shape> = launches.iter().map(Shape::of).collect();
        let novel = shapes.iter().any(|sh| !validated.contains_key(sh));
        // Under a profile, the pass counts for the op being recorded and, with timestamps,
        // stamps its beginning and end.
        let stamps = crate::profile::with(Some(self.id), |r| {
            r.pass(&self.device, launches.len() as u64)
        })
        .flatten();
        let dispatch = |encoder: &mut wgpu::CommandEncoder| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("wgnn"),
                timestamp_writes: stamps.as_ref().map(|(set, first)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(*first),
                        end_of_pass_write_index: Some(*first + 1),
                    }
                }),
            });
            for ((l, b), (bg, offset)) in launches.iter().zip(&built).zip(&bound) {
                pass.set_pipeline(&b.pipeline);
                pass.set_bind_group(0, bg, &[*offset]);
                pass.dispatch_workgroups(l.groups[0], l.groups[1], l.groups[2]);
            }
        };
        if novel {
            if let Some(e) = open.take() {
                buffers.push((0, e.finish()));
            }
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("wgnn op"),
                });
            dispatch(&mut encoder);
            let scope = current_scope();
            buffers.push((scope, encoder.finish()));
            if validated.len() + shapes.len() > MAX_SHAPES {
                validated.clear();
            }
            for sh in shapes {
                validated.entry(sh).or_insert(scope);
            }
        } else {
            let encoder = open.get_or_insert_with(|| {
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("wgnn ops"),
                    })
            });
            dispatch(encoder);
        }
        Ok(())
    }

    /// A bind group: the params uniform (bound at a dynamic offset into `ring`) and `binds`.
    fn create_group(
        &self,
        id: KernelId,
        layout: &wgpu::BindGroupLayout,
        ring: &wgpu::Buffer,
        binds: &[Bind<'_>],
    ) -> wgpu::BindGroup {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: ring,
                offset: 0,
                size: wgpu::BufferSize::new(id.params_size() as u64),
            }),
        }];
        for (j, r) in binds.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: j as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: r.buf.buffer(),
                    offset: r.offset,
                    size: wgpu::BufferSize::new(r.size),
                }),
            });
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(id.name()),
            layout,
            entries: &entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Shape::aliasing` has room for every kernel's bindings.
    #[test]
    fn every_kernel_fits_the_shape_key() {
        for k in KernelId::ALL {
            assert!(k.storage().len() <= 8, "{k:?}");
        }
    }
}
