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
use crate::ops::{DirectKernel, DirectMap, Gemm};

/// Invocations of the row kernels' workgroups (softmax, layer_norm and their backwards), and
/// the widest row the one-invocation-per-row path always takes on a CPU rasteriser.
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
        && !ctx.tune_as_gpu.load(std::sync::atomic::Ordering::Relaxed)
}

/// Widest row a CPU rasteriser runs one invocation per row when rows are many
/// ([`LONG_ROWS_MIN_ROWS`] or more: 64 rows a workgroup leaves a few workgroups per core).
const LONG_ROWS_MAX_WIDTH: usize = 1024;
const LONG_ROWS_MIN_ROWS: usize = 256;

/// Whether rows of `width` run one invocation per row (no barrier, 64 rows a workgroup, the
/// same 64 strided partial sums and tree as the workgroup path) rather than one workgroup per
/// row.
pub(crate) fn short_rows(ctx: &GpuContext, rows: usize, width: usize) -> bool {
    if is_cpu_adapter(ctx) {
        width <= ROW_THREADS || (width <= LONG_ROWS_MAX_WIDTH && rows >= LONG_ROWS_MIN_ROWS)
    } else {
        width <= ROW_THREADS && rows >= SHORT_ROWS_ON_GPUS
    }
}

/// Longest sequence a CPU rasteriser runs in the one-pass attention kernel: one query row per
/// invocation walking every key, the running sums in registers. Measured on lavapipe (heads of
/// 64, against the unfused ops, same process): 2.5 against 10.7 ms at S = 16, 56 against 79 ms
/// at 64, 114 against 150 ms at 128, 188-241 against 157 ms at 256.
const FUSED_ATTENTION_MAX_SEQ_ON_CPU: usize = 128;

/// Whether attention over `seq` positions runs as one kernel (`attention.wgsl`) on the
/// device: always on a GPU (its cost grows as the unfused ops' do, without their passes over
/// the [S, S] scores), up to [`FUSED_ATTENTION_MAX_SEQ_ON_CPU`] on a CPU rasteriser.
pub(crate) fn fuse_attention(ctx: &GpuContext, seq: usize) -> bool {
    !is_cpu_adapter(ctx) || seq <= FUSED_ATTENTION_MAX_SEQ_ON_CPU
}

/// The kernel for a matrix product: `None` for the tiled kernel (`matmul.wgsl`: 16 × 256
/// blocks of C, A staged in workgroup memory), or a direct kernel on one mapping of the
/// operands (`matmul_k4.wgsl`, `matmul_n4.wgsl`, `matmul_direct.wgsl`: register blocks, no
/// workgroup memory, vec4 loads where the layouts allow).
pub(crate) fn matmul_kernel(ctx: &GpuContext, g: &Gemm) -> Option<(DirectMap, DirectKernel)> {
    let plain = g.direct_map(false);
    if plain.k == 0 {
        return None; // nothing to read: the tiled kernel writes the bias (or zeros)
    }
    let flipped = g.direct_map(true);
    let forced = *ctx.force_matmul.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(f) = forced {
        let pick = match f {
            ForcedMatmul::Tiled => return None,
            ForcedMatmul::Direct { transposed } => {
                return Some((g.direct_map(transposed), DirectKernel::Scalar))
            }
            ForcedMatmul::K4 { transposed } => {
                let d = g.direct_map(transposed);
                d.k4().then_some((d, DirectKernel::K4))
            }
            ForcedMatmul::T4 { transposed } => {
                let d = g.direct_map(transposed);
                d.t4().then_some((d, DirectKernel::T4(t4_lanes(d.cols))))
            }
            ForcedMatmul::N4 { transposed, rows } => {
                let d = g.direct_map(transposed);
                let k = if rows {
                    DirectKernel::N4Rows
                } else {
                    DirectKernel::N4
                };
                d.n4().then_some((d, k))
            }
        };
        if pick.is_some() {
            return pick;
        }
    }
    // The wider side of C across the invocations (the j of a 256-wide tile).
    let (wide, narrow) = if plain.cols >= plain.rows {
        (plain, flipped)
    } else {
        (flipped, plain)
    };
    for d in [wide, narrow] {
        if d.k4() {
            return Some((d, DirectKernel::K4));
        }
    }
    for d in [wide, narrow] {
        if d.n4() {
            // Columns fill the 256-wide tile, or rows go across the invocations.
            let kernel = if d.cols >= 256 || d.cols >= d.rows {
                DirectKernel::N4
            } else {
                DirectKernel::N4Rows
            };
            return Some((d, kernel));
        }
    }
    for d in [wide, narrow] {
        if d.t4() {
            return Some((d, DirectKernel::T4(t4_lanes(d.cols))));
        }
    }
    if plain.cols < 64 && plain.rows > plain.cols {
        return Some((flipped, DirectKernel::Scalar));
    }
    None
}

/// `matmul_t4.wgsl`'s invocations across column vec4s: enough for `cols`, a power of two up
/// to the workgroup's 64 (the rest go across row vec4s).
fn t4_lanes(cols: usize) -> u32 {
    cols.div_ceil(4).next_power_of_two().clamp(1, 64) as u32
}

/// Slices of K a product is split into (partial products in parallel, then summed), or
/// `None`: for products whose output is too small to fill a device and whose K is long (a
/// weight's gradient: [out, in] summed over every token). At least 32 values of K per slice, a
/// power of two that divides K, up to 64 slices; only where the output has too few tiles of
/// the direct kernel to fill the device.
pub(crate) fn split_k(ctx: &GpuContext, g: &Gemm) -> Option<usize> {
    if !g.splits_along_k() || is_forced(ctx) {
        return None;
    }
    let (m, n, k) = (g.m(), g.n(), g.k());
    let (ti, tj) = DirectKernel::Scalar.tile();
    let tiles = (m as u64).div_ceil(ti) * (n as u64).div_ceil(tj);
    // Workgroups that keep the device busy: a CPU rasteriser runs one per core (measured on
    // lavapipe, 2 cores: splitting an [96, 32] gradient of 12 tiles 32 ways made the training
    // step's `linear backward` 1.2-1.6x slower), a GPU wants several per SM.
    let enough = if is_cpu_adapter(ctx) {
        crate::ops::threads::cores() as u64
    } else {
        SPLIT_K_TILES
    };
    if tiles >= enough || k < 256 {
        return None;
    }
    let want = (enough / tiles.max(1)).clamp(2, 64) as usize;
    (1..=want.ilog2())
        .rev()
        .map(|e| 1usize << e)
        .find(|&c| k.is_multiple_of(c) && k / c >= 32)
}

/// Output tiles under which a GPU's product is split along K (an H200 has 132 SMs).
const SPLIT_K_TILES: u64 = 256;

/// Whether a test forced a kernel on the device.
fn is_forced(ctx: &GpuContext) -> bool {
    ctx.force_matmul
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some()
}

/// A matrix-product kernel forced on a device (`GpuDevice::__force_matmul`), for the tests
/// that run every kernel on every layout; where the forced kernel cannot take a product, the
/// usual choice runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForcedMatmul {
    /// `matmul.wgsl`.
    Tiled,
    /// `matmul_direct.wgsl`, C = A·B or (`transposed`) Cᵀ = Bᵀ·Aᵀ.
    Direct {
        /// Cᵀ = Bᵀ·Aᵀ.
        transposed: bool,
    },
    /// `matmul_k4.wgsl`.
    K4 {
        /// Cᵀ = Bᵀ·Aᵀ.
        transposed: bool,
    },
    /// `matmul_t4.wgsl`.
    T4 {
        /// Cᵀ = Bᵀ·Aᵀ.
        transposed: bool,
    },
    /// `matmul_n4.wgsl`, with the invocations across columns or (`rows`) rows.
    N4 {
        /// Cᵀ = Bᵀ·Aᵀ.
        transposed: bool,
        /// Invocations across rows.
        rows: bool,
    },
}

/// How many invocations a convolution's weight gradient should spread over (slices of the
/// batch times 4 × 4 blocks of the weight): a CPU adapter runs one thread per core, so a few
/// per core do; a GPU wants tens of thousands in flight.
pub(crate) fn conv_weight_invocations(ctx: &GpuContext) -> usize {
    if is_cpu_adapter(ctx) {
        4 * crate::ops::threads::cores().max(1)
    } else {
        32768
    }
}
