//! The ResNets of the UvA DL tutorial 5 ("Inception, ResNet and DenseNet"), ported class for
//! class: `ResNetBlock`, `PreActResNetBlock` and `ResNet` with the notebook's module tree,
//! attribute names and state-dict keys, so the published checkpoints load as they are — with
//! [`ResNet::from_checkpoint`], in one call: the Lightning file's `model.` prefix stripped and
//! its `hyper_parameters` read to build the right sizes and block type.
//!
//! Its 19 `BatchNorm2d` layers are where `register_buffer` earns its keep: their running
//! statistics are persistent buffers (saved, moved, never trained) and `num_batches_tracked`
//! an int64 buffer that counts the training steps (56862 in the published file).
//!
//! ```
//! use wgnn::tutorial5::{ResNet, ResNetHparams};
//! use wgnn::{Device, ModuleExt, Tensor, DType};
//! let mut model = ResNet::new(&ResNetHparams::default(), &Device::Cpu)?;
//! model.eval();
//! let x = Tensor::zeros(&[2, 3, 32, 32], DType::F32, &Device::Cpu)?;
//! assert_eq!(model.forward(&x)?.shape(), [2, 10]);
//! assert_eq!(model.named_buffers().len(), 57); // 19 BatchNorm2d × 3
//! # Ok::<(), wgnn::Error>(())
//! ```

use std::path::Path;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::module::{Forward, Layer, Module, Visitor, VisitorMut};
use crate::nn::{
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, LeakyReLU, Linear, ReLU, Tanh, GELU,
};
use crate::ops::{self, ConvOptions};
use crate::tensor::Tensor;
use crate::torch::{Checkpoint, PyValue};
use crate::Sequential;

/// `act_fn_by_name` of the notebook: `"tanh"`, `"relu"`, `"leakyrelu"`, `"gelu"`.
pub fn act_fn_by_name(name: &str) -> Result<Box<dyn Layer>> {
    Ok(match name {
        "tanh" => Box::new(Tanh {}),
        "relu" => Box::new(ReLU { inplace: false }),
        "leakyrelu" => Box::new(LeakyReLU::default()),
        "gelu" => Box::new(GELU::default()),
        other => {
            return Err(Error::invalid(format!(
                "unknown activation {other:?}: the tutorial's are \"tanh\", \"relu\", \
                 \"leakyrelu\" and \"gelu\""
            )))
        }
    })
}

/// Runs `seq` as `Sequential.forward` does, with one fusion where it changes no number: an
/// eval-mode `BatchNorm2d` followed by a `ReLU` runs as one pass
/// ([`ops::batch_norm_relu`], which falls back to the two ops where a gradient is recorded).
fn forward_fused(seq: &mut Sequential, x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    let mut i = 0;
    while i < seq.len() {
        let next_is_relu = seq
            .get_mut(i + 1)
            .and_then(|m| m.as_any_mut())
            .is_some_and(|a| a.is::<ReLU>());
        let item = seq
            .get_mut(i)
            .ok_or_else(|| Error::internal("Sequential index"))?;
        if next_is_relu {
            if let Some(bn) = item
                .as_any_mut()
                .and_then(|a| a.downcast_mut::<BatchNorm2d>())
                .filter(|bn| !bn.training && h.shape().len() == 4)
            {
                h = ops::batch_norm_relu(
                    &h,
                    bn.running_mean.tensor(),
                    bn.running_var.tensor(),
                    Some(bn.weight.tensor()),
                    Some(bn.bias.tensor()),
                    bn.eps,
                )?;
                i += 2;
                continue;
            }
        }
        h = item.forward(&h)?;
        i += 1;
    }
    Ok(h)
}

/// `act_fn(z + x)`, as one pass when the activation is a ReLU ([`ops::add_relu`]).
fn residual(act_fn: &mut Box<dyn Layer>, z: &Tensor, x: &Tensor) -> Result<Tensor> {
    if act_fn.as_any_mut().is_some_and(|a| a.is::<ReLU>()) && z.shape() == x.shape() {
        return ops::add_relu(z, x);
    }
    act_fn.forward(&ops::broadcast_add(z, x)?)
}

fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    bias: bool,
    d: &Device,
) -> Result<Conv2d> {
    Conv2d::new(
        c_in,
        c_out,
        (k, k),
        ConvOptions::default().stride(stride).padding(pad),
        bias,
        d,
    )
}

/// `ResNetBlock(c_in, act_fn, subsample, c_out)`: `net` (conv, BN, act, conv, BN), the
/// `downsample` 1 × 1 stride-2 convolution (with bias) when subsampling, and `act_fn` after the
/// residual sum.
pub struct ResNetBlock {
    /// `Conv2d, BatchNorm2d, act_fn, Conv2d, BatchNorm2d`.
    pub net: Sequential,
    /// `Conv2d(c_in, c_out, kernel_size=1, stride=2)` when subsampling (else absent, as the
    /// notebook's `None` attribute is no module).
    pub downsample: Option<Conv2d>,
    /// The activation after the sum.
    pub act_fn: Box<dyn Layer>,
}

impl ResNetBlock {
    /// Zero convolutions, fresh batch norms (load a checkpoint for real values).
    pub fn new(
        c_in: usize,
        act_fn: &str,
        subsample: bool,
        c_out: usize,
        d: &Device,
    ) -> Result<Self> {
        let c_out = if subsample { c_out } else { c_in };
        let stride = if subsample { 2 } else { 1 };
        Ok(ResNetBlock {
            net: Sequential::new()
                .push(conv(c_in, c_out, 3, stride, 1, false, d)?)
                .push(BatchNorm2d::new(c_out, d)?)
                .push_boxed(act_fn_by_name(act_fn)?)
                .push(conv(c_out, c_out, 3, 1, 1, false, d)?)
                .push(BatchNorm2d::new(c_out, d)?),
            downsample: subsample
                .then(|| conv(c_in, c_out, 1, 2, 0, true, d))
                .transpose()?,
            act_fn: act_fn_by_name(act_fn)?,
        })
    }
}

impl Module for ResNetBlock {
    fn type_name(&self) -> String {
        "ResNetBlock".into()
    }
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        v.module("net", &self.net);
        if let Some(d) = &self.downsample {
            v.module("downsample", d);
        }
        v.module("act_fn", self.act_fn.as_ref());
    }
    fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>) {
        v.module("net", &mut self.net);
        if let Some(d) = &mut self.downsample {
            v.module("downsample", d);
        }
        v.module("act_fn", self.act_fn.as_mut());
    }
}

impl Forward for ResNetBlock {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let z = forward_fused(&mut self.net, x)?;
        let x = match &mut self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        // out = act_fn(z + x)
        residual(&mut self.act_fn, &z, &x)
    }
}

/// `PreActResNetBlock(c_in, act_fn, subsample, c_out)`: `net` (BN, act, conv, BN, act, conv)
/// and, when subsampling, `downsample` (BN, act, 1 × 1 stride-2 conv without bias); no
/// activation after the sum.
pub struct PreActResNetBlock {
    /// `BatchNorm2d, act_fn, Conv2d, BatchNorm2d, act_fn, Conv2d`.
    pub net: Sequential,
    /// `BatchNorm2d, act_fn, Conv2d(kernel_size=1, stride=2, bias=False)` when subsampling.
    pub downsample: Option<Sequential>,
}

impl PreActResNetBlock {
    /// Zero convolutions, fresh batch norms.
    pub fn new(
        c_in: usize,
        act_fn: &str,
        subsample: bool,
        c_out: usize,
        d: &Device,
    ) -> Result<Self> {
        let c_out = if subsample { c_out } else { c_in };
        let stride = if subsample { 2 } else { 1 };
        Ok(PreActResNetBlock {
            net: Sequential::new()
                .push(BatchNorm2d::new(c_in, d)?)
                .push_boxed(act_fn_by_name(act_fn)?)
                .push(conv(c_in, c_out, 3, stride, 1, false, d)?)
                .push(BatchNorm2d::new(c_out, d)?)
                .push_boxed(act_fn_by_name(act_fn)?)
                .push(conv(c_out, c_out, 3, 1, 1, false, d)?),
            downsample: subsample
                .then(|| -> Result<Sequential> {
                    Ok(Sequential::new()
                        .push(BatchNorm2d::new(c_in, d)?)
                        .push_boxed(act_fn_by_name(act_fn)?)
                        .push(conv(c_in, c_out, 1, 2, 0, false, d)?))
                })
                .transpose()?,
        })
    }
}

impl Module for PreActResNetBlock {
    fn type_name(&self) -> String {
        "PreActResNetBlock".into()
    }
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        v.module("net", &self.net);
        if let Some(d) = &self.downsample {
            v.module("downsample", d);
        }
    }
    fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>) {
        v.module("net", &mut self.net);
        if let Some(d) = &mut self.downsample {
            v.module("downsample", d);
        }
    }
}

impl Forward for PreActResNetBlock {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let z = forward_fused(&mut self.net, x)?;
        let x = match &mut self.downsample {
            Some(d) => forward_fused(d, x)?,
            None => x.clone(),
        };
        ops::broadcast_add(&z, &x)
    }
}

/// `ResNet(num_classes, num_blocks, c_hidden, act_fn_name, block_name)`'s arguments, with the
/// notebook's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
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
        ResNetHparams {
            num_classes: 10,
            num_blocks: vec![3, 3, 3],
            c_hidden: vec![16, 32, 64],
            act_fn_name: "relu".into(),
            block_name: "ResNetBlock".into(),
        }
    }
}

impl ResNetHparams {
    /// The `model_hparams` dict of a Lightning checkpoint's `hyper_parameters` (missing keys
    /// take the constructor's defaults, as `ResNet(**model_hparams)` does).
    pub fn from_py(model_hparams: &PyValue) -> Result<Self> {
        let bad =
            |k: &str, what: &str| Error::invalid(format!("model_hparams.{k}: expected {what}"));
        let mut hp = ResNetHparams::default();
        let int = |v: &PyValue, k: &str| match v {
            PyValue::Int(i) => usize::try_from(*i).map_err(|_| bad(k, "a non-negative int")),
            _ => Err(bad(k, "an int")),
        };
        let ints = |v: &PyValue, k: &str| match v {
            PyValue::List(items) | PyValue::Tuple(items) => {
                items.iter().map(|i| int(i, k)).collect::<Result<Vec<_>>>()
            }
            _ => Err(bad(k, "a list of ints")),
        };
        let text = |v: &PyValue, k: &str| match v {
            PyValue::Str(s) => Ok(s.clone()),
            _ => Err(bad(k, "a string")),
        };
        if let Some(v) = model_hparams.get("num_classes") {
            hp.num_classes = int(v, "num_classes")?;
        }
        if let Some(v) = model_hparams.get("num_blocks") {
            hp.num_blocks = ints(v, "num_blocks")?;
        }
        if let Some(v) = model_hparams.get("c_hidden") {
            hp.c_hidden = ints(v, "c_hidden")?;
        }
        if let Some(v) = model_hparams.get("act_fn_name") {
            hp.act_fn_name = text(v, "act_fn_name")?;
        }
        if let Some(v) = model_hparams.get("block_name") {
            hp.block_name = text(v, "block_name")?;
        }
        Ok(hp)
    }

    fn check(&self) -> Result<()> {
        if self.num_blocks.len() != self.c_hidden.len() || self.c_hidden.is_empty() {
            return Err(Error::invalid(format!(
                "ResNet: num_blocks {:?} and c_hidden {:?} must be non-empty and of one length",
                self.num_blocks, self.c_hidden
            )));
        }
        if self.c_hidden.contains(&0) || self.num_classes == 0 {
            return Err(Error::invalid(
                "ResNet: channel and class counts must be positive",
            ));
        }
        if !matches!(
            self.block_name.as_str(),
            "ResNetBlock" | "PreActResNetBlock"
        ) {
            return Err(Error::invalid(format!(
                "unknown block {:?}: the tutorial's are \"ResNetBlock\" and \"PreActResNetBlock\"",
                self.block_name
            )));
        }
        act_fn_by_name(&self.act_fn_name).map(|_| ())
    }
}

/// The tutorial's `ResNet`: `input_net` (conv, and BN + act for `ResNetBlock`), `blocks`,
/// `output_net` (adaptive average pool to 1 × 1, flatten, linear).
pub struct ResNet {
    /// The first convolution (with BN and activation for `ResNetBlock`).
    pub input_net: Sequential,
    /// The residual blocks.
    pub blocks: Sequential,
    /// `AdaptiveAvgPool2d((1, 1)), Flatten(), Linear(c_hidden[-1], num_classes)`.
    pub output_net: Sequential,
    /// What it was built from.
    pub hparams: ResNetHparams,
}

impl Module for ResNet {
    fn type_name(&self) -> String {
        "ResNet".into()
    }
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        v.module("input_net", &self.input_net);
        v.module("blocks", &self.blocks);
        v.module("output_net", &self.output_net);
    }
    fn visit_mut<'a>(&'a mut self, v: &mut dyn VisitorMut<'a>) {
        v.module("input_net", &mut self.input_net);
        v.module("blocks", &mut self.blocks);
        v.module("output_net", &mut self.output_net);
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

impl ResNet {
    /// `_create_network()` with zero convolutions and fresh batch norms, in training mode (the
    /// notebook's `kaiming_normal_` init is for training from scratch; load a checkpoint for
    /// real weights).
    pub fn new(hp: &ResNetHparams, d: &Device) -> Result<Self> {
        hp.check()?;
        let c = &hp.c_hidden;
        let preact = hp.block_name == "PreActResNetBlock";
        let mut input_net = Sequential::new().push(conv(3, c[0], 3, 1, 1, false, d)?);
        if !preact {
            input_net = input_net
                .push(BatchNorm2d::new(c[0], d)?)
                .push_boxed(act_fn_by_name(&hp.act_fn_name)?);
        }
        let mut blocks = Sequential::new();
        for (idx, &count) in hp.num_blocks.iter().enumerate() {
            for bc in 0..count {
                let subsample = bc == 0 && idx > 0;
                let c_in = c[if subsample { idx - 1 } else { idx }];
                blocks = if preact {
                    blocks.push(PreActResNetBlock::new(
                        c_in,
                        &hp.act_fn_name,
                        subsample,
                        c[idx],
                        d,
                    )?)
                } else {
                    blocks.push(ResNetBlock::new(
                        c_in,
                        &hp.act_fn_name,
                        subsample,
                        c[idx],
                        d,
                    )?)
                };
            }
        }
        let last = *c.last().unwrap_or(&0);
        Ok(ResNet {
            input_net,
            blocks,
            output_net: Sequential::new()
                .push(AdaptiveAvgPool2d {
                    output_size: (1, 1),
                })
                .push(Flatten::default())
                .push(Linear::new(last, hp.num_classes, d)?),
            hparams: hp.clone(),
        })
    }

    /// One of the tutorial's ResNet checkpoints (a Lightning `.ckpt` as published, `torch.save`
    /// format): its `hyper_parameters.model_hparams` give the sizes and block type, its
    /// `state_dict` (keys `model.…`, the prefix stripped) the weights and buffers, strictly.
    /// The model is on the CPU in eval mode; move it with
    /// [`to_device`](crate::ModuleExt::to_device).
    pub fn from_checkpoint(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ck = Checkpoint::load(path)?;
        let hp = match ck.root.at("hyper_parameters.model_hparams") {
            Some(v) => ResNetHparams::from_py(v).map_err(|e| e.with_path(path))?,
            None => {
                return Err(Error::invalid(format!(
                    "{}: no hyper_parameters.model_hparams; is it one of the tutorial's ResNet \
                     checkpoints?",
                    path.display()
                )))
            }
        };
        let sd = ck.state_dict(None)?;
        let sd = if sd.keys().iter().all(|k| k.starts_with("model.")) {
            sd.strip_prefix("model.")
        } else {
            sd
        };
        let mut model = ResNet::new(&hp, &Device::Cpu)?;
        crate::ModuleExt::load_state_dict(&mut model, &sd, true).map_err(|e| e.with_path(path))?;
        crate::ModuleExt::eval(&mut model);
        Ok(model)
    }

    /// `forward(x)`: `x [N, 3, H, W]` (normalised CIFAR images) to logits `[N, num_classes]`.
    pub fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let x = forward_fused(&mut self.input_net, x)?;
        let x = self.blocks.forward(&x)?;
        self.output_net.forward(&x)
    }

    /// The output of `input_net` and of every block, then the logits (what the fixtures trace).
    pub fn forward_traced(&mut self, x: &Tensor) -> Result<(Vec<Tensor>, Tensor)> {
        let mut outs = vec![forward_fused(&mut self.input_net, x)?];
        for i in 0..self.blocks.len() {
            let prev = outs.last().cloned().unwrap_or_else(|| x.clone());
            let block = self
                .blocks
                .get_mut(i)
                .ok_or_else(|| Error::internal("block index"))?;
            outs.push(block.forward(&prev)?);
        }
        let last = outs.last().cloned().unwrap_or_else(|| x.clone());
        let logits = self.output_net.forward(&last)?;
        Ok((outs, logits))
    }
}

/// CIFAR-10's class names, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
