//! Modules: mirrors of the `torch.nn` layers (same parameters, buffers and repr, with their
//! forward passes), the positional encodings this crate started from, and the attention
//! functions of the Transformer tutorial.

mod attention;
pub mod init;
mod layers;
mod positional;

pub use attention::{attention_weights, expand_mask, scaled_dot_product, MASK_FILL};
pub use layers::{BatchNorm1d, Dropout, Embedding, LayerNorm, Linear, ReLU};
pub use positional::{LearnedPositionalEmbedding, PositionalEncoding};
