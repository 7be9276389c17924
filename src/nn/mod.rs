//! Modules: the positional encodings this crate exists for, and state-only mirrors of the
//! `torch.nn` layers that the PyTorch fixtures use (their parameters, buffers and repr; wgnn does
//! not run their forward passes yet).

mod layers;
mod positional;

pub use layers::{BatchNorm1d, Dropout, LayerNorm, Linear, ReLU};
pub use positional::{LearnedPositionalEmbedding, PositionalEncoding};
