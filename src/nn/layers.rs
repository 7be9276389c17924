//! Mirrors of `torch.nn` layers with their forward passes: same parameter and buffer names,
//! shapes, dtypes and repr as PyTorch, so checkpoints load into them. Built as PyTorch builds
//! them: on the CPU, initialised by the layer's `reset_parameters()` from the global generator
//! ([`manual_seed`](crate::manual_seed)); move a whole tree with
//! [`to_device`](crate::ModuleExt::to_device).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::module::{Buffer, Forward, Parameter};
use crate::ops::{self, Generator};
use crate::tensor::Tensor;
use crate::Module;

/// A float as Python's `repr` writes it: `0.1`, `0.0`, `1e-05`, `1e+20`.
pub(crate) fn py_float(v: f64) -> String {
    let a = v.abs();
    if v != 0.0 && v.is_finite() && !(1e-4..1e16).contains(&a) {
        // Shortest round-trip digits in scientific form, exponent with a sign and two digits.
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        format!("{mantissa}e{sign}{digits:0>2}")
    } else {
        format!("{v:?}")
    }
}

/// Size `i` of a parameter's shape as the repr shows it, or `?` when a caller assigned a tensor
/// of another rank (a repr never panics).
pub(crate) fn dim(p: &Parameter, i: usize) -> String {
    p.tensor()
        .shape()
        .get(i)
        .map_or_else(|| "?".to_string(), |d| d.to_string())
}

pub(crate) fn full(shape: &[usize], v: f32) -> Result<Tensor> {
    let device = &Device::Cpu;
    let n = crate::tensor::numel_of(shape)?;
    let mut data: Vec<f32> = crate::tensor::try_zeroed_vec(n, "a layer's parameter")?;
    data.fill(v);
    Tensor::from_slice(&data, shape)?.to(device)
}

/// `nn.Linear(in_features, out_features, bias=True)`: `y = x · weightᵀ + bias`.
///
/// ```
/// use wgnn::{nn::Linear, Forward, Tensor};
/// let mut fc = Linear::new(3, 2)?; // kaiming-uniform weight, uniform bias, as PyTorch's
/// let y = fc.forward(&Tensor::from_slice(&[1f32, 2.0, 3.0], &[1, 3])?)?;
/// assert_eq!(y.shape(), [1, 2]);
/// # Ok::<(), wgnn::Error>(())
/// ```
#[derive(Debug, Module)]
#[module(extra_repr = Self::args)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Parameter,
    /// `[out_features]`, or `None` for `bias=False` (then absent from the state dict).
    pub bias: Option<Parameter>,
}

impl Linear {
    fn args(&self) -> String {
        format!(
            "in_features={}, out_features={}, bias={}",
            dim(&self.weight, 1),
            dim(&self.weight, 0),
            if self.bias.is_some() { "True" } else { "False" }
        )
    }
    /// `nn.Linear(in_features, out_features)`, on the CPU: weight and bias drawn as PyTorch's
    /// `reset_parameters()` draws them, from the global generator.
    pub fn new(in_features: usize, out_features: usize) -> Result<Self> {
        Linear::with_bias(in_features, out_features, true)
    }
    /// `nn.Linear(in_features, out_features, bias=False)`.
    pub fn no_bias(in_features: usize, out_features: usize) -> Result<Self> {
        Linear::with_bias(in_features, out_features, false)
    }
    /// `nn.Linear(in_features, out_features, bias=bias)`.
    pub fn with_bias(in_features: usize, out_features: usize, bias: bool) -> Result<Self> {
        let z =
            |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).map(Parameter::new);
        let mut l = Linear {
            weight: z(&[out_features, in_features])?,
            bias: bias.then(|| z(&[out_features])).transpose()?,
        };
        crate::nn::init::linear_(&mut l)?;
        Ok(l)
    }
}

impl Forward for Linear {
    /// Followed by a `ReLU`: the bias and ReLU in the product's store
    /// ([`ops::linear_relu`], the two layers' bits; the separate ops where a gradient is
    /// recorded).
    fn forward_fused(
        &mut self,
        next: &mut dyn crate::Module,
        x: &Tensor,
    ) -> Option<Result<Tensor>> {
        if !next.as_any_mut().is_some_and(|a| a.is::<ReLU>()) {
            return None;
        }
        Some(ops::linear_relu(
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(|b| b.tensor()),
        ))
    }
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::linear(
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(|b| b.tensor()),
        )
    }
}

/// `nn.LayerNorm(normalized_shape)` over the last dimension (elementwise affine, with bias).
#[derive(Debug, Module)]
#[module(extra_repr = Self::args)]
pub struct LayerNorm {
    /// Scale, ones.
    pub weight: Parameter,
    /// Shift, zeros.
    pub bias: Parameter,
    /// `eps`.
    #[module(skip)]
    pub eps: f64,
}

impl LayerNorm {
    fn args(&self) -> String {
        format!(
            "({},), eps={}, elementwise_affine=True, bias=True",
            dim(&self.weight, 0),
            py_float(self.eps)
        )
    }
    /// `nn.LayerNorm(n)` over the last dimension of size `n`, `eps = 1e-5`, on the CPU.
    pub fn new(n: usize) -> Result<Self> {
        Ok(LayerNorm {
            weight: Parameter::new(full(&[n], 1.0)?),
            bias: Parameter::new(full(&[n], 0.0)?),
            eps: 1e-5,
        })
    }
    /// `eps=…`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
}

impl Forward for LayerNorm {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(
            x,
            self.weight.tensor().shape(),
            Some(self.weight.tensor()),
            Some(self.bias.tensor()),
            self.eps,
        )
    }
}

/// Declares a batch-norm layer (`BatchNorm1d`, `BatchNorm2d`): PyTorch's state (affine
/// parameters, the running statistics as persistent buffers, the int64 `num_batches_tracked`),
/// repr and defaults, and a forward over inputs of the given ranks.
macro_rules! batch_norm_layer {
    ($(#[$doc:meta])* $name:ident, ranks: $ranks:expr, expected: $expected:literal) => {
        $(#[$doc])*
        #[derive(Debug, crate::Module)]
        #[module(extra_repr = Self::args)]
        pub struct $name {
            /// Scale.
            pub weight: Parameter,
            /// Shift.
            pub bias: Parameter,
            /// Running mean (buffer).
            pub running_mean: Buffer,
            /// Running variance (buffer, unbiased batch variances averaged).
            pub running_var: Buffer,
            /// Steps seen (int64 scalar buffer).
            pub num_batches_tracked: Buffer,
            /// `eps`, 1e-5.
            #[module(skip)]
            pub eps: f64,
            /// `momentum`, 0.1; `None` is the cumulative average (factor
            /// `1 / num_batches_tracked`).
            #[module(skip)]
            pub momentum: Option<f64>,
            /// Training mode (the default, as in PyTorch).
            #[module(training)]
            pub training: bool,
        }

        impl $name {
            fn args(&self) -> String {
                format!(
                    "{}, eps={}, momentum={}, affine=True, bias=True, track_running_stats=True",
                    dim(&self.weight, 0),
                    py_float(self.eps),
                    self.momentum.map_or("None".to_string(), py_float)
                )
            }
            /// `nn.BatchNorm(num_features)`, on the CPU: PyTorch's initial state (weight 1,
            /// bias 0, mean 0, var 1, counter 0, eps 1e-5, momentum 0.1).
            pub fn new(num_features: usize) -> Result<Self> {
                let n = num_features;
                Ok($name {
                    weight: Parameter::new(full(&[n], 1.0)?),
                    bias: Parameter::new(full(&[n], 0.0)?),
                    running_mean: Buffer::new(full(&[n], 0.0)?),
                    running_var: Buffer::new(full(&[n], 1.0)?),
                    num_batches_tracked: Buffer::new(Tensor::zeros(&[], DType::I64, &Device::Cpu)?),
                    eps: 1e-5,
                    momentum: Some(0.1),
                    training: true,
                })
            }
            /// `eps=…`.
            pub fn eps(mut self, eps: f64) -> Self {
                self.eps = eps;
                self
            }
            /// `momentum=…` (`None`: the cumulative average).
            pub fn momentum(mut self, momentum: Option<f64>) -> Self {
                self.momentum = momentum;
                self
            }
        }

        impl Forward for $name {
            /// In eval mode followed by a `ReLU` over `[N, C, H, W]`: one pass
            /// ([`ops::batch_norm_relu`], the two layers' bits).
            fn forward_fused(
                &mut self,
                next: &mut dyn crate::Module,
                x: &Tensor,
            ) -> Option<Result<Tensor>> {
                let is_relu = next
                    .as_any_mut()
                    .is_some_and(|a| a.is::<crate::nn::ReLU>());
                if !is_relu || self.training || x.shape().len() != 4 {
                    return None;
                }
                Some(ops::batch_norm_relu(
                    x,
                    self.running_mean.tensor(),
                    self.running_var.tensor(),
                    Some(self.weight.tensor()),
                    Some(self.bias.tensor()),
                    self.eps,
                ))
            }
            fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
                let name = stringify!($name);
                if !$ranks.contains(&x.shape().len()) {
                    return Err(Error::shape(
                        name,
                        format!(concat!("expected ", $expected, ", got {:?}"), x.shape()),
                    ));
                }
                norm_forward(
                    name,
                    x,
                    (&self.weight, &self.bias),
                    (
                        &mut self.running_mean,
                        &mut self.running_var,
                        &mut self.num_batches_tracked,
                    ),
                    (self.eps, self.momentum),
                    self.training,
                )
            }
        }
    };
}
pub(crate) use batch_norm_layer;

batch_norm_layer!(
    /// `nn.BatchNorm1d(num_features, eps, momentum)` over `[N, C]` or `[N, C, L]`: affine
    /// parameters plus running statistics, which are persistent buffers (saved, not trained),
    /// and the int64 `num_batches_tracked` counter. In training mode forward normalises with
    /// the batch's statistics and updates the three buffers on the module's device (no
    /// read-back); in eval mode it uses the running ones.
    BatchNorm1d,
    ranks: [2, 3],
    expected: "2D or 3D input [N, C] or [N, C, L]"
);

/// The forward of the batch norms (`BatchNorm1d`, `BatchNorm2d`): in eval mode `x` normalised
/// with the running statistics; in training mode with the batch's (mean, biased variance), and
/// the running statistics and counter updated on the device (the variance's with the unbiased
/// batch variance), as PyTorch's `F.batch_norm(training=True)`.
pub(crate) fn norm_forward(
    name: &str,
    x: &Tensor,
    (weight, bias): (&Parameter, &Parameter),
    (running_mean, running_var, counter): (&mut Buffer, &mut Buffer, &mut Buffer),
    (eps, momentum): (f64, Option<f64>),
    training: bool,
) -> Result<Tensor> {
    let (w, b) = (Some(weight.tensor()), Some(bias.tensor()));
    let (n, c, l) = ops::bn_dims(name, x)?;
    if c != weight.tensor().numel() {
        return Err(Error::shape(
            name,
            format!(
                "input {:?} has {c} channels, the layer has {}",
                x.shape(),
                weight.tensor().numel()
            ),
        ));
    }
    if !training {
        return ops::batch_norm(x, running_mean.tensor(), running_var.tensor(), w, b, eps);
    }
    let count = n * l;
    if count <= 1 {
        return Err(Error::invalid(format!(
            "{name}: expected more than 1 value per channel when training, got input size {:?}",
            x.shape()
        )));
    }
    let stats = ops::batch_stats(x)?;
    let y = ops::normalize(x, (&stats, 0), (&stats, c), w, b, eps)?;
    let y = ops::record_batch_norm(y, x, (&stats, 0), (&stats, c), w, b, eps, true)?;
    let next = ops::increment(counter.tensor())?;
    let mean = ops::running_update(running_mean.tensor(), &stats, 0, &next, momentum, 1.0)?;
    let var = ops::running_update(
        running_var.tensor(),
        &stats,
        c,
        &next,
        momentum,
        count as f64 / (count - 1) as f64,
    )?;
    running_mean.set(mean);
    running_var.set(var);
    counter.set(next);
    Ok(y)
}

/// Seeds for dropout layers built without one: distinct per layer, the same in every run of a
/// program that builds its layers in the same order.
static NEXT_SEED: AtomicU64 = AtomicU64::new(0x5eed);

/// `nn.Dropout(p)`: identity in eval mode; in training mode inverted dropout with its own seeded
/// [`Generator`].
#[derive(Debug, Module)]
#[module(extra_repr = Self::args)]
pub struct Dropout {
    /// Drop probability.
    #[module(skip)]
    pub p: f64,
    /// The random stream of the masks.
    #[module(skip)]
    pub generator: Generator,
    /// Training mode (the default, as in PyTorch).
    #[module(training)]
    pub training: bool,
}

impl Dropout {
    fn args(&self) -> String {
        format!("p={}, inplace=False", py_float(self.p))
    }
    /// `nn.Dropout(p)`, in training mode, seeded from a per-process counter.
    pub fn new(p: f64) -> Self {
        Dropout::with_seed(p, NEXT_SEED.fetch_add(1, Ordering::Relaxed))
    }
    /// The same with an explicit seed.
    pub fn with_seed(p: f64, seed: u64) -> Self {
        Dropout {
            p,
            generator: Generator::new(seed),
            training: true,
        }
    }
}

impl Forward for Dropout {
    fn is_identity(&self) -> bool {
        !self.training
    }
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::dropout(x, self.p, self.training, &mut self.generator)
    }
}

/// `nn.ReLU(inplace)`: no state. (`inplace` is printed as PyTorch prints it; wgnn's tensors are
/// immutable, so the result is always a new tensor.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Module)]
#[module(extra_repr = Self::args)]
pub struct ReLU {
    /// Printed as PyTorch prints it.
    #[module(skip)]
    pub inplace: bool,
}

impl ReLU {
    fn args(&self) -> String {
        if self.inplace {
            "inplace=True".to_string()
        } else {
            String::new()
        }
    }
    /// `nn.ReLU()`.
    pub fn new() -> Self {
        ReLU::default()
    }
}

impl Forward for ReLU {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::relu(x)
    }
}

/// `nn.Embedding(num_embeddings, embedding_dim)`: int64 indices to rows of `weight`.
#[derive(Debug, Module)]
#[module(extra_repr = Self::args)]
pub struct Embedding {
    /// `[num_embeddings, embedding_dim]`.
    pub weight: Parameter,
}

impl Embedding {
    fn args(&self) -> String {
        format!("{}, {}", dim(&self.weight, 0), dim(&self.weight, 1))
    }
    /// `nn.Embedding(num_embeddings, embedding_dim)`, on the CPU: weight `normal_(0, 1)` from
    /// the global generator, as PyTorch's.
    pub fn new(num_embeddings: usize, embedding_dim: usize) -> Result<Self> {
        let mut e = Embedding {
            weight: Parameter::new(full(&[num_embeddings, embedding_dim], 0.0)?),
        };
        crate::nn::init::normal_(&mut e.weight, 0.0, 1.0)?;
        Ok(e)
    }
}

impl Forward for Embedding {
    /// `indices`: int64 of any shape; the result is `[…, embedding_dim]`.
    fn forward(&mut self, indices: &Tensor) -> Result<Tensor> {
        ops::embedding(indices, self.weight.tensor())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (1e-5, "1e-05"),
            (1e-6, "1e-06"),
            (0.0, "0.0"),
            (0.1, "0.1"),
            (1e-3, "0.001"),
            (2.5e20, "2.5e+20"),
        ];
        for (v, want) in cases {
            assert_eq!(super::py_float(v), want);
        }
    }
}
