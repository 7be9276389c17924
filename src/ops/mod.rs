//! Operations. Each is one file: its checks, its CPU path and its GPU path side by side, on the
//! shared machinery of [`op`](self) (see `src/ops/op.rs` for how to add one). Elementwise ops and
//! the positional table give the same bits on the CPU and on every GPU.

mod add;
mod op;
mod positional;
pub(crate) mod threads;

pub use add::{add_positional, broadcast_add, broadcast_shape};
pub use positional::{div_term, positional_table, reference_value, MAX_GPU_POSITION};
