//! The kernel table: the only place that includes `shaders/`. One WGSL file per kernel; the file
//! stem is the entry point and the kernel's name. Each kernel is a variant of [`Kernel`] that
//! carries its own params struct, so a kernel cannot be launched with another kernel's params and
//! a misspelt kernel is a compile error. Pipelines are built once per device, even when threads
//! race for the same one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// How a kernel uses one of its storage bindings (`@binding(1)`, `@binding(2)`, …; binding 0
/// is always the `Params` uniform).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

macro_rules! kernels {
    ($( $(#[$doc:meta])* $variant:ident($params:ty) = $file:literal [$($access:ident),* $(,)?] ),* $(,)?) => {
        /// A kernel launch: which kernel, with its params.
        #[derive(Clone, Copy)]
        pub(crate) enum Kernel { $($(#[$doc])* $variant($params)),* }

        /// A kernel's identity (the pipeline cache's key).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum KernelId { $($variant),* }

        impl KernelId {
            /// Every kernel.
            pub const ALL: &'static [KernelId] = &[$(KernelId::$variant),*];
            /// File stem = entry point = kernel name.
            pub fn name(self) -> &'static str {
                match self { $(KernelId::$variant => $file),* }
            }
            /// The WGSL source: the file, then the generated codes (`src/gpu/codes.rs`;
            /// WGSL's module scope is order-free, and appending keeps the file's line numbers).
            pub fn source(self) -> String {
                let file = match self {
                    $(KernelId::$variant => include_str!(concat!("../../shaders/", $file, ".wgsl"))),*
                };
                format!("{file}\n{}", prelude(self.name()))
            }
            /// Bytes of the params struct (checked against naga's layout in a test).
            pub fn params_size(self) -> usize {
                match self { $(KernelId::$variant => std::mem::size_of::<$params>()),* }
            }
            /// The storage bindings, in binding order from 1.
            pub fn storage(self) -> &'static [Access] {
                match self { $(KernelId::$variant => &[$(Access::$access),*]),* }
            }
        }

        impl Kernel {
            pub fn id(&self) -> KernelId {
                match self { $(Kernel::$variant(_) => KernelId::$variant),* }
            }
            pub fn params(&self) -> &[u8] {
                match self { $(Kernel::$variant(p) => bytemuck::bytes_of(p)),* }
            }
        }
    };
}

/// What the kernel table appends to kernel `name`'s file: the generated codes, and the WGSL
/// the direct matrix-product kernels share (`shaders/include/`).
pub(crate) fn prelude(name: &str) -> String {
    let codes = crate::gpu::codes::wgsl_prelude();
    match name {
        "matmul_direct" | "matmul_k4" | "matmul_n4" | "matmul_t4" => format!(
            "{codes}{}",
            include_str!("../../shaders/include/matmul_direct_common.wgsl")
        ),
        "conv2d" | "conv2d_t8" | "conv2d_grad_input" | "conv2d_grad_weight" => format!(
            "{codes}{}",
            include_str!("../../shaders/include/conv_common.wgsl")
        ),
        _ => codes,
    }
}

kernels! {
    /// The sinusoidal table, a chunk of whole rows.
    PositionalEncoding(PeParams) = "positional_encoding" [Read, ReadWrite, ReadWrite],
    /// `y[b, i] = x[b, i] + t[i]`, scalar.
    BroadcastAddPrefix(PrefixParams) = "broadcast_add_prefix" [Read, Read, ReadWrite],
    /// The same in vec4.
    BroadcastAddPrefixVec4(PrefixParams) = "broadcast_add_prefix_vec4" [Read, Read, ReadWrite],
    /// General strided broadcasting, rank ≤ 8.
    BroadcastAdd(BroadcastParams) = "broadcast_add" [Read, Read, ReadWrite],
    /// Batched, strided, tiled matrix product with optional bias.
    Matmul(MatmulParams) = "matmul" [Read, Read, Read, ReadWrite],
    /// The same without workgroup memory: 8 rows of one column per invocation.
    MatmulDirect(MatmulDirectParams) = "matmul_direct" [Read, Read, Read, ReadWrite],
    /// The same with both operands read as vec4 along K.
    MatmulK4(MatmulDirectParams) = "matmul_k4" [Read, Read, Read, ReadWrite],
    /// The same with A along K and B along N in vec4.
    MatmulN4(MatmulDirectParams) = "matmul_n4" [Read, Read, Read, ReadWrite],
    /// The same with A along M and B along N in vec4 (outer products: gᵀ·x).
    MatmulT4(MatmulDirectParams) = "matmul_t4" [Read, Read, Read, ReadWrite],
    /// Elementwise relu / scale / dropout.
    Unary(UnaryParams) = "unary" [Read, ReadWrite],
    /// Strided gather into a contiguous copy (permute, narrow, expand).
    StridedCopy(StridedParams) = "strided_copy" [Read, ReadWrite],
    /// `masked_fill(mask == 0, value)` with a broadcast mask.
    MaskedFill(MaskedFillParams) = "masked_fill" [Read, Read, ReadWrite],
    /// Scaled dot-product attention in one pass (online softmax) over a packed qkv.
    Attention(AttentionParams) = "attention" [Read, Read, ReadWrite],
    /// Softmax over the last dimension.
    Softmax(RowParams) = "softmax" [Read, ReadWrite],
    /// LayerNorm over the last dimension, and its gradient with respect to its input.
    LayerNorm(LayerNormParams) = "layer_norm" [Read, Read, Read, Read, ReadWrite],
    /// int64 indices to one-hot float rows.
    OneHot(IndexParams) = "one_hot" [Read, ReadWrite],
    /// Rows of a weight picked by int64 indices.
    Embedding(IndexParams) = "embedding" [Read, Read, ReadWrite],
    /// Index of each row's maximum, as int64.
    Argmax(IndexParams) = "argmax" [Read, ReadWrite],
    /// BatchNorm's per-channel batch mean and variance.
    BatchNormStats(BnStatsParams) = "batch_norm_stats" [Read, ReadWrite],
    /// BatchNorm's normalisation with given statistics.
    BatchNorm(BnParams) = "batch_norm" [Read, Read, Read, Read, Read, ReadWrite],
    /// One running statistic of BatchNorm, updated on the device.
    BatchNormRunning(BnRunningParams) = "batch_norm_running" [Read, Read, Read, ReadWrite],
    /// int64 + 1 (BatchNorm's step counter).
    AddScalarI64(CountParams) = "add_scalar_i64" [Read, ReadWrite],
    /// Per-row cross entropy against int64 targets, and the mean's gradient.
    CrossEntropyRows(RowOpParams) = "cross_entropy_rows" [Read, Read, Read, ReadWrite],
    /// The mean of a vector, as a scalar.
    Mean(CountParams) = "mean" [Read, ReadWrite],
    /// Elementwise mul / relu backward / add / gradient clipping of two tensors.
    Binary(BinaryParams) = "binary" [Read, Read, ReadWrite],
    /// The sum (or sum of squares) of each row.
    RowSum(RowOpParams) = "row_sum" [Read, ReadWrite],
    /// narrow's gradient: a slice placed in zeros.
    Pad(PadParams) = "pad" [Read, ReadWrite],
    /// softmax's gradient.
    SoftmaxBackward(RowParams) = "softmax_backward" [Read, Read, ReadWrite],
    /// BatchNorm's gradient with respect to its input.
    BatchNormBackward(BnParams) = "batch_norm_backward" [Read, Read, Read, Read, Read, Read, ReadWrite],
    /// Adam's and SGD's elementwise updates.
    Adam(AdamParams) = "adam" [Read, Read, Read, Read, ReadWrite],
    /// `torch.where` over tensors of one shape.
    WhereSelect(BinaryParams) = "where_select" [Read, Read, Read, ReadWrite],
    /// float32 / float16 / bfloat16 conversions, on the bits.
    Cast(CastParams) = "convert" [Read, ReadWrite],
    /// conv2d as an implicit GEMM (x, w, bias → y).
    Conv2d(ConvParams) = "conv2d" [Read, Read, Read, ReadWrite],
    /// conv2d with 8 × 16 register blocks and pre-transposed weights (x, wᵀ, bias → y).
    Conv2dT8(ConvParams) = "conv2d_t8" [Read, Read, Read, ReadWrite],
    /// conv2d's input gradient (g, w → dx).
    Conv2dGradInput(ConvParams) = "conv2d_grad_input" [Read, Read, Read, ReadWrite],
    /// conv2d's weight gradient, partial sums over slices of the batch (x, g → dw parts).
    Conv2dGradWeight(ConvParams) = "conv2d_grad_weight" [Read, Read, Read, ReadWrite],
    /// max / average / adaptive average pooling and their gradients.
    Pool2d(PoolParams) = "pool2d" [Read, Read, ReadWrite],
}

/// Host mirror of `shaders/include/conv_common.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConvParams {
    pub n: u32,
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub o: u32,
    pub kh: u32,
    pub kw: u32,
    pub oh: u32,
    pub ow: u32,
    pub sh: u32,
    pub sw: u32,
    pub ph: u32,
    pub pw: u32,
    pub dh: u32,
    pub dw: u32,
    pub groups: u32,
    pub cg: u32,
    pub og: u32,
    pub kk: u32,
    pub flags: u32,
    pub splits: u32,
    pub per_split: u32,
    pub blocks: u32,
    pub row_width: u32,
}
const _: () = assert!(std::mem::size_of::<ConvParams>() == 96);

/// Host mirror of `pool2d.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PoolParams {
    /// [`PoolOp`](crate::gpu::codes::PoolOp).
    pub op: u32,
    /// Output elements (forward) or input elements (backward).
    pub count: u32,
    pub row_width: u32,
    /// Planes (N · C).
    pub planes: u32,
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub kh: u32,
    pub kw: u32,
    pub sh: u32,
    pub sw: u32,
    pub ph: u32,
    pub pw: u32,
    /// avg_pool2d: 1 to count padding zeros in the divisor.
    pub include_pad: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<PoolParams>() == 64);

/// Host mirror of `convert.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct CastParams {
    /// Output words.
    pub count: u32,
    pub row_width: u32,
    /// Elements.
    pub n: u32,
    /// [`Format`](crate::gpu::codes::Format) of the input.
    pub src: u32,
    /// [`Format`](crate::gpu::codes::Format) of the output.
    pub dst: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<CastParams>() == 32);

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
    /// Capacity of the list of entries the host must compute (see the shader).
    pub capacity: u32,
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

/// Host mirror of `matmul.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub nb2: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub a_bs1: u32,
    pub a_bs2: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    pub b_bs1: u32,
    pub b_bs2: u32,
    pub a_base: u32,
    pub b_base: u32,
    pub z0: u32,
    pub has_bias: u32,
    pub alpha: f32,
    pub c_rs: u32,
    pub c_bs1: u32,
    pub c_bs2: u32,
}
const _: () = assert!(std::mem::size_of::<MatmulParams>() == 80);

/// Host mirror of `matmul_direct.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulDirectParams {
    pub rows: u32,
    pub cols: u32,
    pub k: u32,
    pub nb2: u32,
    pub x_rs: u32,
    pub x_cs: u32,
    pub x_bs1: u32,
    pub x_bs2: u32,
    pub y_rs: u32,
    pub y_cs: u32,
    pub y_bs1: u32,
    pub y_bs2: u32,
    pub x_base: u32,
    pub y_base: u32,
    pub z0: u32,
    pub bias: u32,
    pub alpha: f32,
    pub c_rs: u32,
    pub c_cs: u32,
    pub c_bs1: u32,
    pub c_bs2: u32,
    /// `matmul_n4.wgsl`: invocations across rows rather than columns; `matmul_t4.wgsl`: the
    /// invocations across column vec4s.
    pub lanes: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<MatmulDirectParams>() == 96);

/// Host mirror of `attention.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AttentionParams {
    pub batch: u32,
    pub seq: u32,
    pub heads: u32,
    pub d4: u32,
    pub alpha: f32,
    pub has_mask: u32,
    pub m_bs: u32,
    pub m_hs: u32,
    pub m_is: u32,
    pub m_js: u32,
    pub groups_x: u32,
    pub fill: f32,
}
const _: () = assert!(std::mem::size_of::<AttentionParams>() == 48);

/// Host mirror of `unary.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct UnaryParams {
    pub count: u32,
    pub row_width: u32,
    pub op: u32,
    pub alpha: f32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub offset_lo: u32,
    pub offset_hi: u32,
    pub threshold: u32,
    pub beta: f32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<UnaryParams>() == 48);

/// Host mirror of `strided_copy.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct StridedParams {
    pub count: u32,
    pub row_width: u32,
    pub base: u32,
    /// [`CopyMode`](crate::gpu::codes::CopyMode): gather (strided reads) or scatter.
    pub mode: u32,
    pub shape: [u32; 8],
    pub strides: [u32; 8],
}
const _: () = assert!(std::mem::size_of::<StridedParams>() == 80);

/// Host mirror of `masked_fill.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MaskedFillParams {
    pub count: u32,
    pub row_width: u32,
    pub value: f32,
    pub bytes: u32,
    pub shape: [u32; 8],
    pub mask_strides: [u32; 8],
}
const _: () = assert!(std::mem::size_of::<MaskedFillParams>() == 80);

/// Host mirror of `softmax.wgsl`'s `Params` (one workgroup per row).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowParams {
    pub rows: u32,
    pub width: u32,
    pub groups_x: u32,
    /// 1: one invocation per row, 64 rows a workgroup (rows of at most 64).
    pub short_rows: u32,
}
const _: () = assert!(std::mem::size_of::<RowParams>() == 16);

/// Host mirror of `layer_norm.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LayerNormParams {
    pub rows: u32,
    pub width: u32,
    pub groups_x: u32,
    pub affine: u32,
    pub eps: f32,
    /// 1: one invocation per row, 64 rows a workgroup (rows of at most 64).
    pub short_rows: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<LayerNormParams>() == 32);

/// Host mirror of the `Params` of `one_hot.wgsl`, `embedding.wgsl` and `argmax.wgsl`: element
/// (or row) count, grid row width, and two sizes.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct IndexParams {
    pub count: u32,
    pub row_width: u32,
    pub a: u32,
    pub b: u32,
}
const _: () = assert!(std::mem::size_of::<IndexParams>() == 16);

/// Host mirror of `batch_norm_stats.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BnStatsParams {
    pub n: u32,
    pub channels: u32,
    pub inner: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<BnStatsParams>() == 16);

/// Host mirror of `batch_norm.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BnParams {
    pub count: u32,
    pub row_width: u32,
    pub channels: u32,
    pub inner: u32,
    pub mean_base: u32,
    pub var_base: u32,
    pub affine: u32,
    pub eps: f32,
}
const _: () = assert!(std::mem::size_of::<BnParams>() == 32);

/// Host mirror of `batch_norm_running.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BnRunningParams {
    pub channels: u32,
    pub stat_base: u32,
    pub cumulative: u32,
    pub momentum: f32,
    pub unbias: f32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<BnRunningParams>() == 32);

/// Host mirror of `add_scalar_i64.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct CountParams {
    pub count: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<CountParams>() == 16);

/// Host mirror of `binary.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BinaryParams {
    pub count: u32,
    pub row_width: u32,
    pub op: u32,
    pub alpha: f32,
}
const _: () = assert!(std::mem::size_of::<BinaryParams>() == 16);

/// Host mirror of the `Params` of `row_sum.wgsl` and `cross_entropy_rows.wgsl`: a row kernel
/// with a mode.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowOpParams {
    pub rows: u32,
    pub width: u32,
    pub groups_x: u32,
    pub op: u32,
}
const _: () = assert!(std::mem::size_of::<RowOpParams>() == 16);

/// Host mirror of `pad.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PadParams {
    pub count: u32,
    pub row_width: u32,
    pub inner: u32,
    pub full: u32,
    pub start: u32,
    pub len: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<PadParams>() == 32);

/// Host mirror of `adam.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AdamParams {
    pub count: u32,
    pub row_width: u32,
    pub op: u32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub weight_decay: f32,
    pub neg_step: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
    pub momentum: f32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<AdamParams>() == 48);

/// A built kernel: its pipeline and the explicit layout of its bind group (binding 0 is the
/// params uniform, bound at a dynamic offset into the device's uniform ring).
pub(crate) struct Built {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Pipelines by kernel, each behind its own lock so two threads asking for the same kernel
/// build it once, and different kernels build in parallel.
pub(crate) struct KernelCache {
    slots: Vec<Mutex<Option<Arc<Built>>>>,
    builds: AtomicU64,
}

impl Default for KernelCache {
    fn default() -> Self {
        KernelCache {
            slots: KernelId::ALL.iter().map(|_| Mutex::new(None)).collect(),
            builds: AtomicU64::new(0),
        }
    }
}

impl KernelCache {
    /// Pipelines built so far on this device.
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// The built kernel, building it on first use. Must be called inside an error scope.
    pub fn get(&self, ctx: &GpuContext, id: KernelId) -> Result<Arc<Built>> {
        // `ALL` lists the variants in declaration order, so the discriminant is the index.
        let slot = self
            .slots
            .get(id as usize)
            .ok_or_else(|| Error::internal(format!("no cache slot for kernel {id:?}")))?;
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = guard.as_ref() {
            return Ok(b.clone());
        }
        let built = Arc::new(build(ctx, id));
        self.builds.fetch_add(1, Ordering::Relaxed);
        *guard = Some(built.clone());
        Ok(built)
    }
}

fn build(ctx: &GpuContext, id: KernelId) -> Built {
    let name = id.name();
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(id.params_size() as u64),
        },
        count: None,
    }];
    for (i, a) in id.storage().iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage {
                    read_only: *a == Access::Read,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    let layout = ctx
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(name),
            entries: &entries,
        });
    let pipeline_layout = ctx
        .device
        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
    let module = ctx
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(id.source().into()),
        });
    let pipeline = ctx
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(name),
            compilation_options: Default::default(),
            cache: None,
        });
    Built { pipeline, layout }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(id: KernelId) -> naga::Module {
        let src = id.source();
        naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", id.name(), e.emit_to_string(&src)))
    }

    /// The host structs must have the size naga computes for the WGSL `Params` structs.
    #[test]
    fn params_match_wgsl_layout() {
        for &id in KernelId::ALL {
            let module = parse(id);
            let mut layouter = naga::proc::Layouter::default();
            layouter.update(module.to_ctx()).unwrap();
            let (handle, _) = module
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some("Params"))
                .unwrap_or_else(|| panic!("{} has no Params struct", id.name()));
            assert_eq!(
                layouter[handle].size as usize,
                id.params_size(),
                "Params of {}",
                id.name()
            );
        }
    }

    /// The declared bindings (uniform at 0, then storage with the declared access) are the
    /// shader's, so the explicit bind-group layouts match.
    #[test]
    fn declared_bindings_match_the_shaders() {
        for &id in KernelId::ALL {
            let module = parse(id);
            let mut found: Vec<(u32, naga::AddressSpace)> = module
                .global_variables
                .iter()
                .filter_map(|(_, g)| g.binding.as_ref().map(|b| (b.binding, g.space)))
                .collect();
            found.sort_by_key(|f| f.0);
            let mut want = vec![(0, naga::AddressSpace::Uniform)];
            for (i, a) in id.storage().iter().enumerate() {
                let access = match a {
                    Access::Read => naga::StorageAccess::LOAD,
                    Access::ReadWrite => naga::StorageAccess::LOAD | naga::StorageAccess::STORE,
                };
                want.push((i as u32 + 1, naga::AddressSpace::Storage { access }));
            }
            assert_eq!(found, want, "bindings of {}", id.name());
        }
    }

    /// Every file in `shaders/` is a kernel of the table (a shader cannot be forgotten).
    #[test]
    fn every_shader_file_is_in_the_table() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.ok()?.path();
                (p.extension()? == "wgsl").then(|| p.file_stem()?.to_str().map(String::from))?
            })
            .collect();
        files.sort();
        let mut table: Vec<String> = KernelId::ALL.iter().map(|k| k.name().into()).collect();
        table.sort();
        assert_eq!(files, table);
    }
}
