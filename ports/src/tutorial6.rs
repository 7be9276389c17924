//! The Transformer of the UvA DL tutorial 6 ("Transformers and Multi-Head Attention"), class
//! for class: the same module tree, attribute names and state-dict keys as the Python, so the
//! tutorial's checkpoints load as they are. `scaled_dot_product`, `expand_mask` and
//! `PositionalEncoding` are wgnn's own ([`wgnn::nn`]).
//!
//! ```
//! use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};
//! use wgnn::{ModuleExt, Tensor};
//! let hp = Hparams::reverse_task();
//! let mut model = TransformerPredictor::new(&hp)?;
//! model.eval();
//! let x = Tensor::from_slice(&[3i64, 1, 4, 1, 5], &[1, 5])?;
//! let logits = model.forward(&x.one_hot(hp.num_classes)?, None, true)?;
//! assert_eq!(logits.shape(), [1, 5, 10]);
//! assert_eq!(model.state_dict()?.len(), 20); // `pe` is a non-persistent buffer
//! # Ok::<(), wgnn::Error>(())
//! ```

use wgnn::nn::{expand_mask, init, scaled_dot_product, scaled_dot_product_attention};
use wgnn::nn::{Dropout, LayerNorm, Linear, PositionalEncoding, ReLU};
use wgnn::{autograd, bail, ensure, seq, Forward, Module, Result, Sequential, Tensor};

/// `MultiheadAttention(input_dim, embed_dim, num_heads)`: one `qkv_proj` for all heads, laid
/// out per head, and `o_proj`.
#[derive(Module)]
pub struct MultiheadAttention {
    /// `Linear(input_dim, 3 * embed_dim)`.
    pub qkv_proj: Linear,
    /// `Linear(embed_dim, input_dim)`.
    pub o_proj: Linear,
    /// Number of heads (`embed_dim` and `head_dim` are the projections' sizes).
    #[module(skip)]
    pub num_heads: usize,
}

impl MultiheadAttention {
    /// The layer with `_reset_parameters()`'s xavier-uniform weights and zero biases.
    pub fn new(input_dim: usize, embed_dim: usize, num_heads: usize) -> Result<Self> {
        ensure!(num_heads > 0 && embed_dim.is_multiple_of(num_heads), "{embed_dim} % {num_heads}");
        let (qkv_proj, o_proj) =
            (Linear::new(input_dim, 3 * embed_dim)?, Linear::new(embed_dim, input_dim)?);
        let mut m = MultiheadAttention { qkv_proj, o_proj, num_heads };
        for l in [&mut m.qkv_proj, &mut m.o_proj] {
            init::xavier_uniform_(&mut l.weight, 1.0)?;
            l.bias.as_mut().map_or(Ok(()), init::zeros_)?;
        }
        Ok(m)
    }

    /// `forward(x, mask, return_attention)`: the output `[B, S, input_dim]`, and the attention
    /// `[B, H, S, S]` when asked for.
    pub fn forward(
        &mut self, x: &Tensor, mask: Option<&Tensor>, return_attention: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let &[b, s, _] = x.shape() else { bail!("x must be [B, S, D], got {:?}", x.shape()) };
        let (b, s, h) = (b as isize, s as isize, self.num_heads as isize);
        let mask = mask.map(expand_mask).transpose()?;
        let qkv = self.qkv_proj.forward(x)?.reshape([b, s, h, -1])?;
        let [q, k, v] = &qkv.permute([0, 2, 1, 3])?.chunk(3, -1)?[..] else { bail!("chunk") };
        let (values, attention) = match return_attention {
            true => scaled_dot_product(q, k, v, mask.as_ref()).map(|(v, a)| (v, Some(a)))?,
            false => (scaled_dot_product_attention(q, k, v, mask.as_ref())?, None),
        };
        let values = values.permute([0, 2, 1, 3])?.reshape([b, s, -1])?;
        Ok((self.o_proj.forward(&values)?, attention))
    }
}

/// `EncoderBlock(input_dim, num_heads, dim_feedforward, dropout)`: post-norm attention and MLP.
#[derive(Module)]
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

impl EncoderBlock {
    /// The block, initialised as PyTorch's.
    pub fn new(
        input_dim: usize, num_heads: usize, dim_feedforward: usize, dropout: f64,
    ) -> Result<Self> {
        Ok(EncoderBlock {
            self_attn: MultiheadAttention::new(input_dim, input_dim, num_heads)?,
            linear_net: Sequential::new()
                .push(Linear::new(input_dim, dim_feedforward)?)
                .push(Dropout::new(dropout))
                .push(ReLU { inplace: true })
                .push(Linear::new(dim_feedforward, input_dim)?),
            norm1: LayerNorm::new(input_dim)?,
            norm2: LayerNorm::new(input_dim)?,
            dropout: Dropout::new(dropout),
        })
    }

    /// `forward(x, mask)`.
    pub fn forward(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (attn_out, _) = self.self_attn.forward(x, mask, false)?;
        let x = self.norm1.forward(&(x + self.dropout.forward(&attn_out)?)?)?;
        let linear_out = self.linear_net.forward(&x)?;
        self.norm2.forward(&(&x + self.dropout.forward(&linear_out)?)?)
    }
}

/// `TransformerEncoder(num_layers, **block_args)`.
#[derive(Module)]
pub struct TransformerEncoder {
    /// The blocks (a `ModuleList`).
    pub layers: Vec<EncoderBlock>,
}

impl TransformerEncoder {
    /// `num_layers` blocks of the same sizes.
    pub fn new(
        num_layers: usize, input_dim: usize, num_heads: usize, dim_feedforward: usize, dropout: f64,
    ) -> Result<Self> {
        let layers = (0..num_layers)
            .map(|_| EncoderBlock::new(input_dim, num_heads, dim_feedforward, dropout));
        Ok(TransformerEncoder { layers: layers.collect::<Result<_>>()? })
    }

    /// `forward(x, mask)`: the blocks in order.
    pub fn forward(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.layers.iter_mut().try_fold(x.clone(), |x, l| l.forward(&x, mask))
    }

    /// `get_attention_maps(x, mask)`: each block's attention for its input, the next block's
    /// input computed without the mask (`x = l(x)`), as the tutorial does.
    pub fn get_attention_maps(&mut self, x: &Tensor, mask: Option<&Tensor>) -> Result<Vec<Tensor>> {
        let (mut x, mut maps) = (x.clone(), Vec::new());
        for l in &mut self.layers {
            maps.extend(l.self_attn.forward(&x, mask, true)?.1);
            x = l.forward(&x, None)?;
        }
        Ok(maps)
    }
}

/// The tutorial's hyper-parameters (`self.hparams` of the LightningModule), in signature order:
/// what a checkpoint's `hyper_parameters` holds.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
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

/// `TransformerPredictor`'s model (`_create_model()`): `input_net`, `positional_encoding` (a
/// non-persistent buffer), `transformer`, `output_net`.
#[derive(Module)]
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
    #[module(skip)]
    pub hparams: Hparams,
}

impl TransformerPredictor {
    /// `_create_model()`, on the CPU, initialised as PyTorch's, in training mode.
    pub fn new(hp: &Hparams) -> Result<Self> {
        let (d, p) = (hp.model_dim, hp.dropout);
        Ok(TransformerPredictor {
            input_net: seq![Dropout::new(hp.input_dropout), Linear::new(hp.input_dim, d)?],
            positional_encoding: PositionalEncoding::new(d, 5000)?,
            transformer: TransformerEncoder::new(hp.num_layers, d, hp.num_heads, 2 * d, p)?,
            output_net: Sequential::new()
                .push(Linear::new(d, d)?)
                .push(LayerNorm::new(d)?)
                .push(ReLU { inplace: true })
                .push(Dropout::new(p))
                .push(Linear::new(d, hp.num_classes)?),
            hparams: hp.clone(),
        })
    }

    /// `forward(x, mask, add_positional_encoding)`: `[B, S, input_dim]` to `[B, S, num_classes]`.
    pub fn forward(
        &mut self, x: &Tensor, mask: Option<&Tensor>, add_positional_encoding: bool,
    ) -> Result<Tensor> {
        let x = self.embed(x, add_positional_encoding)?;
        let x = self.transformer.forward(&x, mask)?;
        self.output_net.forward(&x)
    }

    /// `get_attention_maps(x, mask, add_positional_encoding)` (`@torch.no_grad()`): one
    /// `[B, H, S, S]` map a layer.
    pub fn get_attention_maps(
        &mut self, x: &Tensor, mask: Option<&Tensor>, add_positional_encoding: bool,
    ) -> Result<Vec<Tensor>> {
        autograd::no_grad(|| {
            let x = self.embed(x, add_positional_encoding)?;
            self.transformer.get_attention_maps(&x, mask)
        })
    }

    /// `input_net`, then the positional encoding when asked for.
    fn embed(&mut self, x: &Tensor, add_positional_encoding: bool) -> Result<Tensor> {
        let x = self.input_net.forward(x)?;
        if add_positional_encoding {
            return self.positional_encoding.forward(&x);
        }
        Ok(x)
    }
}
