//! The kernel cache: the only place that includes `shaders/`. One WGSL file per kernel; the file
//! stem is the entry point and the kernel's name. Pipelines are built once per device.

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// Every kernel: (name = file stem = entry point, WGSL source).
pub(crate) const SHADERS: &[(&str, &str)] = &[
    (
        "positional_encoding",
        include_str!("../../shaders/positional_encoding.wgsl"),
    ),
    (
        "broadcast_add_prefix",
        include_str!("../../shaders/broadcast_add_prefix.wgsl"),
    ),
    (
        "broadcast_add_prefix_vec4",
        include_str!("../../shaders/broadcast_add_prefix_vec4.wgsl"),
    ),
    (
        "broadcast_add",
        include_str!("../../shaders/broadcast_add.wgsl"),
    ),
];

/// Invocations per workgroup in every kernel (`@workgroup_size(256)`).
pub(crate) const WORKGROUP: u32 = 256;

/// Host mirror of `positional_encoding.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PeParams {
    pub d_model: u32,
    pub pairs: u32,
    pub count: u32,
    pub row0: u32,
    pub out_base: u32,
    pub row_width: u32,
    pub zero: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<PeParams>() == 32);

/// Host mirror of `broadcast_add_prefix*.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PrefixParams {
    pub count: u32,
    pub row_stride: u32,
    pub xy_base: u32,
    pub t_base: u32,
}
const _: () = assert!(std::mem::size_of::<PrefixParams>() == 16);

/// Host mirror of `broadcast_add.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BroadcastParams {
    pub count: u32,
    pub start: u32,
    pub y_base: u32,
    pub row_width: u32,
    pub shape: [u32; 8],
    pub x_strides: [u32; 8],
    pub b_strides: [u32; 8],
}
const _: () = assert!(std::mem::size_of::<BroadcastParams>() == 112);

/// The compute pipeline for `name`, built on first use and cached on the device.
pub(crate) fn pipeline(ctx: &GpuContext, name: &'static str) -> Result<wgpu::ComputePipeline> {
    if let Some(p) = ctx.pipelines.lock().ok().and_then(|m| m.get(name).cloned()) {
        return Ok(p);
    }
    let source = SHADERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| Error::invalid(format!("no kernel named {name:?}")))?;
    let p = ctx.scoped(&format!("building kernel {name}"), || {
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        Ok(ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some(name),
                compilation_options: Default::default(),
                cache: None,
            }))
    })?;
    if let Ok(mut m) = ctx.pipelines.lock() {
        m.insert(name, p.clone());
    }
    Ok(p)
}

/// A byte range of a buffer to bind as storage.
#[derive(Clone, Copy)]
pub(crate) struct Range<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> Range<'a> {
    /// The range covering `[start_elem, start_elem + len_elem)` of 4-byte elements, widened at
    /// the front to the 256-byte offset alignment. Returns the range and the element index of
    /// `start_elem` inside it.
    pub fn elements(
        buffer: &'a wgpu::Buffer,
        start_elem: u64,
        len_elem: u64,
        align: u64,
    ) -> (Self, u32) {
        let start = start_elem * 4;
        let offset = start / align * align;
        let end = (start + len_elem.max(1) * 4).min(buffer.size());
        (
            Range {
                buffer,
                offset,
                size: end - offset,
            },
            ((start - offset) / 4) as u32,
        )
    }
    pub fn whole(buffer: &'a wgpu::Buffer) -> Self {
        Range {
            buffer,
            offset: 0,
            size: buffer.size(),
        }
    }
}

/// One dispatch to prepare: its uniform parameters, its storage bindings (in binding order
/// 1, 2, …) and its workgroup counts.
pub(crate) struct Dispatch<'a> {
    pub params: Vec<u8>,
    pub storage: Vec<Range<'a>>,
    pub groups: [u32; 3],
}

/// Dispatches with their bind groups built once: encode them as often as wanted.
pub(crate) struct Prepared {
    pipeline: wgpu::ComputePipeline,
    groups: Vec<(wgpu::BindGroup, [u32; 3])>,
    _uniforms: wgpu::Buffer,
}

impl Prepared {
    pub fn new(
        ctx: &GpuContext,
        kernel: &'static str,
        dispatches: &[Dispatch<'_>],
    ) -> Result<Prepared> {
        let pipeline = pipeline(ctx, kernel)?;
        let stride = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(256);
        ctx.scoped(&format!("preparing kernel {kernel}"), || {
            let size = stride * dispatches.len().max(1) as u64;
            let uniforms = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgnn params"),
                size,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: true,
            });
            {
                let mut view = uniforms.get_mapped_range_mut(..).map_err(|e| Error::Gpu {
                    op: format!("preparing kernel {kernel}"),
                    adapter: ctx.describe(),
                    message: e.to_string(),
                })?;
                for (i, d) in dispatches.iter().enumerate() {
                    let o = i * stride as usize;
                    view.slice(o..o + d.params.len()).copy_from_slice(&d.params);
                }
            }
            uniforms.unmap();
            let layout = pipeline.get_bind_group_layout(0);
            let mut groups = Vec::with_capacity(dispatches.len());
            for (i, d) in dispatches.iter().enumerate() {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: i as u64 * stride,
                        size: wgpu::BufferSize::new(d.params.len() as u64),
                    }),
                }];
                for (j, r) in d.storage.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: j as u32 + 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: r.buffer,
                            offset: r.offset,
                            size: wgpu::BufferSize::new(r.size),
                        }),
                    });
                }
                let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(kernel),
                    layout: &layout,
                    entries: &entries,
                });
                groups.push((bg, d.groups));
            }
            Ok(Prepared {
                pipeline: pipeline.clone(),
                groups,
                _uniforms: uniforms,
            })
        })
    }

    /// Records every dispatch into one compute pass.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("wgnn"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        for (bg, g) in &self.groups {
            pass.set_bind_group(0, bg, &[]);
            pass.dispatch_workgroups(g[0], g[1], g[2]);
        }
    }

    /// Records `repeats` copies of the work and submits them once, without waiting: the queue
    /// orders later work (and read-backs, which wait) after it.
    pub fn submit(
        &self,
        ctx: &GpuContext,
        op: &str,
        repeats: usize,
    ) -> Result<wgpu::SubmissionIndex> {
        let cmd = ctx.scoped(op, || {
            let mut encoder = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
            for _ in 0..repeats {
                self.encode(&mut encoder);
            }
            Ok(encoder.finish())
        })?;
        ctx.submit(op, [cmd])
    }

    /// [`Prepared::submit`], then a bounded wait for it to finish.
    pub fn run(&self, ctx: &GpuContext, op: &str, repeats: usize) -> Result<()> {
        let idx = self.submit(ctx, op, repeats)?;
        ctx.wait(op, Some(idx))
    }
}

/// Splits `n` invocations into a 2-D grid of 256-wide workgroups within the per-dimension limit:
/// returns (groups x, groups y, invocations per row).
pub(crate) fn grid(ctx: &GpuContext, n: u64) -> Result<(u32, u32, u32)> {
    let max = ctx.limits.max_compute_workgroups_per_dimension as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The host structs must have the size naga computes for the WGSL `Params` structs.
    #[test]
    fn params_match_wgsl_layout() {
        let expect = [
            ("positional_encoding", std::mem::size_of::<PeParams>()),
            ("broadcast_add_prefix", std::mem::size_of::<PrefixParams>()),
            (
                "broadcast_add_prefix_vec4",
                std::mem::size_of::<PrefixParams>(),
            ),
            ("broadcast_add", std::mem::size_of::<BroadcastParams>()),
        ];
        for (name, size) in expect {
            let src = SHADERS.iter().find(|s| s.0 == name).unwrap().1;
            let module = naga::front::wgsl::parse_str(src).unwrap();
            let mut layouter = naga::proc::Layouter::default();
            layouter.update(module.to_ctx()).unwrap();
            let (handle, _) = module
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some("Params"))
                .unwrap();
            assert_eq!(layouter[handle].size as usize, size, "Params of {name}");
        }
    }
}
