//! Modules: mirrors of the `torch.nn` layers (the convolutional ones and the activations in
//! `vision.rs`) (same parameters, buffers and repr, with their
//! forward passes), the positional encodings this crate started from, and the attention
//! functions of the Transformer tutorial.

mod activation;
mod attention;
pub mod init;
pub(crate) mod layers;
mod positional;
pub(crate) mod vision;

pub use activation::{activation, Activation, Arg};
pub use attention::{
    attention_weights, expand_mask, scaled_dot_product, scaled_dot_product_attention, MASK_FILL,
};
pub use layers::{BatchNorm1d, Dropout, Embedding, LayerNorm, Linear, ReLU};
pub use positional::{LearnedPositionalEmbedding, PositionalEncoding};
pub use vision::{
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv1d, Conv2d, Flatten, Hardtanh, Identity,
    LeakyReLU, MaxPool2d, Pair, SiLU, Sigmoid, Softplus, Tanh, ELU, GELU,
};
