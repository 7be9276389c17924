//! The Transformer of the UvA DL tutorial 6 ("Transformers and Multi-Head Attention"), ported
//! class for class: the same module tree, attribute names and state-dict keys as the Python, so
//! the tutorial's checkpoints load as they are. Reading it next to the notebook is the point;
//! the general parts (the layers, [`scaled_dot_product`](crate::nn::scaled_dot_product), [`expand_mask`](crate::nn::expand_mask)) live in [`crate::nn`].
//!
//! ```
//! use wgnn::tutorial6::{Hparams, TransformerPredictor};
//! use wgnn::{ops, Device, ModuleExt, Tensor};
//! let hp = Hparams::reverse_task();
//! let mut model = TransformerPredictor::new(&hp, &Device::Cpu)?;
//! model.eval();
//! // `model.load_state_dict(&StateDict::load("reverse.safetensors")?, true)?` for real weights.
//! let x = Tensor::from_slice(&[3i64, 1, 4, 1, 5], &[1, 5])?;
//! let logits = model.forward(&ops::one_hot(&x, hp.num_classes)?, None, true)?;
//! assert_eq!(logits.shape(), [1, 5, 10]);
//! assert_eq!(model.state_dict()?.len(), 20); // `pe` is a non-persistent buffer
//! # Ok::<(), wgnn::Error>(())
//! ```

use crate::device::Device;
use crate::error::{Error, Result};
use crate::impl_module;
use crate::module::{Forward, ModuleExt, ModuleList};
use crate::nn::{Dropout, LayerNorm, Linear, PositionalEncoding, ReLU};
use crate::ops;
use crate::tensor::Tensor;
use crate::Sequential;

/// `MultiheadAttention(input_dim, embed_dim, num_heads)`: one `qkv_proj` for all heads, whose
/// output is laid out per head (`[q_h, k_h, v_h]` for each head h, as the tutorial reshapes it),
/// and `o_proj`.
pub struct MultiheadAttention {
    /// `Linear(input_dim, 3 * embed_dim)`.
    pub qkv_proj: Linear,
    /// `Linear(embed_dim, input_dim)`.
    pub o_proj: Linear,
    /// Width of all heads together.
    pub embed_dim: usize,
    /// Number of heads.
    pub num_heads: usize,
    /// `embed_dim / num_heads`.
    pub head_dim: usize,
}
impl_module!(MultiheadAttention {
    parameters: [],
    buffers: [],
    modules: [qkv_proj, o_proj],
    other: [embed_dim, num_heads, head_dim]
});

impl MultiheadAttention {
    /// Zero weights; `num_heads` must divide `embed_dim`.
    pub fn new(
        input_dim: usize,
        embed_dim: usize,
        num_heads: usize,
        device: &Device,
    ) -> Result<Self> {
        if num_heads == 0 || !embed_dim.is_multiple_of(num_heads) {
            return Err(Error::invalid(format!(
                "MultiheadAttention: embedding dimension {embed_dim} must be 0 modulo number of \
                 heads {num_heads}"
            )));
        }
        Ok(MultiheadAttention {
            qkv_proj: Linear::new(input_dim, 3 * embed_dim, device)?,
            o_proj: Linear::new(embed_dim, input_dim, device)?,
            embed_dim,
            num_heads,
            head_dim: embed_dim / num_heads,
        })
    }

    /// `forward(x, mask, return_attention=True)`: the output `[B, S, input_dim]` and the
    /// attention `[B, H, S, S]`.
    pub fn forward_with_attention(
        &mut self,
        x: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        if x.shape().len() != 3 {
            return Err(Error::shape(
                "MultiheadAttention",
                format!("x must be [batch, seq_len, input_dim], got {:?}", x.shape()),
            ));
        }
        let qkv = self.qkv_proj.forward(x)?;
        // scaled_dot_product on the heads' views, attention · v written in merged-heads order.
        let (values, attention) =
            ops::attention::composed_with_weights(&qkv, self.num_heads, mask)?;
        let o = self.o_proj.forward(&values)?;
        Ok((o, attention))
    }

    /// `forward(x, mask)`: the same numbers as [`MultiheadAttention::forward_with_attention`]
    /// without the weights, so in one kernel ([`ops::fused_attention`]) where no gradient is
    /// recorded.
    pub fn forward(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        if x.shape().len() != 3 {
            return Ok(self.forward_with_attention(x, mask)?.0); // its error
        }
        let qkv = self.qkv_proj.forward(x)?;
        let values = ops::fused_attention(&qkv, self.num_heads, mask)?;
        self.o_proj.forward(&values)
    }
}

/// `EncoderBlock(input_dim, num_heads, dim_feedforward, dropout)`: post-norm attention and MLP.
pub struct EncoderBlock {
    /// Attention layer.
    pub self_attn: MultiheadAttention,
    /// Two-layer MLP: `Linear, Dropout, ReLU, Linear`.
    pub linear_net: Sequential,
    /// After attention.
    pub norm1: LayerNorm,
    /// After the MLP.
    pub norm2: LayerNorm,
    /// On both residual branches.
    pub dropout: Dropout,
}
impl_module!(EncoderBlock {
    parameters: [],
    buffers: [],
    modules: [self_attn, linear_net, norm1, norm2, dropout]
});

impl EncoderBlock {
    /// Zero weights, unit norms.
    pub fn new(
        input_dim: usize,
        num_heads: usize,
        dim_feedforward: usize,
        dropout: f64,
        device: &Device,
    ) -> Result<Self> {
        Ok(EncoderBlock {
            self_attn: MultiheadAttention::new(input_dim, input_dim, num_heads, device)?,
            linear_net: Sequential::new()
                .push(Linear::new(input_dim, dim_feedforward, device)?)
                .push(Dropout::new(dropout))
                .push(ReLU { inplace: true })
                .push(Linear::new(dim_feedforward, input_dim, device)?),
            norm1: LayerNorm::new(input_dim, device)?,
            norm2: LayerNorm::new(input_dim, device)?,
            dropout: Dropout::new(dropout),
        })
    }

    /// `forward(x, mask)`. Where no gradient is recorded and no dropout is drawn (eval, or
    /// under `no_grad` with dropout off) it runs the same math in fewer kernels: attention in
    /// one ([`ops::fused_attention`]), each residual add inside its norm
    /// ([`ops::add_layer_norm`]), the first MLP linear's bias and ReLU in its product's
    /// epilogue ([`ops::linear_relu`]): 7 dispatches a block on a GPU instead of 12 (13 with a mask).
    pub fn forward(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let drawing = self
            .named_modules()
            .iter()
            .any(|(_, m)| m.training() == Some(true));
        if !drawing {
            return self.forward_fused(x, mask);
        }
        // Attention part
        let attn_out = self.self_attn.forward(x, mask)?;
        let x = ops::broadcast_add(x, &self.dropout.forward(&attn_out)?)?;
        let x = self.norm1.forward(&x)?;
        // MLP part
        let linear_out = self.linear_net.forward(&x)?;
        let x = ops::broadcast_add(&x, &self.dropout.forward(&linear_out)?)?;
        self.norm2.forward(&x)
    }
}

impl EncoderBlock {
    /// [`EncoderBlock::forward`] with no dropout drawn (every dropout in eval mode): the
    /// fused ops, each of which runs unfused where a gradient is recorded.
    fn forward_fused(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let attn_out = self.self_attn.forward(x, mask)?;
        let n1 = &self.norm1;
        let x = ops::add_layer_norm(
            x,
            &attn_out,
            n1.weight.tensor().shape(),
            Some(n1.weight.tensor()),
            Some(n1.bias.tensor()),
            n1.eps,
        )?;
        let linear_out = self.mlp(&x)?;
        let n2 = &self.norm2;
        ops::add_layer_norm(
            &x,
            &linear_out,
            n2.weight.tensor().shape(),
            Some(n2.weight.tensor()),
            Some(n2.bias.tensor()),
            n2.eps,
        )
    }

    /// `linear_net(x)`: when it is the tutorial's `Linear, Dropout, ReLU, Linear`, the first
    /// linear with its ReLU in one product ([`ops::linear_relu`]); otherwise as it is.
    fn mlp(&mut self, x: &Tensor) -> Result<Tensor> {
        let net = &self.linear_net;
        let kinds: Vec<String> = net.iter().map(|m| m.type_name()).collect();
        if kinds != ["Linear", "Dropout", "ReLU", "Linear"] {
            return self.linear_net.forward(x);
        }
        let param = |path: &str| net.get_parameter(path).map(|p| p.tensor().clone());
        let bias = |path: &str| net.get_parameter(path).ok().map(|p| p.tensor().clone());
        let (w1, b1, w2, b2) = (
            param("0.weight")?,
            bias("0.bias"),
            param("3.weight")?,
            bias("3.bias"),
        );
        let h = ops::linear_relu(x, &w1, b1.as_ref())?;
        ops::linear(&h, &w2, b2.as_ref())
    }
}

/// `TransformerEncoder(num_layers, **block_args)`.
pub struct TransformerEncoder {
    /// The blocks, typed.
    pub layers: ModuleList<EncoderBlock>,
}
impl_module!(TransformerEncoder {
    parameters: [],
    buffers: [],
    modules: [layers]
});

impl TransformerEncoder {
    /// `num_layers` blocks of the same sizes.
    pub fn new(
        num_layers: usize,
        input_dim: usize,
        num_heads: usize,
        dim_feedforward: usize,
        dropout: f64,
        device: &Device,
    ) -> Result<Self> {
        let blocks = (0..num_layers)
            .map(|_| EncoderBlock::new(input_dim, num_heads, dim_feedforward, dropout, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(TransformerEncoder {
            layers: ModuleList::from_items(blocks),
        })
    }

    /// `forward(x, mask)`: the blocks in order.
    pub fn forward(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.clone();
        for l in self.layers.iter_mut() {
            x = l.forward(&x, mask)?;
        }
        Ok(x)
    }

    /// `get_attention_maps(x, mask)` as the tutorial computes them: each block's attention for
    /// its input — and, the tutorial's quirk, the next block's input computed **without** the
    /// mask (`x = l(x)`). With a mask, maps after the first differ from those of a masked
    /// forward.
    pub fn get_attention_maps(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Vec<Tensor>> {
        crate::autograd::no_grad(|| {
            let mut maps = Vec::with_capacity(self.layers.len());
            let mut x = x.clone();
            for l in self.layers.iter_mut() {
                let (_, attn_map) = l.self_attn.forward_with_attention(&x, mask)?;
                maps.push(attn_map);
                x = l.forward(&x, None)?;
            }
            Ok(maps)
        })
    }
}

/// The tutorial's hyper-parameters (`self.hparams` of the LightningModule), in signature order.
#[derive(Clone, Debug, PartialEq)]
pub struct Hparams {
    /// Size of each input vector (classes of the one-hot input).
    pub input_dim: usize,
    /// Width of the Transformer.
    pub model_dim: usize,
    /// Output classes per sequence element.
    pub num_classes: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Encoder blocks.
    pub num_layers: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Warm-up steps of the scheduler.
    pub warmup: usize,
    /// Steps of the cosine schedule.
    pub max_iters: usize,
    /// Dropout in the blocks and the output net.
    pub dropout: f64,
    /// Dropout on the input.
    pub input_dropout: f64,
}

impl Hparams {
    /// The reverse task of the tutorial: `ReverseDataset(10, 16)`, model 32 wide, one head, one
    /// layer, 10 epochs of 390 batches.
    pub fn reverse_task() -> Self {
        Hparams {
            input_dim: 10,
            model_dim: 32,
            num_classes: 10,
            num_heads: 1,
            num_layers: 1,
            lr: 5e-4,
            warmup: 50,
            max_iters: 3900,
            dropout: 0.0,
            input_dropout: 0.0,
        }
    }
}

/// The reverse task's accuracy line, as the `reverse` example and the web page print it, for
/// predictions `preds` of sequences `x` of length `seq` (the label of position `i` is the
/// input at `seq - 1 - i`): `accuracy: C/T tokens (P%), F/N sequences fully reversed`.
pub fn reversal_accuracy(x: &[i64], preds: &[i64], seq: usize) -> String {
    let n = x.len().checked_div(seq).unwrap_or(0);
    let (mut correct, mut full) = (0, 0);
    for s in 0..n {
        let ok = (0..seq)
            .filter(|&i| preds.get(s * seq + i) == Some(&x[s * seq + seq - 1 - i]))
            .count();
        correct += ok;
        full += (ok == seq) as usize;
    }
    let total = n * seq;
    format!(
        "accuracy: {correct}/{total} tokens ({:.2}%), {full}/{n} sequences fully reversed",
        100.0 * correct as f64 / total.max(1) as f64
    )
}

/// `TransformerPredictor`: `input_net` (dropout + linear), `positional_encoding` (its table is a
/// non-persistent buffer), `transformer`, `output_net` (linear, layer norm, relu, dropout,
/// linear).
pub struct TransformerPredictor {
    /// `Dropout(input_dropout), Linear(input_dim, model_dim)`.
    pub input_net: Sequential,
    /// The sinusoidal table, `max_len = 5000`.
    pub positional_encoding: PositionalEncoding,
    /// The encoder.
    pub transformer: TransformerEncoder,
    /// The per-element classifier.
    pub output_net: Sequential,
    /// The hyper-parameters it was built with.
    pub hparams: Hparams,
}
impl_module!(TransformerPredictor {
    parameters: [],
    buffers: [],
    modules: [input_net, positional_encoding, transformer, output_net],
    other: [hparams]
});

impl TransformerPredictor {
    /// The initialisation PyTorch gives the tutorial's model at construction: every layer's
    /// default (`nn.Linear`'s kaiming-uniform, LayerNorm's ones and zeros), then each attention
    /// layer's `_reset_parameters()` (xavier-uniform weights, zero biases). From `g`, so the
    /// numbers are not `torch.manual_seed`'s, but the same on every device.
    pub fn reset_parameters(&mut self, g: &mut ops::Generator) -> Result<()> {
        crate::nn::init::reset_parameters(self, g)?;
        for block in self.transformer.layers.iter_mut() {
            let attn = &mut block.self_attn;
            for l in [&mut attn.qkv_proj, &mut attn.o_proj] {
                crate::nn::init::xavier_uniform_(&mut l.weight, 1.0, g)?;
                if let Some(b) = &mut l.bias {
                    crate::nn::init::zeros_(b)?;
                }
            }
        }
        Ok(())
    }

    /// `_create_model()`, with zero weights (load a state dict for real ones), in training mode.
    pub fn new(hp: &Hparams, device: &Device) -> Result<Self> {
        Ok(TransformerPredictor {
            input_net: Sequential::new()
                .push(Dropout::new(hp.input_dropout))
                .push(Linear::new(hp.input_dim, hp.model_dim, device)?),
            positional_encoding: PositionalEncoding::new(hp.model_dim, 5000, device)?,
            transformer: TransformerEncoder::new(
                hp.num_layers,
                hp.model_dim,
                hp.num_heads,
                2 * hp.model_dim,
                hp.dropout,
                device,
            )?,
            output_net: Sequential::new()
                .push(Linear::new(hp.model_dim, hp.model_dim, device)?)
                .push(LayerNorm::new(hp.model_dim, device)?)
                .push(ReLU { inplace: true })
                .push(Dropout::new(hp.dropout))
                .push(Linear::new(hp.model_dim, hp.num_classes, device)?),
            hparams: hp.clone(),
        })
    }

    /// `forward(x, mask, add_positional_encoding)`: `x [B, S, input_dim]` to logits
    /// `[B, S, num_classes]`.
    pub fn forward(
        &mut self,
        x: &Tensor,
        mask: Option<&Tensor>,
        add_positional_encoding: bool,
    ) -> Result<Tensor> {
        let mut x = self.input_net.forward(x)?;
        if add_positional_encoding {
            x = self.positional_encoding.forward(&x)?;
        }
        let x = self.transformer.forward(&x, mask)?;
        self.output_net.forward(&x)
    }

    /// `get_attention_maps(x, mask, add_positional_encoding)`: one `[B, H, S, S]` map a layer.
    pub fn get_attention_maps(
        &mut self,
        x: &Tensor,
        mask: Option<&Tensor>,
        add_positional_encoding: bool,
    ) -> Result<Vec<Tensor>> {
        // `@torch.no_grad()` in the tutorial: nothing is recorded.
        crate::autograd::no_grad(|| {
            let mut x = self.input_net.forward(x)?;
            if add_positional_encoding {
                x = self.positional_encoding.forward(&x)?;
            }
            self.transformer.get_attention_maps(&x, mask)
        })
    }
}
