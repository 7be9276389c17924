//! Operations, each with one CPU path and one GPU path that give the same bits.

mod add;
mod positional;
pub(crate) mod threads;

pub use add::{add_positional, broadcast_add, broadcast_shape};
pub(crate) use add::{add_rows_into, PreparedAdd};
pub use positional::{div_term, positional_table, reference_value, MAX_GPU_POSITION};
