//! State-only mirrors of `torch.nn` layers: same parameter and buffer names, shapes, dtypes and
//! repr as PyTorch, so checkpoints load into them. Initial values are deterministic
//! (weights zero, norms' scales one), not PyTorch's random init: load a checkpoint for real values.

use crate::device::Device;
use crate::dtype::DType;
use crate::error::Result;
use crate::impl_module;
use crate::module::{Buffer, Parameter};
use crate::tensor::Tensor;

/// A float as Python's `repr` writes it: `0.1`, `0.0`, `1e-05`, `1e+20`.
fn py_float(v: f64) -> String {
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
fn dim(p: &Parameter, i: usize) -> String {
    p.tensor()
        .shape()
        .get(i)
        .map_or_else(|| "?".to_string(), |d| d.to_string())
}

fn full(shape: &[usize], v: f32, device: &Device) -> Result<Tensor> {
    let n = crate::tensor::numel_of(shape)?;
    let mut data: Vec<f32> = crate::tensor::try_zeroed_vec(n, "a layer's parameter")?;
    data.fill(v);
    Tensor::from_slice(&data, shape)?.to(device)
}

/// `nn.Linear(in_features, out_features)` (with bias).
#[derive(Debug)]
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Parameter,
    /// `[out_features]`.
    pub bias: Parameter,
}
impl_module!(
    Linear {
        parameters: [weight, bias],
        buffers: [],
        modules: []
    },
    extra_repr = |s| format!(
        "in_features={}, out_features={}, bias=True",
        dim(&s.weight, 1),
        dim(&s.weight, 0)
    )
);

impl Linear {
    /// Zero weight and bias on `device`.
    pub fn new(in_features: usize, out_features: usize, device: &Device) -> Result<Self> {
        Ok(Linear {
            weight: Parameter::new(Tensor::zeros(
                &[out_features, in_features],
                DType::F32,
                device,
            )?),
            bias: Parameter::new(Tensor::zeros(&[out_features], DType::F32, device)?),
        })
    }
}

/// `nn.LayerNorm(normalized_shape)` (elementwise affine, with bias).
#[derive(Debug)]
pub struct LayerNorm {
    /// Scale, ones.
    pub weight: Parameter,
    /// Shift, zeros.
    pub bias: Parameter,
    /// `eps`.
    pub eps: f64,
}
impl_module!(
    LayerNorm {
        parameters: [weight, bias],
        buffers: [],
        modules: [],
        other: [eps]
    },
    extra_repr = |s| format!(
        "({},), eps={}, elementwise_affine=True, bias=True",
        dim(&s.weight, 0),
        py_float(s.eps)
    )
);

impl LayerNorm {
    /// Over the last dimension of size `n`, `eps = 1e-5`.
    pub fn new(n: usize, device: &Device) -> Result<Self> {
        Ok(LayerNorm {
            weight: Parameter::new(full(&[n], 1.0, device)?),
            bias: Parameter::new(Tensor::zeros(&[n], DType::F32, device)?),
            eps: 1e-5,
        })
    }
}

/// `nn.BatchNorm1d(num_features)`: affine parameters plus running statistics, which are
/// persistent buffers (saved, not trained), and the int64 `num_batches_tracked` counter.
#[derive(Debug)]
pub struct BatchNorm1d {
    /// Scale.
    pub weight: Parameter,
    /// Shift.
    pub bias: Parameter,
    /// Running mean (buffer).
    pub running_mean: Buffer,
    /// Running variance (buffer).
    pub running_var: Buffer,
    /// Steps seen (int64 scalar buffer).
    pub num_batches_tracked: Buffer,
}
impl_module!(
    BatchNorm1d {
        parameters: [weight, bias],
        buffers: [running_mean, running_var, num_batches_tracked],
        modules: []
    },
    extra_repr = |s| format!(
        "{}, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True",
        dim(&s.weight, 0)
    )
);

impl BatchNorm1d {
    /// PyTorch's initial state: weight 1, bias 0, mean 0, var 1, counter 0.
    pub fn new(n: usize, device: &Device) -> Result<Self> {
        Ok(BatchNorm1d {
            weight: Parameter::new(full(&[n], 1.0, device)?),
            bias: Parameter::new(Tensor::zeros(&[n], DType::F32, device)?),
            running_mean: Buffer::new(Tensor::zeros(&[n], DType::F32, device)?),
            running_var: Buffer::new(full(&[n], 1.0, device)?),
            num_batches_tracked: Buffer::new(Tensor::zeros(&[], DType::I64, device)?),
        })
    }
}

/// `nn.Dropout(p)`: no state.
#[derive(Debug)]
pub struct Dropout {
    /// Drop probability.
    pub p: f64,
}
impl_module!(
    Dropout {
        parameters: [],
        buffers: [],
        modules: [],
        other: [p]
    },
    extra_repr = |s| format!("p={}, inplace=False", py_float(s.p))
);

/// `nn.ReLU(inplace)`: no state.
#[derive(Debug)]
pub struct ReLU {
    /// Printed as PyTorch prints it.
    pub inplace: bool,
}
impl_module!(
    ReLU {
        parameters: [],
        buffers: [],
        modules: [],
        other: [inplace]
    },
    extra_repr = |s| if s.inplace {
        "inplace=True".to_string()
    } else {
        String::new()
    }
);

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
