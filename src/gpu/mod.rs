//! GPU plumbing: the context, the kernel cache (the only place that includes `shaders/`) and
//! transfers. Nothing here is public API; [`crate::Device`] and [`crate::Tensor`] are.

mod context;
pub(crate) mod kernels;
pub(crate) mod transfer;

pub(crate) use context::GpuContext;
