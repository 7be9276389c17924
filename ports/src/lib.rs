//! The models of the UvA DL course (phlippe/uvadlc_notebooks, MIT licence), ported to wgnn
//! class for class, written as an outside user writes them: on wgnn's public API only, with
//! `#[derive(Module)]`, tensor methods and PyTorch's constructors, no hand-fused ops. Each
//! loads the course's published checkpoints in one call.
//!
//! - [`tutorial3`]: the activation functions' MLP (`BaseNetwork`, `load_model`).
//! - [`tutorial5`]: the ResNets (`ResNetBlock`, `PreActResNetBlock`, `ResNet::from_checkpoint`).
//! - [`tutorial6`]: the Transformer (`MultiheadAttention`, `EncoderBlock`,
//!   `TransformerPredictor`), with the reverse task's preset ([`tutorial6::Hparams::reverse_task`])
//!   and [`reversal_accuracy`].
#![deny(missing_docs)]

pub mod tutorial3;
pub mod tutorial5;
pub mod tutorial6;

mod reverse_task;
pub use reverse_task::reversal_accuracy;
