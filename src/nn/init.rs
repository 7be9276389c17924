//! `torch.nn.init`: PyTorch's initialisers, their gain table and the default initialisation of
//! its layers, drawing — as PyTorch does — from a global generator that
//! [`manual_seed`] seeds. Every layer's constructor initialises itself this
//! way (`Linear::new` is trainable as built). The stream is wgnn's [`Generator`] (not PyTorch's:
//! the same seed gives other numbers than `torch.manual_seed`, but the same distribution, and
//! the same numbers on the CPU and every GPU). [`with_generator`] runs code with a generator of
//! its own in place of the global one (what PyTorch's `generator=` argument does), so threads
//! that build models at once stay reproducible.
//!
//! ```
//! use wgnn::nn::{init, Linear};
//! use wgnn::{ModuleExt, Sequential};
//! wgnn::manual_seed(0);
//! let mut net = Sequential::new().push(Linear::new(512, 512)?).push(Linear::new(512, 10)?);
//! let w = net.get_parameter("0.weight")?.tensor().to_vec::<f32>()?;
//! let bound = 1.0 / (512f32).sqrt(); // kaiming_uniform_(a=√5), Linear's default
//! assert!(w.iter().all(|v| v.abs() <= bound));
//! // The tutorial 5 ResNet's own init: `nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")`.
//! init::kaiming_normal_(net.get_parameter_mut("0.weight")?, 0.0, "fan_out", "relu")?;
//! assert!(init::kaiming_normal_(net.get_parameter_mut("0.weight")?, 0.0, "fan", "relu").is_err());
//! assert_eq!(init::calculate_gain("leaky_relu", Some(0.2))?, (2.0f64 / (1.0 + 0.04)).sqrt());
//! assert!(init::calculate_gain("swish", None).is_err()); // PyTorch: "Unsupported nonlinearity swish"
//! # Ok::<(), wgnn::Error>(())
//! ```

use std::cell::RefCell;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::module::{Module, ModuleExt, Parameter};
use crate::nn::{BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, Embedding, LayerNorm, Linear};
use crate::ops::{self, Generator};
use crate::tensor::Tensor;

/// PyTorch's default seed (`torch.initial_seed()` of a fresh process is random; wgnn's is this
/// fixed one, so a program that builds its layers in the same order gets the same weights).
const DEFAULT_SEED: u64 = 67_280_421_310_721;

static GLOBAL: Mutex<Option<Generator>> = Mutex::new(None);

thread_local! {
    static LOCAL: RefCell<Option<Generator>> = const { RefCell::new(None) };
}

/// `torch.manual_seed(seed)`: restarts the global generator that layers' constructors and the
/// initialisers draw from.
pub fn manual_seed(seed: u64) {
    let mut g = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    *g = Some(Generator::new(seed));
}

/// Runs `f` with the global generator (or, inside [`with_generator`], the thread's own).
pub fn with_global<R>(f: impl FnOnce(&mut Generator) -> R) -> R {
    let local = LOCAL.with(|l| l.borrow_mut().take());
    if let Some(mut g) = local {
        let r = f(&mut g);
        LOCAL.with(|l| *l.borrow_mut() = Some(g));
        return r;
    }
    let mut guard = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(|| Generator::new(DEFAULT_SEED)))
}

/// Runs `f` on this thread with `g` standing in for the global generator (the constructors and
/// initialisers it calls draw from `g`, which advances): PyTorch's `generator=` argument, and a
/// way for tests running in parallel to stay reproducible.
///
/// ```
/// use wgnn::{nn::{init, Linear}, ops::Generator};
/// let a = init::with_generator(&mut Generator::new(7), || Linear::new(4, 4))?;
/// let b = init::with_generator(&mut Generator::new(7), || Linear::new(4, 4))?;
/// assert_eq!(a.weight.tensor().to_vec::<f32>()?, b.weight.tensor().to_vec::<f32>()?);
/// # Ok::<(), wgnn::Error>(())
/// ```
pub fn with_generator<R>(g: &mut Generator, f: impl FnOnce() -> R) -> R {
    let outer = LOCAL.with(|l| l.borrow_mut().replace(g.clone()));
    let r = f();
    if let Some(after) = LOCAL.with(|l| std::mem::replace(&mut *l.borrow_mut(), outer)) {
        *g = after;
    }
    r
}

/// `(fan_in, fan_out)` of a weight, as `torch.nn.init._calculate_fan_in_and_fan_out`.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::shape(
            "nn.init",
            format!(
                "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions \
                 (shape {shape:?})"
            ),
        ));
    }
    let rf: usize = shape[2..].iter().product();
    Ok((shape[1] * rf, shape[0] * rf))
}

/// `mode` of the Kaiming initialisers: keep the variance of the forward (`fan_in`, PyTorch's
/// default) or of the backward pass (`fan_out`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FanMode {
    /// `mode='fan_in'`.
    #[default]
    FanIn,
    /// `mode='fan_out'`.
    FanOut,
}

/// A Kaiming `mode`: [`FanMode`] or PyTorch's string (`"fan_in"`, `"fan_out"`).
pub trait Mode {
    /// The mode, or PyTorch's error for a string it does not know.
    fn mode(self) -> Result<FanMode>;
}
impl Mode for FanMode {
    fn mode(self) -> Result<FanMode> {
        Ok(self)
    }
}
impl Mode for &str {
    fn mode(self) -> Result<FanMode> {
        match self {
            "fan_in" => Ok(FanMode::FanIn),
            "fan_out" => Ok(FanMode::FanOut),
            m => Err(Error::invalid(format!(
                "Mode {m} not supported, please use one of fan_in, fan_out"
            ))),
        }
    }
}

/// `torch.nn.init.calculate_gain(nonlinearity, param)`: PyTorch's table — 1 for `linear`, the
/// `conv*` names and `sigmoid`; 5/3 for `tanh`; √2 for `relu`; √(2 / (1 + slope²)) for
/// `leaky_relu` (slope `param`, 0.01 by default); 3/4 for `selu`. Any other name is PyTorch's
/// error, `Unsupported nonlinearity …`.
pub fn calculate_gain(nonlinearity: &str, param: Option<f64>) -> Result<f64> {
    match nonlinearity {
        "linear" | "conv1d" | "conv2d" | "conv3d" | "conv_transpose1d" | "conv_transpose2d"
        | "conv_transpose3d" | "sigmoid" => Ok(1.0),
        "tanh" => Ok(5.0 / 3.0),
        "relu" => Ok(2f64.sqrt()),
        "leaky_relu" => {
            let slope = param.unwrap_or(0.01);
            if !slope.is_finite() {
                return Err(Error::invalid(format!(
                    "negative_slope {slope} not a valid number"
                )));
            }
            Ok((2.0 / (1.0 + slope * slope)).sqrt())
        }
        "selu" => Ok(0.75),
        other => Err(Error::invalid(format!("Unsupported nonlinearity {other}"))),
    }
}

/// A new value for `p` on its device, from host values.
fn set_host(p: &mut Parameter, v: Vec<f32>) -> Result<()> {
    let t = p.tensor();
    let out = Tensor::from_slice(&v, t.shape())?
        .to_dtype(t.dtype())?
        .to(&t.device())?;
    p.set_tensor(out)
}

/// Only floating-point parameters take random values.
fn check_float(p: &Parameter, what: &str) -> Result<()> {
    if p.tensor().dtype().is_float() {
        Ok(())
    } else {
        Err(Error::Dtype {
            op: format!("nn.init.{what}"),
            expected: "a floating-point parameter".into(),
            got: p.tensor().dtype().name().into(),
        })
    }
}

/// `uniform_(p, a, b)`: values uniform in `[a, b)`, drawn on the parameter's device.
pub fn uniform_(p: &mut Parameter, a: f64, b: f64) -> Result<()> {
    check_float(p, "uniform_")?;
    let t = p.tensor();
    let u = with_global(|g| ops::uniform(t.shape(), a as f32, b as f32, g, &t.device()))?;
    let u = u.to_dtype(t.dtype())?;
    p.set_tensor(u)
}

/// `normal_(p, mean, std)`.
pub fn normal_(p: &mut Parameter, mean: f64, std: f64) -> Result<()> {
    check_float(p, "normal_")?;
    if std.is_nan() || std < 0.0 {
        return Err(Error::invalid(format!(
            "normal_: std must be ≥ 0, got {std}"
        )));
    }
    let n = with_global(|g| ops::normal(p.tensor().shape(), g, &crate::Device::Cpu))?;
    let v = n
        .to_vec::<f32>()?
        .into_iter()
        .map(|x| (x as f64 * std + mean) as f32)
        .collect();
    set_host(p, v)
}

/// `constant_(p, v)`.
pub fn constant_(p: &mut Parameter, v: f64) -> Result<()> {
    let t = p.tensor();
    let out = Tensor::full(t.shape(), v as f32, &t.device())?.to_dtype(t.dtype())?;
    p.set_tensor(out)
}

/// `zeros_(p)`.
pub fn zeros_(p: &mut Parameter) -> Result<()> {
    constant_(p, 0.0)
}

/// `ones_(p)`.
pub fn ones_(p: &mut Parameter) -> Result<()> {
    constant_(p, 1.0)
}

/// Kaiming's standard deviation: `gain / √fan`.
fn kaiming_std(p: &Parameter, a: f64, mode: impl Mode, nonlinearity: &str) -> Result<f64> {
    let (fan_in, fan_out) = fans(p.tensor().shape())?;
    let fan = match mode.mode()? {
        FanMode::FanIn => fan_in,
        FanMode::FanOut => fan_out,
    };
    if fan == 0 {
        return Err(Error::invalid(format!(
            "Initializing zero-element tensors is a no-op (shape {:?})",
            p.tensor().shape()
        )));
    }
    let gain = calculate_gain(nonlinearity, Some(a))?;
    Ok(gain / (fan as f64).sqrt())
}

/// `kaiming_uniform_(p, a, mode, nonlinearity)`: uniform in `±gain · √(3 / fan)`, the gain of
/// [`calculate_gain`] (`a` is `leaky_relu`'s slope; PyTorch's defaults are `a = 0`,
/// `"fan_in"`, `"leaky_relu"`). `mode` is a [`FanMode`] or PyTorch's string.
pub fn kaiming_uniform_(
    p: &mut Parameter,
    a: f64,
    mode: impl Mode,
    nonlinearity: &str,
) -> Result<()> {
    let bound = 3f64.sqrt() * kaiming_std(p, a, mode, nonlinearity)?;
    uniform_(p, -bound, bound)
}

/// `kaiming_normal_(p, a, mode, nonlinearity)`: normal with std `gain / √fan` (`mode` a
/// [`FanMode`] or `"fan_in"` / `"fan_out"`).
pub fn kaiming_normal_(
    p: &mut Parameter,
    a: f64,
    mode: impl Mode,
    nonlinearity: &str,
) -> Result<()> {
    let std = kaiming_std(p, a, mode, nonlinearity)?;
    normal_(p, 0.0, std)
}

/// `xavier_uniform_(p, gain)`: uniform in `±gain · √(6 / (fan_in + fan_out))` (the tutorial 6
/// attention projections use it).
pub fn xavier_uniform_(p: &mut Parameter, gain: f64) -> Result<()> {
    let (fan_in, fan_out) = fans(p.tensor().shape())?;
    let bound = gain * (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    uniform_(p, -bound, bound)
}

/// `xavier_normal_(p, gain)`: normal with std `gain · √(2 / (fan_in + fan_out))`.
pub fn xavier_normal_(p: &mut Parameter, gain: f64) -> Result<()> {
    let (fan_in, fan_out) = fans(p.tensor().shape())?;
    normal_(
        p,
        0.0,
        gain * (2.0 / (fan_in + fan_out).max(1) as f64).sqrt(),
    )
}

/// `Linear.reset_parameters()`: weight `kaiming_uniform_(a=√5)` (bound `1/√fan_in`), bias
/// uniform in `±1/√fan_in`.
pub fn linear_(l: &mut Linear) -> Result<()> {
    // The same rule as the convolutions' (PyTorch writes it twice too).
    conv_(&mut l.weight, l.bias.as_mut())
}

/// `_ConvNd.reset_parameters()`: weight `kaiming_uniform_(a=√5)` (bound `1/√fan_in`, fan_in =
/// in_channels / groups · kernel elements), bias uniform in `±1/√fan_in`.
pub fn conv_(weight: &mut Parameter, bias: Option<&mut Parameter>) -> Result<()> {
    let (fan_in, _) = fans(weight.tensor().shape())?;
    if fan_in > 0 {
        kaiming_uniform_(weight, 5f64.sqrt(), FanMode::FanIn, "leaky_relu")?;
    }
    if let Some(b) = bias {
        let bound = if fan_in > 0 {
            1.0 / (fan_in as f64).sqrt()
        } else {
            0.0
        };
        uniform_(b, -bound, bound)?;
    }
    Ok(())
}

/// PyTorch's `reset_parameters()` of one module, when it is a layer wgnn knows: `Linear`
/// (above), `Conv1d` / `Conv2d` ([`conv_`]), `LayerNorm`, `BatchNorm1d` and `BatchNorm2d`
/// (weight 1, bias 0), `Embedding` (`normal_(0, 1)`). Returns whether it was one.
pub fn reset_module(m: &mut dyn Module) -> Result<bool> {
    let Some(any) = m.as_any_mut() else {
        return Ok(false);
    };
    if let Some(l) = any.downcast_mut::<Linear>() {
        linear_(l)?;
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
        conv_(&mut c.weight, c.bias.as_mut())?;
    } else if let Some(c) = any.downcast_mut::<Conv1d>() {
        conv_(&mut c.weight, c.bias.as_mut())?;
    } else if let Some(e) = any.downcast_mut::<Embedding>() {
        normal_(&mut e.weight, 0.0, 1.0)?;
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// PyTorch's default initialisation of every layer of a tree again (children first, as
/// `module.apply`), from the global generator; the first error stops it.
pub fn reset_parameters(model: &mut impl ModuleExt) -> Result<()> {
    model.apply(&mut |m| reset_module(m).map(|_| ()))
}
