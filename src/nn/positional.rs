//! The two sides of the seed question: the sinusoidal table as a non-persistent buffer, and the
//! learned table as a trainable parameter. Same forward: `x + pe[:, :seq_len]`.

use crate::device::Device;
use crate::dtype::DType;
use crate::error::Result;
use crate::impl_module;
use crate::module::{Buffer, Parameter};
use crate::ops::{add_positional, positional_table};
use crate::tensor::Tensor;

/// The tutorial's `PositionalEncoding(d_model, max_len)`: the `[1, max_len, d_model]` sinusoidal
/// table, registered as a buffer — non-persistent by default (`persistent=False`: it moves with
/// the module but is never saved, because it is a pure function of `d_model` and `max_len`).
/// Built on a GPU, the table is generated there by a kernel, never uploaded.
#[derive(Debug)]
pub struct PositionalEncoding {
    /// The table.
    pub pe: Buffer,
    d_model: usize,
    max_len: usize,
}
impl_module!(PositionalEncoding {
    parameters: [],
    buffers: [pe],
    modules: [],
    other: [d_model, max_len]
});

impl PositionalEncoding {
    /// The table with `persistent=False`, generated on `device`.
    pub fn new(d_model: usize, max_len: usize, device: &Device) -> Result<Self> {
        Self::with_persistence(d_model, max_len, false, device)
    }

    /// The table registered as a persistent buffer (saved in the state dict), as some
    /// checkpoints have it.
    pub fn with_persistence(
        d_model: usize,
        max_len: usize,
        persistent: bool,
        device: &Device,
    ) -> Result<Self> {
        // In a browser a GPU table cannot be waited for here: it is built on the CPU and
        // uploaded, which gives the same bits (`ops::positional_table_async` builds one on the
        // GPU there).
        let table = if cfg!(target_arch = "wasm32") && !device.is_cpu() {
            positional_table(max_len, d_model, &Device::Cpu)?.to(device)?
        } else {
            positional_table(max_len, d_model, device)?
        };
        let table = table.reshape(&[1, max_len, d_model])?;
        Ok(PositionalEncoding {
            pe: if persistent {
                Buffer::new(table)
            } else {
                Buffer::non_persistent(table)
            },
            d_model,
            max_len,
        })
    }

    /// `x + pe[:, :seq_len]` for `x: [batch, seq_len, d_model]`, float32, on the table's device.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        add_positional(x, self.pe.tensor())
    }

    /// `d_model`.
    pub fn d_model(&self) -> usize {
        self.d_model
    }
    /// `max_len`.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// The trainable counterpart: `nn.Parameter` of shape `[1, max_len, d_model]`, same forward.
/// Initialised to zeros (PyTorch draws `randn * 0.02`); load a checkpoint for real values.
#[derive(Debug)]
pub struct LearnedPositionalEmbedding {
    /// The table (trainable).
    pub pe: Parameter,
}
impl_module!(LearnedPositionalEmbedding {
    parameters: [pe],
    buffers: [],
    modules: []
});

impl LearnedPositionalEmbedding {
    /// A zero table on `device`.
    pub fn new(d_model: usize, max_len: usize, device: &Device) -> Result<Self> {
        if d_model == 0 || max_len == 0 {
            return Err(crate::Error::invalid(format!(
                "LearnedPositionalEmbedding: d_model and max_len must be at least 1, got {d_model} and {max_len}"
            )));
        }
        Ok(LearnedPositionalEmbedding {
            pe: Parameter::new(Tensor::zeros(&[1, max_len, d_model], DType::F32, device)?),
        })
    }

    /// `x + pe[:, :seq_len]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        add_positional(x, self.pe.tensor())
    }
}

impl crate::module::Forward for PositionalEncoding {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        PositionalEncoding::forward(self, x)
    }
}

impl crate::module::Forward for LearnedPositionalEmbedding {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        LearnedPositionalEmbedding::forward(self, x)
    }
}
