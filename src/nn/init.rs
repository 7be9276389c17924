//! `torch.nn.init`, seeded: PyTorch's initialisers and the default initialisation of its
//! layers, so a model built from scratch can train from its first step as PyTorch's does. The
//! values come from a [`Generator`] (not PyTorch's stream: the same seed gives other numbers
//! than `torch.manual_seed`, but the same numbers on the CPU and every GPU). Uniform values are
//! drawn on the parameter's device; normal ones on the host (see [`ops::normal`]).
//!
//! ```
//! use wgnn::nn::{init, Linear};
//! use wgnn::{ops::Generator, Device, ModuleExt, Sequential};
//! let mut net = Sequential::new()
//!     .push(Linear::new(512, 512, &Device::Cpu)?)
//!     .push(Linear::new(512, 10, &Device::Cpu)?);
//! let mut g = Generator::new(0);
//! // `model.apply(model._init_weights)`: PyTorch's defaults for every layer of the tree.
//! init::reset_parameters(&mut net, &mut g)?;
//! let w = net.get_parameter("0.weight")?.tensor().to_vec::<f32>()?;
//! let bound = 1.0 / (512f32).sqrt(); // kaiming_uniform_(a=√5)
//! assert!(w.iter().all(|v| v.abs() <= bound));
//! # Ok::<(), wgnn::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::module::{Module, ModuleExt, Parameter};
use crate::nn::{BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, Embedding, LayerNorm, Linear};
use crate::ops::{self, Generator};
use crate::tensor::Tensor;

/// `(fan_in, fan_out)` of a weight, as `torch.nn.init._calculate_fan_in_and_fan_out`.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::shape(
            "nn.init",
            format!("fan in and fan out need at least 2 dimensions, got shape {shape:?}"),
        ));
    }
    let rf: usize = shape[2..].iter().product();
    Ok((shape[1] * rf, shape[0] * rf))
}

fn set(p: &mut Parameter, t: Tensor) -> Result<()> {
    p.set_tensor(t)
}

/// `uniform_(p, a, b)`.
pub fn uniform_(p: &mut Parameter, a: f32, b: f32, g: &mut Generator) -> Result<()> {
    let t = p.tensor();
    let u = ops::uniform(t.shape(), a, b, g, &t.device())?;
    set(p, u)
}

/// `normal_(p, mean, std)`.
pub fn normal_(p: &mut Parameter, mean: f32, std: f32, g: &mut Generator) -> Result<()> {
    let t = p.tensor();
    let n = ops::normal(t.shape(), g, &crate::Device::Cpu)?;
    let v: Vec<f32> = n
        .to_vec::<f32>()?
        .into_iter()
        .map(|x| x * std + mean)
        .collect();
    let out = Tensor::from_slice(&v, t.shape())?.to(&t.device())?;
    set(p, out)
}

/// `constant_(p, v)`.
pub fn constant_(p: &mut Parameter, v: f32) -> Result<()> {
    let t = p.tensor();
    let out = Tensor::full(t.shape(), v, &t.device())?;
    set(p, out)
}

/// `zeros_(p)`.
pub fn zeros_(p: &mut Parameter) -> Result<()> {
    constant_(p, 0.0)
}

/// `ones_(p)`.
pub fn ones_(p: &mut Parameter) -> Result<()> {
    constant_(p, 1.0)
}

/// `kaiming_uniform_(p, a, mode='fan_in', nonlinearity='leaky_relu')`: bound
/// `√(2 / (1 + a²)) · √(3 / fan_in)`.
pub fn kaiming_uniform_(p: &mut Parameter, a: f64, g: &mut Generator) -> Result<()> {
    let (fan_in, _) = fans(p.tensor().shape())?;
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let bound = (gain * (3.0 / fan_in.max(1) as f64).sqrt()) as f32;
    uniform_(p, -bound, bound, g)
}

/// `xavier_uniform_(p, gain)`: bound `gain · √(6 / (fan_in + fan_out))` (the tutorial's
/// attention projections use it).
pub fn xavier_uniform_(p: &mut Parameter, gain: f64, g: &mut Generator) -> Result<()> {
    let (fan_in, fan_out) = fans(p.tensor().shape())?;
    let bound = (gain * (6.0 / (fan_in + fan_out).max(1) as f64).sqrt()) as f32;
    uniform_(p, -bound, bound, g)
}

/// `Linear.reset_parameters()`: weight `kaiming_uniform_(a=√5)` (bound `1/√fan_in`), bias
/// uniform in `±1/√fan_in`.
pub fn linear_(l: &mut Linear, g: &mut Generator) -> Result<()> {
    // The same rule as the convolutions' (PyTorch writes it twice too).
    conv_(&mut l.weight, l.bias.as_mut(), g)
}

/// `_ConvNd.reset_parameters()`: weight `kaiming_uniform_(a=√5)` (bound `1/√fan_in`, fan_in =
/// in_channels / groups · kernel elements), bias uniform in `±1/√fan_in`.
pub fn conv_(
    weight: &mut Parameter,
    bias: Option<&mut Parameter>,
    g: &mut Generator,
) -> Result<()> {
    kaiming_uniform_(weight, 5f64.sqrt(), g)?;
    if let Some(b) = bias {
        let (fan_in, _) = fans(weight.tensor().shape())?;
        let bound = if fan_in > 0 {
            (1.0 / (fan_in as f64).sqrt()) as f32
        } else {
            0.0
        };
        uniform_(b, -bound, bound, g)?;
    }
    Ok(())
}

/// PyTorch's `reset_parameters()` of one module, when it is a layer wgnn knows: `Linear`
/// (above), `Conv1d` / `Conv2d` ([`conv_`]), `LayerNorm`, `BatchNorm1d` and `BatchNorm2d`
/// (weight 1, bias 0), `Embedding` (`normal_(0, 1)`).
/// Returns whether it was one.
pub fn reset_module(m: &mut dyn Module, g: &mut Generator) -> Result<bool> {
    let Some(any) = m.as_any_mut() else {
        return Ok(false);
    };
    if let Some(l) = any.downcast_mut::<Linear>() {
        linear_(l, g)?;
    } else if let Some(n) = any.downcast_mut::<LayerNorm>() {
        ones_(&mut n.weight)?;
        zeros_(&mut n.bias)?;
    } else if let Some(n) = any.downcast_mut::<BatchNorm1d>() {
        ones_(&mut n.weight)?;
        zeros_(&mut n.bias)?;
    } else if let Some(n) = any.downcast_mut::<BatchNorm2d>() {
        ones_(&mut n.weight)?;
        zeros_(&mut n.bias)?;
    } else if let Some(c) = any.downcast_mut::<Conv2d>() {
        conv_(&mut c.weight, c.bias.as_mut(), g)?;
    } else if let Some(c) = any.downcast_mut::<Conv1d>() {
        conv_(&mut c.weight, c.bias.as_mut(), g)?;
    } else if let Some(e) = any.downcast_mut::<Embedding>() {
        normal_(&mut e.weight, 0.0, 1.0, g)?;
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// PyTorch's default initialisation of every layer of a tree (children first, as
/// `module.apply`); the first error stops it.
pub fn reset_parameters(model: &mut impl ModuleExt, g: &mut Generator) -> Result<()> {
    let mut result = Ok(());
    model.apply(&mut |m| {
        if result.is_ok() {
            result = reset_module(m, g).map(|_| ());
        }
    });
    result
}
