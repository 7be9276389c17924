//! Operations. Each is one file: its checks, its CPU path and its GPU path side by side, on the
//! shared machinery of [`op`](self) (see `src/ops/op.rs` for how to add one).
//!
//! Layout: the layout ops (`permute`, `transpose`, `t`, `narrow`, `chunk`, `split`, `select`,
//! `expand`, `squeeze`, `unsqueeze`) are views; every op reads views (see `src/ops/op.rs`).
//!
//! Numbers: exactly rounded elementwise ops (`broadcast_add`, `scale`, `relu`, `dropout`,
//! `masked_fill`, `neg`, `clamp`, `mul`, `sub`, `where_`), the layout copies (`contiguous`,
//! `cat`, `stack`), the index ops and `sum` / `amax` / `max` give the same bits on the CPU and
//! on every GPU, as does the positional table. The math functions (`exp`, `log`, `sqrt`,
//! `rsqrt`, `pow`, `tanh`, `sigmoid`, `gelu`, `silu`, `div`) are within bounds stated in
//! `math.rs`. Reductions (`matmul`/`linear`, `softmax`, `layer_norm`, `batch_norm`, `var`) add
//! in another order than PyTorch and use WGSL's `exp` / `inverseSqrt`, which are not exactly
//! rounded: each file states its bound against PyTorch and the tests check it.
//!
//! Dtypes: every float op takes float32, float16 and bfloat16, on the CPU and on every GPU
//! adapter (16-bit values stored two to a 32-bit word, no `SHADER_F16` needed). An op computes
//! in float32 and rounds its output once to its operands' dtype (`src/ops/cast.rs`; mixed
//! float dtypes promote as PyTorch's); the widening and the rounding are exact conversions
//! with the same bits on every device, so the numbers above hold for half types too.
//! `tests/half.rs` holds each op within a stated bound of PyTorch 2.15's own half results.
//!
//! Gradients: every public op records its backward next to its forward (see
//! [`crate::autograd`]); the backward is written with ops, so it runs on the tensors' device and
//! inherits their numbers (elementwise and layout gradients are bit-identical across devices).

mod add;
pub(crate) mod attention;
mod batch_norm;
pub(crate) mod cast;
mod common;
mod conv;
pub(crate) mod grad;
mod index;
mod layout;
mod loss;
mod math;
mod matmul;
mod norm;
mod op;
mod pool;
mod positional;
mod reduce;
pub(crate) mod threads;
mod unary;
pub(crate) mod update;

pub use add::{add_positional, broadcast_add, broadcast_shape};
pub use attention::fused_attention;
pub use batch_norm::{batch_norm, batch_norm_relu};
pub(crate) use batch_norm::{
    batch_stats, bn_dims, increment, normalize, record_batch_norm, running_update,
};
pub(crate) use common::contiguous_strides;
pub use conv::{conv1d, conv2d, ConvOptions, Padding};
pub(crate) use grad::add;
pub use grad::add_relu;
pub use index::{argmax, embedding, one_hot};
pub(crate) use layout::materialize;
pub use layout::{
    cat, chunk, expand, flatten, narrow, permute, select, split, squeeze, stack, t, transpose,
    unsqueeze,
};
pub use loss::{cross_entropy, mean};
pub use math::{
    clamp, div, elu, exp, gelu, hardtanh, leaky_relu, log, mul_ as mul, neg, pow, rsqrt, sigmoid,
    silu, softplus, sqrt, sub, tanh, where_,
};
pub use matmul::{linear, linear_relu, matmul, matmul_nt, matmul_permuted};
pub(crate) use matmul::{DirectKernel, DirectMap, Gemm};
pub use norm::{add_layer_norm, layer_norm, masked_fill, softmax};
pub use pool::{adaptive_avg_pool2d, avg_pool2d, max_pool2d, max_pool2d_indices};
pub use positional::{
    div_term, positional_table, positional_table_async, reference_value, MAX_GPU_POSITION,
};
pub use reduce::{amax, max, mean_dim, sum, var};
pub use unary::{dropout, normal, relu, scale, uniform, Generator};
