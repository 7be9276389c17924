//! The ResNets of the UvA DL tutorial 5 ("Inception, ResNet and DenseNet"), class for class:
//! `ResNetBlock`, `PreActResNetBlock` and `ResNet` with the notebook's module tree, attribute
//! names and state-dict keys, so the published checkpoints load as they are, in one call
//! ([`ResNet::from_checkpoint`]: the Lightning file's `hyper_parameters.model_hparams` give the
//! sizes and block type). Its 19 `BatchNorm2d` layers carry 57 buffers: the running statistics
//! (saved, moved, never trained) and `num_batches_tracked`.
//!
//! ```
//! use wgnn_ports::tutorial5::{ResNet, ResNetHparams};
//! use wgnn::{DType, Device, Forward, ModuleExt, Tensor};
//! let mut model = ResNet::new(&ResNetHparams::default())?;
//! model.eval();
//! let x = Tensor::zeros(&[2, 3, 32, 32], DType::F32, &Device::Cpu)?;
//! assert_eq!(model.forward(&x)?.shape(), [2, 10]);
//! assert_eq!(model.named_buffers().len(), 57); // 19 BatchNorm2d × 3
//! # Ok::<(), wgnn::Error>(())
//! ```

use std::path::Path;

use wgnn::nn::init::{self, FanMode};
use wgnn::nn::{Activation, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear};
use wgnn::torch::Checkpoint;
use wgnn::{bail, ensure, Error, Forward, Layer, Module, ModuleExt, Result, ResultExt};
use wgnn::{Sequential, Tensor};

/// `act_fn_by_name` of the notebook: `"tanh"`, `"relu"`, `"leakyrelu"`, `"gelu"` (classes:
/// [`Activation::build`] makes a layer).
pub fn act_fn_by_name(name: &str) -> Result<Activation> {
    match name {
        "tanh" | "relu" | "leakyrelu" | "gelu" => Activation::new(name),
        _ => bail!("unknown activation {name:?}: tutorial 5's are tanh, relu, leakyrelu, gelu"),
    }
}

/// `ResNetBlock(c_in, act_fn, subsample, c_out)`: `net`, the 1 × 1 stride-2 `downsample` when
/// subsampling, and `act_fn` after the residual sum.
#[derive(Module)]
pub struct ResNetBlock {
    /// `Conv2d, BatchNorm2d, act_fn, Conv2d, BatchNorm2d`.
    pub net: Sequential,
    /// `Conv2d(c_in, c_out, kernel_size=1, stride=2)` when subsampling.
    pub downsample: Option<Conv2d>,
    /// The activation after the sum.
    pub act_fn: Box<dyn Layer>,
}

impl ResNetBlock {
    /// The block; `c_out` counts only when subsampling, as in the notebook.
    pub fn new(c_in: usize, act_fn: &Activation, subsample: bool, c_out: usize) -> Result<Self> {
        let c_out = if subsample { c_out } else { c_in };
        Ok(ResNetBlock {
            net: Sequential::new()
                .push(
                    Conv2d::new(c_in, c_out, 3)?
                        .padding(1)
                        .stride(1 + subsample as usize)
                        .bias(false),
                )
                .push(BatchNorm2d::new(c_out)?)
                .push(act_fn.build())
                .push(Conv2d::new(c_out, c_out, 3)?.padding(1).bias(false))
                .push(BatchNorm2d::new(c_out)?),
            downsample: subsample
                .then(|| Ok(Conv2d::new(c_in, c_out, 1)?.stride(2)))
                .transpose()?,
            act_fn: act_fn.build(),
        })
    }
}

impl Forward for ResNetBlock {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let z = self.net.forward(x)?;
        self.act_fn.forward(&(&z + &self.downsample.forward(x)?)?)
    }
}

/// `PreActResNetBlock(c_in, act_fn, subsample, c_out)`: `net` and, when subsampling,
/// `downsample` (BN, act, 1 × 1 stride-2 conv); no activation after the sum.
#[derive(Module)]
pub struct PreActResNetBlock {
    /// `BatchNorm2d, act_fn, Conv2d, BatchNorm2d, act_fn, Conv2d`.
    pub net: Sequential,
    /// `BatchNorm2d, act_fn, Conv2d(kernel_size=1, stride=2, bias=False)` when subsampling.
    pub downsample: Option<Sequential>,
}

impl PreActResNetBlock {
    /// The block; `c_out` counts only when subsampling.
    pub fn new(c_in: usize, act_fn: &Activation, subsample: bool, c_out: usize) -> Result<Self> {
        let c_out = if subsample { c_out } else { c_in };
        Ok(PreActResNetBlock {
            net: Sequential::new()
                .push(BatchNorm2d::new(c_in)?)
                .push(act_fn.build())
                .push(
                    Conv2d::new(c_in, c_out, 3)?
                        .padding(1)
                        .stride(1 + subsample as usize)
                        .bias(false),
                )
                .push(BatchNorm2d::new(c_out)?)
                .push(act_fn.build())
                .push(Conv2d::new(c_out, c_out, 3)?.padding(1).bias(false)),
            downsample: subsample
                .then(|| -> Result<_> {
                    Ok(Sequential::new()
                        .push(BatchNorm2d::new(c_in)?)
                        .push(act_fn.build())
                        .push(Conv2d::new(c_in, c_out, 1)?.stride(2).bias(false)))
                })
                .transpose()?,
        })
    }
}

impl Forward for PreActResNetBlock {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        &self.net.forward(x)? + &self.downsample.forward(x)?
    }
}

/// `ResNet(num_classes, num_blocks, c_hidden, act_fn_name, block_name)`'s arguments with the
/// notebook's defaults: what a checkpoint's `model_hparams` holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct ResNetHparams {
    /// Classes (10 for CIFAR-10).
    pub num_classes: usize,
    /// Blocks per group; the first block of each group but the first subsamples.
    pub num_blocks: Vec<usize>,
    /// Channels per group.
    pub c_hidden: Vec<usize>,
    /// A key of [`act_fn_by_name`].
    pub act_fn_name: String,
    /// `"ResNetBlock"` or `"PreActResNetBlock"`.
    pub block_name: String,
}

impl Default for ResNetHparams {
    fn default() -> Self {
        let (act_fn_name, block_name) = ("relu".into(), "ResNetBlock".into());
        ResNetHparams {
            num_classes: 10,
            num_blocks: vec![3, 3, 3],
            c_hidden: vec![16, 32, 64],
            act_fn_name,
            block_name,
        }
    }
}

/// The tutorial's `ResNet`: `input_net`, `blocks`, `output_net`.
#[derive(Module)]
pub struct ResNet {
    /// The first convolution (with BN and activation for `ResNetBlock`).
    pub input_net: Sequential,
    /// The residual blocks.
    pub blocks: Sequential,
    /// `AdaptiveAvgPool2d((1, 1)), Flatten(), Linear(c_hidden[-1], num_classes)`.
    pub output_net: Sequential,
    /// What it was built from.
    #[module(skip)]
    pub hparams: ResNetHparams,
}

impl ResNet {
    /// `_create_network()` then `_init_params()` (kaiming-normal convolutions, fan-out, for the
    /// activation's gain; PyTorch's error for an activation without one), in training mode.
    pub fn new(hp: &ResNetHparams) -> Result<Self> {
        let (c, act) = (&hp.c_hidden, act_fn_by_name(&hp.act_fn_name)?);
        let nb = &hp.num_blocks;
        ensure!(!c.is_empty() && c.len() == nb.len(), "ResNet: c_hidden {c:?}, num_blocks {nb:?}");
        let preact = match hp.block_name.as_str() {
            "ResNetBlock" => false,
            "PreActResNetBlock" => true,
            b => bail!("unknown block {b:?}: ResNetBlock or PreActResNetBlock"),
        };
        let mut input_net = Sequential::new().push(Conv2d::new(3, c[0], 3)?.padding(1).bias(false));
        if !preact {
            input_net = input_net.push(BatchNorm2d::new(c[0])?).push(act.build());
        }
        let mut blocks = Sequential::new();
        for (idx, &count) in hp.num_blocks.iter().enumerate() {
            for bc in 0..count {
                let subsample = bc == 0 && idx > 0;
                let c_in = c[if subsample { idx - 1 } else { idx }];
                blocks = match preact {
                    true => blocks.push(PreActResNetBlock::new(c_in, &act, subsample, c[idx])?),
                    false => blocks.push(ResNetBlock::new(c_in, &act, subsample, c[idx])?),
                };
            }
        }
        let output_net = Sequential::new().push(AdaptiveAvgPool2d::new(1)).push(Flatten::new());
        let output_net = output_net.push(Linear::new(c[c.len() - 1], hp.num_classes)?);
        let mut model = ResNet { input_net, blocks, output_net, hparams: hp.clone() };
        model.apply(&mut |m| match m.as_any_mut() {
            Some(a) if a.is::<Conv2d>() => {
                let conv = a.downcast_mut::<Conv2d>().ok_or_else(|| Error::msg("Conv2d"))?;
                init::kaiming_normal_(&mut conv.weight, 0.0, FanMode::FanOut, &hp.act_fn_name)
            }
            _ => Ok(()), // BatchNorm2d starts at weight 1, bias 0 already.
        })?;
        Ok(model)
    }

    /// One of the tutorial's ResNet checkpoints (a Lightning `.ckpt` as published): sizes and
    /// block type from `hyper_parameters.model_hparams`, the `state_dict` loaded strictly
    /// (keys `model.…`). On the CPU, in eval mode; move it with `to_device`.
    pub fn from_checkpoint(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ck = Checkpoint::load(path)?;
        let mut model = ResNet::new(&ck.hparams("model_hparams").with_context(|| path.display())?)?;
        let sd = ck.state_dict(None)?;
        model
            .load_state_dict_with(&sd, true, |k| k.strip_prefix("model.").unwrap_or(k).into())
            .with_context(|| path.display())?;
        model.eval();
        Ok(model)
    }
}

impl Forward for ResNet {
    /// `x [N, 3, H, W]` (normalised CIFAR images) to logits `[N, num_classes]`.
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let x = self.input_net.forward(x)?;
        let x = self.blocks.forward(&x)?;
        self.output_net.forward(&x)
    }
}
