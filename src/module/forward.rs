//! `forward`: one signature for every layer that maps one tensor to one tensor. It takes
//! `&mut self` because some layers change their own state in forward — BatchNorm's running
//! statistics in training mode, Dropout's random stream — exactly the buffers that no optimizer
//! touches.

use super::Module;
use crate::error::Result;
use crate::tensor::Tensor;

/// A layer's forward pass: `y = layer(x)`.
pub trait Forward {
    /// Computes the output on the device of `x` (which must be where the layer's tensors are).
    fn forward(&mut self, x: &Tensor) -> Result<Tensor>;
}

/// A module with a forward pass: what [`Sequential`](crate::Sequential) holds.
pub trait Layer: Module + Forward {}
impl<T: Module + Forward> Layer for T {}
