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
    /// `next(self(x))` in one pass, where the library has a fused kernel for this pair that
    /// gives the two layers' bits (an eval-mode `BatchNorm2d` then a `ReLU`); `None` runs them
    /// one after the other. [`Sequential`](crate::Sequential) asks each layer about the next:
    /// model code never calls it.
    fn forward_fused(&mut self, next: &mut dyn Module, x: &Tensor) -> Option<Result<Tensor>> {
        let _ = (next, x);
        None
    }
    /// Whether the forward is the identity in the current mode and has no effect (an eval-mode
    /// `Dropout`): [`Sequential`](crate::Sequential) looks past such layers for a fused pair.
    fn is_identity(&self) -> bool {
        false
    }
}

/// A module with a forward pass: what [`Sequential`](crate::Sequential) holds.
pub trait Layer: Module + Forward {}
impl<T: Module + Forward> Layer for T {}

/// An optional layer (`self.downsample = … if subsample else None`): its forward when present,
/// the input itself when absent — PyTorch's `if self.downsample is not None: x =
/// self.downsample(x)` in one call.
impl<M: Forward> Forward for Option<M> {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        match self {
            Some(m) => m.forward(x),
            None => Ok(x.clone()),
        }
    }
}
