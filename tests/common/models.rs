//! The PyTorch fixtures' module trees, written as wgnn modules.
#![allow(dead_code)]

use wgnn::nn::{BatchNorm1d, Dropout, LayerNorm, Linear, ReLU};
use wgnn::{
    Buffer, DType, Device, LearnedPositionalEmbedding, Module, ModuleExt, Parameter,
    PositionalEncoding, Result, Sequential, Tensor,
};

/// The tutorial-style encoder of `make_fixtures.py`.
#[derive(Module)]
pub struct TinyEncoder {
    pub input_net: Sequential,
    pub positional_encoding: PositionalEncoding,
    pub output_net: Sequential,
}

impl TinyEncoder {
    pub fn new(d_in: usize, d_model: usize, persistent_pe: bool, device: &Device) -> Result<Self> {
        let mut m = TinyEncoder {
            input_net: Sequential::new()
                .push(Dropout::new(0.0))
                .push(Linear::new(d_in, d_model)?),
            positional_encoding: PositionalEncoding::with_persistence(
                d_model,
                5000,
                persistent_pe,
                device,
            )?,
            output_net: Sequential::new()
                .push(Linear::new(d_model, d_model)?)
                .push(LayerNorm::new(d_model)?)
                .push(ReLU { inplace: true })
                .push(Linear::new(d_model, 3)?),
        };
        m.to_device(device)?;
        Ok(m)
    }
}

fn full(n: usize, v: f32, device: &Device) -> Result<Tensor> {
    Tensor::from_slice(&vec![v; n], &[n])?.to(device)
}

/// The seed question side by side.
#[derive(Module)]
pub struct FrozenVsBuffer {
    pub trainable: Parameter,
    pub frozen: Parameter,
    pub running: Buffer,
    pub scratch: Buffer,
    pub child: BatchNorm1d,
}

impl FrozenVsBuffer {
    pub fn new(device: &Device) -> Result<Self> {
        let mut m = FrozenVsBuffer {
            trainable: Parameter::new(full(3, 1.0, device)?),
            frozen: Parameter::frozen(full(3, 2.0, device)?),
            running: Buffer::new(full(3, 3.0, device)?),
            scratch: Buffer::non_persistent(full(3, 4.0, device)?),
            child: BatchNorm1d::new(3)?,
        };
        m.to_device(device)?;
        Ok(m)
    }
}

pub fn learned(device: &Device) -> Result<LearnedPositionalEmbedding> {
    let mut m = LearnedPositionalEmbedding::new(32, 128)?;
    m.to_device(device)?;
    Ok(m)
}

pub fn zeros(shape: &[usize], device: &Device) -> Tensor {
    Tensor::zeros(shape, DType::F32, device).unwrap()
}
