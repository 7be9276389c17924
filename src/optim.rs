//! Optimizers as PyTorch has them — [`Adam`] and [`SGD`] (momentum) — with
//! [`clip_grad_norm_`], and the tutorial's learning-rate schedule.
//!
//! An optimizer does not hold references into the model (Rust would not let the model change
//! while it did): it is built from the model's parameter list, remembers the dotted names in
//! `parameters()` order (PyTorch's parameter indices), keeps its state on the parameters'
//! device, and `step(&mut model)` replaces each parameter that has a gradient by its update.
//! Parameters without a gradient (frozen ones, or ones no backward reached) are skipped, as in
//! PyTorch. The updates run on the device where the parameters are, in PyTorch's single-tensor
//! order (see `shaders/adam.wgsl`), inside [`no_grad`].
//!
//! ```
//! use wgnn::{nn::Linear, ops, optim::Adam, Device, Forward, ModuleExt, Tensor};
//! let mut layer = Linear::new(3, 1)?;
//! let mut opt = Adam::new(&layer, 0.1);
//! let x = Tensor::from_slice(&[1f32, 2., 3.], &[1, 3])?;
//! let before = layer.weight.tensor().to_vec::<f32>()?;
//! let loss = ops::mean(&layer.forward(&x)?)?;
//! loss.backward()?;
//! opt.step(&mut layer)?;
//! assert_ne!(layer.weight.tensor().to_vec::<f32>()?, before);
//! layer.zero_grad();
//! assert!(layer.weight.grad().is_none());
//! # Ok::<(), wgnn::Error>(())
//! ```

use std::collections::HashMap;

use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::module::walk::{for_each_mut, Slot};
use crate::module::{Module, ModuleExt};
use crate::ops::update::{update, Hyper, Update};
use crate::state_dict::StateDict;
use crate::tensor::Tensor;

/// The tutorial's `CosineWarmupScheduler(optimizer, warmup, max_iters)`, stepped once per batch:
/// the factor is `0.5 · (1 + cos(π · step / max_iters))`, multiplied by `step / warmup` while
/// `step ≤ warmup`; the learning rate of step `k + 1` is `base_lr · factor(k)` (so the first
/// step has learning rate 0, as in the tutorial).
///
/// ```
/// use wgnn::optim::CosineWarmupScheduler;
/// let s = CosineWarmupScheduler::new(50, 3900);
/// assert_eq!(s.lr_factor(0), 0.0);
/// assert!((s.lr(5e-4, 50) - 5e-4 * 0.5 * (1.0 + (std::f64::consts::PI * 50.0 / 3900.0).cos())).abs() < 1e-18);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineWarmupScheduler {
    /// Steps of linear warm-up.
    pub warmup: usize,
    /// Steps of the whole cosine.
    pub max_iters: usize,
}

impl CosineWarmupScheduler {
    /// The schedule.
    pub fn new(warmup: usize, max_iters: usize) -> Self {
        CosineWarmupScheduler { warmup, max_iters }
    }
    /// `get_lr_factor(epoch)`, in f64 as the tutorial's numpy computes it.
    pub fn lr_factor(&self, epoch: usize) -> f64 {
        let e = epoch as f64;
        let mut f = 0.5 * (1.0 + (std::f64::consts::PI * e / self.max_iters.max(1) as f64).cos());
        if epoch <= self.warmup {
            f *= e * 1.0 / self.warmup.max(1) as f64;
        }
        f
    }
    /// The learning rate at `epoch` (the scheduler's `last_epoch`) for `base_lr`.
    pub fn lr(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * self.lr_factor(epoch)
    }
}

/// The parameters' dotted names in `parameters()` order.
fn parameter_names(model: &dyn Module) -> Vec<String> {
    model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Calls `f(index, name, parameter)` for every parameter that has a gradient, `index` being its
/// position in the optimizer's list; a parameter the optimizer does not know is an error.
fn for_each_with_grad(
    model: &mut dyn Module,
    names: &[String],
    mut f: impl FnMut(usize, &str, &mut crate::Parameter, Tensor) -> Result<()>,
) -> Result<()> {
    let mut first_err: Option<Error> = None;
    for_each_mut(model, &mut |path, slot| {
        if first_err.is_some() {
            return;
        }
        if let Slot::Param(p) = slot {
            let Some(g) = p.grad() else { return };
            let r = match names.iter().position(|n| n == path) {
                Some(i) => f(i, path, p, g),
                None => Err(Error::invalid(format!(
                    "optimizer step: the parameter {path:?} was not in the model the optimizer \
                     was built from"
                ))),
            };
            if let Err(e) = r {
                first_err = Some(e);
            }
        }
    });
    first_err.map_or(Ok(()), Err)
}

/// The first param group of an optimizer state dict written by `kind`'s `state_dict`, after
/// checking that it was saved for the parameters `names`.
fn read_header(sd: &StateDict, kind: &str, names: &[String]) -> Result<serde_json::Value> {
    let meta = sd.metadata();
    let bad = |why: String| Error::invalid(format!("{kind}::load_state_dict: {why}"));
    if meta.get("optimizer").map(String::as_str) != Some(kind) {
        return Err(bad(format!(
            "not an {kind} state dict (metadata optimizer != {kind})"
        )));
    }
    let saved: Vec<String> = meta
        .get("param_names")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| bad("no param_names in the metadata".into()))?;
    if saved != names {
        return Err(bad(format!(
            "saved for parameters {saved:?}, this optimizer has {names:?}"
        )));
    }
    let group: serde_json::Value = meta
        .get("param_groups")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| bad("no param_groups in the metadata".into()))?;
    Ok(group[0].clone())
}

/// A number of a param group, or an error naming it.
fn group_number(g: &serde_json::Value, key: &str, kind: &str) -> Result<f64> {
    g[key]
        .as_f64()
        .ok_or_else(|| Error::invalid(format!("{kind}::load_state_dict: param_groups lacks {key}")))
}

/// The state of one parameter of [`Adam`].
#[derive(Clone, Debug)]
pub struct AdamState {
    /// Steps taken for this parameter (PyTorch's `state[i]['step']`).
    pub step: u64,
    /// First moment (`exp_avg`), on the parameter's device.
    pub exp_avg: Tensor,
    /// Second moment (`exp_avg_sq`).
    pub exp_avg_sq: Tensor,
}

/// `torch.optim.Adam(model.parameters(), lr, betas, eps, weight_decay)` (no amsgrad): PyTorch's
/// single-tensor update — `g += wd·p`; `m.lerp_(g, 1-β1)`; `v = v·β2 + (1-β2)·g·g`;
/// `p -= lr/(1-β1ᵗ) · m / (√v / √(1-β2ᵗ) + eps)` — with the scalars in f64 and the tensors in
/// float32 as PyTorch computes them. Matches PyTorch's parameters after 20 steps of the
/// tutorial's training within the bounds `tests/autograd.rs` states.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate (a scheduler sets it before each step).
    pub lr: f64,
    /// (β1, β2).
    pub betas: (f64, f64),
    /// Added to the denominator, outside the square root.
    pub eps: f64,
    /// L2 penalty added to the gradient (Adam's, not AdamW's decoupled decay).
    pub weight_decay: f64,
    names: Vec<String>,
    state: HashMap<usize, AdamState>,
}

impl Adam {
    /// Adam over every parameter of `model` (frozen ones included, as `model.parameters()`
    /// hands them over: they are skipped while they have no gradient), with PyTorch's defaults
    /// `betas = (0.9, 0.999)`, `eps = 1e-8`, no weight decay.
    pub fn new(model: &dyn Module, lr: f64) -> Self {
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            names: parameter_names(model),
            state: HashMap::new(),
        }
    }

    /// The dotted parameter names, in the order of PyTorch's parameter indices.
    pub fn parameter_names(&self) -> &[String] {
        &self.names
    }

    /// The state of the parameter at `index` (None before its first step).
    pub fn state(&self, index: usize) -> Option<&AdamState> {
        self.state.get(&index)
    }

    /// `optimizer.step()`: updates every parameter of `model` that has a gradient.
    pub fn step(&mut self, model: &mut dyn Module) -> Result<()> {
        let (b1, b2) = self.betas;
        if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) || self.eps < 0.0 || self.lr < 0.0
        {
            return Err(Error::invalid(format!(
                "Adam: invalid hyper-parameters lr={} betas=({b1}, {b2}) eps={}",
                self.lr, self.eps
            )));
        }
        let (lr, eps, wd) = (self.lr, self.eps, self.weight_decay);
        let (names, state) = (&self.names, &mut self.state);
        no_grad(|| {
            for_each_with_grad(model, names, |i, _, p, g| {
                let pt = p.tensor().detach();
                let st = match state.remove(&i) {
                    Some(s) => s,
                    None => AdamState {
                        step: 0,
                        exp_avg: Tensor::zeros(pt.shape(), pt.dtype(), &pt.device())?,
                        exp_avg_sq: Tensor::zeros(pt.shape(), pt.dtype(), &pt.device())?,
                    },
                };
                let step = st.step + 1;
                let bc1 = 1.0 - b1.powf(step as f64);
                let bc2 = 1.0 - b2.powf(step as f64);
                let h = Hyper {
                    one_minus_beta1: (1.0 - b1) as f32,
                    beta2: b2 as f32,
                    one_minus_beta2: (1.0 - b2) as f32,
                    weight_decay: wd as f32,
                    neg_step: (-(lr / bc1)) as f32,
                    bc2_sqrt: bc2.sqrt() as f32,
                    eps: eps as f32,
                    momentum: 0.0,
                };
                let m = update(Update::AdamExpAvg, h, &pt, &g, &st.exp_avg, &st.exp_avg_sq)?;
                let v = update(
                    Update::AdamExpAvgSq,
                    h,
                    &pt,
                    &g,
                    &st.exp_avg,
                    &st.exp_avg_sq,
                )?;
                let new = update(Update::AdamParam, h, &pt, &g, &m, &v)?;
                p.set(new);
                state.insert(
                    i,
                    AdamState {
                        step,
                        exp_avg: m,
                        exp_avg_sq: v,
                    },
                );
                Ok(())
            })
        })
    }

    /// `optimizer.state_dict()` as tensors: `state.<i>.step` (0-d float32, as PyTorch keeps
    /// it), `state.<i>.exp_avg`, `state.<i>.exp_avg_sq` (CPU copies), with the hyper-parameters
    /// (`param_groups`, PyTorch's JSON shape) and the parameter names in the metadata.
    pub fn state_dict(&self) -> Result<StateDict> {
        let mut sd = StateDict::new();
        let mut keys: Vec<&usize> = self.state.keys().collect();
        keys.sort();
        for i in keys {
            let s = &self.state[i];
            sd.insert(
                format!("state.{i}.step"),
                Tensor::from_slice(&[s.step as f32], &[])?,
            );
            sd.insert(
                format!("state.{i}.exp_avg"),
                s.exp_avg.to(&crate::Device::Cpu)?,
            );
            sd.insert(
                format!("state.{i}.exp_avg_sq"),
                s.exp_avg_sq.to(&crate::Device::Cpu)?,
            );
        }
        let group = serde_json::json!([{
            "lr": self.lr, "betas": [self.betas.0, self.betas.1], "eps": self.eps,
            "weight_decay": self.weight_decay, "amsgrad": false, "maximize": false,
            "params": (0..self.names.len()).collect::<Vec<_>>(),
        }]);
        sd.set_metadata("optimizer", "Adam");
        sd.set_metadata("param_groups", group.to_string());
        sd.set_metadata("param_names", serde_json::json!(self.names).to_string());
        Ok(sd)
    }

    /// `optimizer.load_state_dict(sd)` from [`Adam::state_dict`]: the hyper-parameters and the
    /// per-parameter state, moved to `device` (the parameters' device). Checked first: the
    /// parameter names must be this optimizer's, every index known, shapes as saved; on error
    /// nothing changes.
    pub fn load_state_dict(&mut self, sd: &StateDict, device: &crate::Device) -> Result<()> {
        let bad = |why: String| Error::invalid(format!("Adam::load_state_dict: {why}"));
        let g = read_header(sd, "Adam", &self.names)?;
        let (lr, eps, wd) = (
            group_number(&g, "lr", "Adam")?,
            group_number(&g, "eps", "Adam")?,
            group_number(&g, "weight_decay", "Adam")?,
        );
        let betas = (
            g["betas"][0].as_f64().ok_or_else(|| bad("betas".into()))?,
            g["betas"][1].as_f64().ok_or_else(|| bad("betas".into()))?,
        );
        let mut state = HashMap::new();
        for key in sd.keys() {
            let rest = key
                .strip_prefix("state.")
                .ok_or_else(|| bad(format!("unexpected key {key:?}")))?;
            let (i, field) = rest
                .split_once('.')
                .ok_or_else(|| bad(format!("unexpected key {key:?}")))?;
            let i: usize = i
                .parse()
                .map_err(|_| bad(format!("unexpected key {key:?}")))?;
            if i >= self.names.len() || !["step", "exp_avg", "exp_avg_sq"].contains(&field) {
                return Err(bad(format!("unexpected key {key:?}")));
            }
            if field != "step" {
                continue;
            }
            let get = |f: &str| {
                sd.get(&format!("state.{i}.{f}"))
                    .ok_or_else(|| bad(format!("state {i} lacks {f}")))
            };
            let step = get("step")?.to_dtype(crate::DType::F32)?.item::<f32>()?;
            let (m, v) = (get("exp_avg")?, get("exp_avg_sq")?);
            if m.shape() != v.shape() || !(step >= 1.0 && step.fract() == 0.0) {
                return Err(bad(format!("state {i} is inconsistent")));
            }
            state.insert(
                i,
                AdamState {
                    step: step as u64,
                    exp_avg: m.to(device)?,
                    exp_avg_sq: v.to(device)?,
                },
            );
        }
        (self.lr, self.eps, self.weight_decay, self.betas) = (lr, eps, wd, betas);
        self.state = state;
        Ok(())
    }
}

/// `torch.optim.SGD(model.parameters(), lr, momentum, weight_decay)` (dampening 0, no
/// Nesterov): `g += wd·p`; with momentum `b = g` on the first step, then `b = μ·b + g`;
/// `p -= lr·b` (or `lr·g` without momentum), in float32 as PyTorch computes it.
#[derive(Clone, Debug)]
pub struct SGD {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: plain SGD).
    pub momentum: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    names: Vec<String>,
    buffers: HashMap<usize, Tensor>,
}

impl SGD {
    /// SGD over every parameter of `model`.
    pub fn new(model: &dyn Module, lr: f64, momentum: f64) -> Self {
        SGD {
            lr,
            momentum,
            weight_decay: 0.0,
            names: parameter_names(model),
            buffers: HashMap::new(),
        }
    }

    /// The momentum buffer of the parameter at `index`.
    pub fn momentum_buffer(&self, index: usize) -> Option<&Tensor> {
        self.buffers.get(&index)
    }

    /// `optimizer.step()`.
    pub fn step(&mut self, model: &mut dyn Module) -> Result<()> {
        if self.lr < 0.0 || self.momentum < 0.0 {
            return Err(Error::invalid(format!(
                "SGD: invalid hyper-parameters lr={} momentum={}",
                self.lr, self.momentum
            )));
        }
        let h = Hyper {
            weight_decay: self.weight_decay as f32,
            neg_step: (-self.lr) as f32,
            momentum: self.momentum as f32,
            ..Default::default()
        };
        let (names, buffers) = (&self.names, &mut self.buffers);
        let use_momentum = self.momentum != 0.0;
        no_grad(|| {
            for_each_with_grad(model, names, |i, _, p, g| {
                let pt = p.tensor().detach();
                let new = if use_momentum {
                    let b = match buffers.remove(&i) {
                        Some(b) => update(Update::SgdBuffer, h, &pt, &g, &b, &pt)?,
                        None => {
                            // The first buffer is the (decayed) gradient itself.
                            let zeros = Tensor::zeros(pt.shape(), pt.dtype(), &pt.device())?;
                            let h0 = Hyper { momentum: 0.0, ..h };
                            update(Update::SgdBuffer, h0, &pt, &g, &zeros, &pt)?
                        }
                    };
                    let new = update(Update::SgdParamMomentum, h, &pt, &g, &b, &pt)?;
                    buffers.insert(i, b);
                    new
                } else {
                    update(Update::SgdParam, h, &pt, &g, &pt, &pt)?
                };
                p.set(new);
                Ok(())
            })
        })
    }

    /// `optimizer.state_dict()`: `state.<i>.momentum_buffer` and the hyper-parameters.
    pub fn state_dict(&self) -> Result<StateDict> {
        let mut sd = StateDict::new();
        let mut keys: Vec<&usize> = self.buffers.keys().collect();
        keys.sort();
        for i in keys {
            sd.insert(
                format!("state.{i}.momentum_buffer"),
                self.buffers[i].to(&crate::Device::Cpu)?,
            );
        }
        let group = serde_json::json!([{
            "lr": self.lr, "momentum": self.momentum, "dampening": 0.0,
            "weight_decay": self.weight_decay, "nesterov": false,
            "params": (0..self.names.len()).collect::<Vec<_>>(),
        }]);
        sd.set_metadata("optimizer", "SGD");
        sd.set_metadata("param_groups", group.to_string());
        sd.set_metadata("param_names", serde_json::json!(self.names).to_string());
        Ok(sd)
    }

    /// `optimizer.load_state_dict(sd)` from [`SGD::state_dict`], buffers moved to `device`.
    pub fn load_state_dict(&mut self, sd: &StateDict, device: &crate::Device) -> Result<()> {
        let bad = |why: String| Error::invalid(format!("SGD::load_state_dict: {why}"));
        let g = read_header(sd, "SGD", &self.names)?;
        let (lr, momentum, wd) = (
            group_number(&g, "lr", "SGD")?,
            group_number(&g, "momentum", "SGD")?,
            group_number(&g, "weight_decay", "SGD")?,
        );
        let mut buffers = HashMap::new();
        for (key, t) in sd.iter() {
            let i = key
                .strip_prefix("state.")
                .and_then(|r| r.strip_suffix(".momentum_buffer"))
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|&i| i < self.names.len())
                .ok_or_else(|| bad(format!("unexpected key {key:?}")))?;
            buffers.insert(i, t.to(device)?);
        }
        (self.lr, self.momentum, self.weight_decay) = (lr, momentum, wd);
        self.buffers = buffers;
        Ok(())
    }
}

/// The total gradient norm [`clip_grad_norm_`] measured, kept on the device until asked.
#[derive(Clone, Debug)]
pub struct GradNorm {
    sum_squares: Option<Tensor>,
}

impl GradNorm {
    /// The 2-norm over all gradients (reads one number back from the device).
    pub fn value(&self) -> Result<f32> {
        match &self.sum_squares {
            None => Ok(0.0),
            Some(t) => Ok(t.to_vec::<f32>()?[0].sqrt()),
        }
    }
}

/// `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)`: the 2-norm over every
/// gradient of `model`; when it exceeds `max_norm`, every gradient is scaled by
/// `max_norm / (norm + 1e-6)`. Computed on the gradients' device without reading anything back
/// (the norm stays there until [`GradNorm::value`]). The squared norms are summed tensor by
/// tensor (PyTorch takes the norm of the per-tensor norms: equal up to rounding).
pub fn clip_grad_norm_(model: &mut dyn Module, max_norm: f32) -> Result<GradNorm> {
    if max_norm.is_nan() || max_norm <= 0.0 {
        return Err(Error::invalid(format!(
            "clip_grad_norm_: max_norm must be positive, got {max_norm}"
        )));
    }
    no_grad(|| {
        let mut total: Option<Tensor> = None;
        for (_, p) in model.named_parameters() {
            if let Some(g) = p.grad() {
                let s = crate::ops::grad::sum_squares(&g)?;
                total = Some(match total {
                    None => s,
                    Some(t) => crate::ops::add(&t, &s)?,
                });
            }
        }
        let Some(total) = total else {
            return Ok(GradNorm { sum_squares: None });
        };
        let mut first_err = None;
        for_each_mut(model, &mut |_, slot| {
            if let Slot::Param(p) = slot {
                if let Some(g) = p.grad() {
                    let r = crate::ops::grad::clip_scale(&g, &total, max_norm)
                        .and_then(|c| p.set_grad(Some(c)));
                    if let (Err(e), None) = (r, &first_err) {
                        first_err = Some(e);
                    }
                }
            }
        });
        first_err.map_or(Ok(()), Err)?;
        Ok(GradNorm {
            sum_squares: Some(total),
        })
    })
}
