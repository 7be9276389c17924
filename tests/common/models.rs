//! The PyTorch fixtures' module trees, written as wgnn modules.
#![allow(dead_code)]

use wgnn::nn::{BatchNorm1d, Dropout, LayerNorm, Linear, ReLU};
use wgnn::{
    impl_module, Buffer, DType, Device, LearnedPositionalEmbedding, Parameter, PositionalEncoding,
    Result, Sequential, Tensor,
};

/// The tutorial-style encoder of `make_fixtures.py`.
pub struct TinyEncoder {
    pub input_net: Sequential,
    pub positional_encoding: PositionalEncoding,
    pub output_net: Sequential,
}
impl_module!(TinyEncoder {
    parameters: [],
    buffers: [],
    modules: [input_net, positional_encoding, output_net]
});

impl TinyEncoder {
    pub fn new(d_in: usize, d_model: usize, persistent_pe: bool, device: &Device) -> Result<Self> {
        Ok(TinyEncoder {
            input_net: Sequential::new()
                .push(Dropout::new(0.0))
                .push(Linear::new(d_in, d_model, device)?),
            positional_encoding: PositionalEncoding::with_persistence(
                d_model,
                5000,
                persistent_pe,
                device,
            )?,
            output_net: Sequential::new()
                .push(Linear::new(d_model, d_model, device)?)
                .push(LayerNorm::new(d_model, device)?)
                .push(ReLU { inplace: true })
                .push(Linear::new(d_model, 3, device)?),
        })
    }
}

fn full(n: usize, v: f32, device: &Device) -> Result<Tensor> {
    Tensor::from_slice(&vec![v; n], &[n])?.to(device)
}

/// The seed question side by side.
pub struct FrozenVsBuffer {
    pub trainable: Parameter,
    pub frozen: Parameter,
    pub running: Buffer,
    pub scratch: Buffer,
    pub child: BatchNorm1d,
}
impl_module!(FrozenVsBuffer {
    parameters: [trainable, frozen],
    buffers: [running, scratch],
    modules: [child]
});

impl FrozenVsBuffer {
    pub fn new(device: &Device) -> Result<Self> {
        Ok(FrozenVsBuffer {
            trainable: Parameter::new(full(3, 1.0, device)?),
            frozen: Parameter::frozen(full(3, 2.0, device)?),
            running: Buffer::new(full(3, 3.0, device)?),
            scratch: Buffer::non_persistent(full(3, 4.0, device)?),
            child: BatchNorm1d::new(3, device)?,
        })
    }
}

pub fn learned(device: &Device) -> Result<LearnedPositionalEmbedding> {
    LearnedPositionalEmbedding::new(32, 128, device)
}

pub fn zeros(shape: &[usize], device: &Device) -> Tensor {
    Tensor::zeros(shape, DType::F32, device).unwrap()
}
