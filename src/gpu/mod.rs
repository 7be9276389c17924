//! GPU plumbing: the context, the kernel table (the only place that includes `shaders/`), the
//! launch recorder, the buffer pool, work splitting and transfers. Nothing here is public API;
//! [`crate::Device`] and [`crate::Tensor`] are.

pub(crate) mod codes;
mod context;
pub(crate) mod kernels;
pub(crate) mod launch;
pub(crate) mod pool;
pub(crate) mod signal;
pub(crate) mod split;
pub(crate) mod transfer;
pub mod tuning;

pub(crate) use context::GpuContext;
