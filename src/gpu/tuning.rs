//! Every size the kernels are tuned by, in one place, with the adapter kind each choice is
//! for. The figures behind them are in the note of issue 22 (`bench --profile`).
//!
//! wgnn's CI adapters are CPU rasterisers (lavapipe, llvmpipe, SwiftShader): they run a
//! workgroup on one core, its invocations 8 wide in SIMD, and a barrier splits the shader into
//! pieces run in turn for every invocation, so barriers and many small workgroups cost there
//! what they do not on a GPU. A discrete GPU wants the opposite for the same sizes: enough
//! workgroups to fill its SMs (132 on an H200), so it keeps the workgroup-per-row kernels
//! unless rows are many.

use crate::gpu::GpuContext;

/// Invocations of the row kernels' workgroups (softmax, layer_norm and their backwards), and
/// the widest row the one-invocation-per-row path takes.
pub(crate) const ROW_THREADS: usize = 64;

/// Rows past which a GPU that is not a CPU rasteriser also runs rows of at most
/// [`ROW_THREADS`] one invocation per row: 64 rows a workgroup leaves 1024 workgroups, enough
/// to fill a large GPU.
const SHORT_ROWS_ON_GPUS: usize = 65536;

/// Whether the adapter is a CPU rasteriser (see the module's text), unless the device was
/// told to choose as a discrete GPU would (`GpuDevice::__tune_as_gpu`, for the tests that run
/// both choices on a software adapter).
pub(crate) fn is_cpu_adapter(ctx: &GpuContext) -> bool {
    ctx.info.device_type == wgpu::DeviceType::Cpu
        && !ctx
            .tune_as_gpu
            .load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether rows of `width` run one invocation per row (no barrier, 64 rows a workgroup)
/// rather than one workgroup per row.
pub(crate) fn short_rows(ctx: &GpuContext, rows: usize, width: usize) -> bool {
    width <= ROW_THREADS && (is_cpu_adapter(ctx) || rows >= SHORT_ROWS_ON_GPUS)
}
