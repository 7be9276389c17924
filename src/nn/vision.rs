//! The layers of convolutional networks and the activation modules, as `torch.nn` has them:
//! `Conv1d`, `Conv2d`, `BatchNorm2d`, `MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d`, `Flatten`,
//! `Identity`, and `GELU`, `SiLU`, `ELU`, `LeakyReLU`, `Sigmoid`, `Tanh`, `Softplus`,
//! `Hardtanh`. Same state-dict keys, shapes and repr as PyTorch; weights start at zero (scales
//! at one), and [`init::reset_parameters`](crate::nn::init::reset_parameters) gives them
//! PyTorch's default initialisation.

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::impl_module;
use crate::module::{Buffer, Forward, Parameter};
use crate::nn::layers::{dim, full, norm_forward, py_float};
use crate::ops::{self, ConvOptions, Padding};
use crate::tensor::Tensor;

/// An f32 argument as Python prints the float it came from: its shortest f32 digits (0.01,
/// not 0.009999999776482582).
fn py_float32(v: f32) -> String {
    py_float(v.to_string().parse::<f64>().unwrap_or(v as f64))
}

/// A pair as PyTorch prints a tuple: `(3, 3)`, or `(3,)` for one element.
fn tuple(v: &[usize]) -> String {
    match v {
        [a] => format!("({a},)"),
        _ => format!(
            "({})",
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A pooling size as PyTorch prints what it was given: an int when both are equal.
fn int_or_pair((a, b): (usize, usize)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("({a}, {b})")
    }
}

/// The repr of a convolution: `3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1),
/// bias=False` (`dims` 1 or 2).
fn conv_repr(weight: &Parameter, o: &ConvOptions, bias: bool, dims: usize) -> String {
    let groups = o.groups.max(1);
    let cin = weight
        .tensor()
        .shape()
        .get(1)
        .map_or_else(|| "?".to_string(), |c| (c * groups).to_string());
    let pick = |(h, w): (usize, usize)| if dims == 1 { vec![w] } else { vec![h, w] };
    let ks: Vec<usize> = weight.tensor().shape().iter().skip(2).copied().collect();
    let mut s = format!(
        "{cin}, {}, kernel_size={}, stride={}",
        dim(weight, 0),
        tuple(&ks),
        tuple(&pick(o.stride))
    );
    match o.padding {
        Padding::Same => s.push_str(", padding=same"),
        Padding::Explicit(h, w) if (h, w) != (0, 0) => {
            s.push_str(&format!(", padding={}", tuple(&pick((h, w)))))
        }
        Padding::Explicit(..) => {}
    }
    if o.dilation != (1, 1) {
        s.push_str(&format!(", dilation={}", tuple(&pick(o.dilation))));
    }
    if groups != 1 {
        s.push_str(&format!(", groups={groups}"));
    }
    if !bias {
        s.push_str(", bias=False");
    }
    s
}

/// `nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
/// bias)`: weight `[out, in / groups, kH, kW]`, bias `[out]` (absent with `bias=False`).
#[derive(Debug)]
pub struct Conv2d {
    /// `[out_channels, in_channels / groups, kH, kW]`.
    pub weight: Parameter,
    /// `[out_channels]`, or `None` for `bias=False`.
    pub bias: Option<Parameter>,
    /// Stride, padding, dilation, groups.
    pub options: ConvOptions,
}
impl_module!(
    Conv2d {
        parameters: [weight, bias],
        buffers: [],
        modules: [],
        other: [options]
    },
    extra_repr = |s| conv_repr(&s.weight, &s.options, s.bias.is_some(), 2)
);

impl Conv2d {
    /// Zero weight (and bias, when `bias`) on `device`; an error when `groups` does not divide
    /// both channel counts.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: (usize, usize),
        options: ConvOptions,
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let g = options.groups;
        if g == 0 || !in_channels.is_multiple_of(g) || !out_channels.is_multiple_of(g) {
            return Err(Error::invalid(format!(
                "Conv2d: groups ({g}) must be positive and divide in_channels ({in_channels}) \
                 and out_channels ({out_channels})"
            )));
        }
        let shape = [out_channels, in_channels / g, kernel_size.0, kernel_size.1];
        Ok(Conv2d {
            weight: Parameter::new(Tensor::zeros(&shape, DType::F32, device)?),
            bias: bias
                .then(|| Tensor::zeros(&[out_channels], DType::F32, device).map(Parameter::new))
                .transpose()?,
            options,
        })
    }
}

impl Forward for Conv2d {
    /// `x`: `[N, C, H, W]`.
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::conv2d(
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(|b| b.tensor()),
            &self.options,
        )
    }
}

/// `nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
/// bias)`: weight `[out, in / groups, k]`; the options' width components apply.
#[derive(Debug)]
pub struct Conv1d {
    /// `[out_channels, in_channels / groups, k]`.
    pub weight: Parameter,
    /// `[out_channels]`, or `None` for `bias=False`.
    pub bias: Option<Parameter>,
    /// Stride, padding, dilation (width components), groups.
    pub options: ConvOptions,
}
impl_module!(
    Conv1d {
        parameters: [weight, bias],
        buffers: [],
        modules: [],
        other: [options]
    },
    extra_repr = |s| conv_repr(&s.weight, &s.options, s.bias.is_some(), 1)
);

impl Conv1d {
    /// Zero weight (and bias) on `device`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        options: ConvOptions,
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let c = Conv2d::new(
            in_channels,
            out_channels,
            (1, kernel_size),
            options,
            bias,
            device,
        )?;
        let w = c.weight.tensor().reshape(&[
            out_channels,
            in_channels / options.groups,
            kernel_size,
        ])?;
        Ok(Conv1d {
            weight: Parameter::new(w),
            bias: c.bias,
            options,
        })
    }
}

impl Forward for Conv1d {
    /// `x`: `[N, C, L]`.
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::conv1d(
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(|b| b.tensor()),
            &self.options,
        )
    }
}

crate::nn::layers::batch_norm_layer!(
    /// `nn.BatchNorm2d(num_features, eps, momentum)` over `[N, C, H, W]`: the state of
    /// [`BatchNorm1d`](crate::nn::BatchNorm1d) (affine parameters; running statistics as
    /// persistent buffers and the int64 `num_batches_tracked`), statistics over N, H and W. In
    /// training mode forward updates the three buffers on the module's device, with no
    /// read-back.
    BatchNorm2d,
    ranks: [4],
    expected: "4D input [N, C, H, W]"
);

/// `nn.MaxPool2d(kernel_size, stride, padding)` (stride defaults to the kernel size).
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    /// `(kH, kW)`.
    pub kernel_size: (usize, usize),
    /// `(sH, sW)`.
    pub stride: (usize, usize),
    /// `(pH, pW)`, filled with -inf.
    pub padding: (usize, usize),
}
impl_module!(
    MaxPool2d {
        parameters: [],
        buffers: [],
        modules: [],
        other: [kernel_size, stride, padding]
    },
    extra_repr = |s| format!(
        "kernel_size={}, stride={}, padding={}, dilation=1, ceil_mode=False",
        int_or_pair(s.kernel_size),
        int_or_pair(s.stride),
        int_or_pair(s.padding)
    )
);

impl MaxPool2d {
    /// `nn.MaxPool2d(k)`: square window, stride `k`, no padding.
    pub fn new(k: usize) -> Self {
        MaxPool2d {
            kernel_size: (k, k),
            stride: (k, k),
            padding: (0, 0),
        }
    }
}

impl Forward for MaxPool2d {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::max_pool2d(x, self.kernel_size, self.stride, self.padding)
    }
}

/// `nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=True)`.
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    /// `(kH, kW)`.
    pub kernel_size: (usize, usize),
    /// `(sH, sW)`.
    pub stride: (usize, usize),
    /// `(pH, pW)`, zeros.
    pub padding: (usize, usize),
    /// Whether the padding zeros count in each window's divisor (PyTorch's default: yes).
    pub count_include_pad: bool,
}
impl_module!(
    AvgPool2d {
        parameters: [],
        buffers: [],
        modules: [],
        other: [kernel_size, stride, padding, count_include_pad]
    },
    extra_repr = |s| format!(
        "kernel_size={}, stride={}, padding={}",
        int_or_pair(s.kernel_size),
        int_or_pair(s.stride),
        int_or_pair(s.padding)
    )
);

impl AvgPool2d {
    /// `nn.AvgPool2d(k)`: square window, stride `k`, no padding.
    pub fn new(k: usize) -> Self {
        AvgPool2d {
            kernel_size: (k, k),
            stride: (k, k),
            padding: (0, 0),
            count_include_pad: true,
        }
    }
}

impl Forward for AvgPool2d {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.count_include_pad,
        )
    }
}

/// `nn.AdaptiveAvgPool2d(output_size)`.
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveAvgPool2d {
    /// `(oH, oW)`.
    pub output_size: (usize, usize),
}
impl_module!(
    AdaptiveAvgPool2d {
        parameters: [],
        buffers: [],
        modules: [],
        other: [output_size]
    },
    extra_repr = |s| format!("output_size={}", tuple(&[s.output_size.0, s.output_size.1]))
);

impl Forward for AdaptiveAvgPool2d {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::adaptive_avg_pool2d(x, self.output_size)
    }
}

/// `nn.Flatten(start_dim=1, end_dim=-1)`.
#[derive(Debug, Clone, Copy)]
pub struct Flatten {
    /// First dimension merged.
    pub start_dim: isize,
    /// Last dimension merged (negative counts from the end).
    pub end_dim: isize,
}
impl_module!(
    Flatten {
        parameters: [],
        buffers: [],
        modules: [],
        other: [start_dim, end_dim]
    },
    extra_repr = |s| format!("start_dim={}, end_dim={}", s.start_dim, s.end_dim)
);

impl Default for Flatten {
    fn default() -> Self {
        Flatten {
            start_dim: 1,
            end_dim: -1,
        }
    }
}

impl Forward for Flatten {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::flatten(x, self.start_dim, self.end_dim)
    }
}

/// Declares a stateless activation module: its fields (printed by `$repr`) and its forward.
macro_rules! activation {
    ($(#[$doc:meta])* $name:ident { $($f:ident: $t:ty),* } repr = |$s:ident| $repr:expr, forward = |$s2:ident, $x:ident| $fwd:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $name {
            $(
                #[allow(missing_docs)]
                pub $f: $t,
            )*
        }
        impl_module!(
            $name {
                parameters: [],
                buffers: [],
                modules: [],
                other: [$($f),*]
            },
            extra_repr = |$s| $repr
        );
        impl Forward for $name {
            fn forward(&mut self, $x: &Tensor) -> Result<Tensor> {
                let $s2 = &*self;
                $fwd
            }
        }
    };
}

pub(crate) use activation;

activation!(
    /// `nn.GELU(approximate='none' | 'tanh')`.
    GELU { tanh_approximation: bool }
    repr = |s| format!("approximate='{}'", if s.tanh_approximation { "tanh" } else { "none" }),
    forward = |s, x| ops::gelu(x, s.tanh_approximation)
);
activation!(
    /// `nn.SiLU()`: `x · sigmoid(x)`.
    SiLU {}
    repr = |_s| String::new(),
    forward = |_s, x| ops::silu(x)
);
activation!(
    /// `nn.ELU(alpha=1.0)`.
    ELU { alpha: f32 }
    repr = |s| format!("alpha={}", py_float32(s.alpha)),
    forward = |s, x| ops::elu(x, s.alpha)
);
activation!(
    /// `nn.LeakyReLU(negative_slope=0.01)`.
    LeakyReLU { negative_slope: f32 }
    repr = |s| format!("negative_slope={}", py_float32(s.negative_slope)),
    forward = |s, x| ops::leaky_relu(x, s.negative_slope)
);
activation!(
    /// `nn.Sigmoid()`.
    Sigmoid {}
    repr = |_s| String::new(),
    forward = |_s, x| ops::sigmoid(x)
);
activation!(
    /// `nn.Tanh()`.
    Tanh {}
    repr = |_s| String::new(),
    forward = |_s, x| ops::tanh(x)
);
activation!(
    /// `nn.Softplus(beta=1.0, threshold=20.0)`.
    Softplus { beta: f32, threshold: f32 }
    repr = |s| format!(
        "beta={}, threshold={}",
        py_float32(s.beta),
        py_float32(s.threshold)
    ),
    forward = |s, x| ops::softplus(x, s.beta, s.threshold)
);
activation!(
    /// `nn.Hardtanh(min_val=-1.0, max_val=1.0)`.
    Hardtanh { min_val: f32, max_val: f32 }
    repr = |s| format!(
        "min_val={}, max_val={}",
        py_float32(s.min_val),
        py_float32(s.max_val)
    ),
    forward = |s, x| ops::hardtanh(x, s.min_val, s.max_val)
);
activation!(
    /// `nn.Identity()`: its input, unchanged.
    Identity {}
    repr = |_s| String::new(),
    forward = |_s, x| Ok(x.clone())
);

#[allow(clippy::derivable_impls)] // Spelled out next to the other defaults.
impl Default for GELU {
    fn default() -> Self {
        GELU {
            tanh_approximation: false,
        }
    }
}
impl Default for ELU {
    fn default() -> Self {
        ELU { alpha: 1.0 }
    }
}
impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU {
            negative_slope: 0.01,
        }
    }
}
impl Default for Softplus {
    fn default() -> Self {
        Softplus {
            beta: 1.0,
            threshold: 20.0,
        }
    }
}
impl Default for Hardtanh {
    fn default() -> Self {
        Hardtanh {
            min_val: -1.0,
            max_val: 1.0,
        }
    }
}
