//! The layers of convolutional networks and the activation modules, as `torch.nn` has them:
//! `Conv1d`, `Conv2d`, `BatchNorm2d`, `MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d`, `Flatten`,
//! `Identity`, and `GELU`, `SiLU`, `ELU`, `LeakyReLU`, `Sigmoid`, `Tanh`, `Softplus`,
//! `Hardtanh`. Same state-dict keys, shapes and repr as PyTorch; built as PyTorch builds them
//! (positional arguments, then chained setters for the keyword ones), on the CPU, with
//! PyTorch's default initialisation from the global generator.

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::module::{Buffer, Forward, Parameter};
use crate::nn::layers::{dim, full, norm_forward, py_float};
use crate::ops::{self, ConvOptions, Padding};
use crate::tensor::Tensor;
use crate::Module;

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

/// A size PyTorch takes as an int or a pair: `3` or `(3, 5)` (height, width).
pub trait Pair {
    /// `(height, width)`.
    fn pair(self) -> (usize, usize);
}
impl Pair for usize {
    fn pair(self) -> (usize, usize) {
        (self, self)
    }
}
impl Pair for (usize, usize) {
    fn pair(self) -> (usize, usize) {
        self
    }
}
impl Pair for [usize; 2] {
    fn pair(self) -> (usize, usize) {
        (self[0], self[1])
    }
}

/// A convolution's weight `[out, in / groups, k…]` and bias `[out]`, drawn as PyTorch's
/// `_ConvNd.reset_parameters()`; an error when `groups` does not divide both channel counts.
fn conv_params(
    name: &str,
    in_channels: usize,
    out_channels: usize,
    kernel: &[usize],
    groups: usize,
    bias: bool,
) -> Result<(Parameter, Option<Parameter>)> {
    let g = groups;
    if g == 0 || !in_channels.is_multiple_of(g) || !out_channels.is_multiple_of(g) {
        return Err(Error::invalid(format!(
            "{name}: groups ({g}) must be positive and divide in_channels ({in_channels}) \
             and out_channels ({out_channels})"
        )));
    }
    let mut shape = vec![out_channels, in_channels / g];
    shape.extend_from_slice(kernel);
    let mut weight = Parameter::new(full(&shape, 0.0)?);
    let mut b = bias
        .then(|| full(&[out_channels], 0.0).map(Parameter::new))
        .transpose()?;
    crate::nn::init::conv_(&mut weight, b.as_mut())?;
    Ok((weight, b))
}

/// The keyword arguments both convolutions take, as chained setters.
macro_rules! conv_setters {
    ($name:ident, $pair:ty, $conv:expr) => {
        impl $name {
            /// `stride=…`.
            pub fn stride(mut self, s: $pair) -> Self {
                self.options.stride = $conv(s);
                self
            }
            /// `padding=…` (zeros on both sides).
            pub fn padding(mut self, p: $pair) -> Self {
                let (h, w) = $conv(p);
                self.options.padding = Padding::Explicit(h, w);
                self
            }
            /// `padding="same"` (stride 1 only).
            pub fn padding_same(mut self) -> Self {
                self.options.padding = Padding::Same;
                self
            }
            /// `dilation=…`.
            pub fn dilation(mut self, d: $pair) -> Self {
                self.options.dilation = $conv(d);
                self
            }
            /// `bias=False` with `false`: the layer has no bias (none in the state dict).
            /// `true` keeps the bias `new` made.
            pub fn bias(mut self, on: bool) -> Self {
                if !on {
                    self.bias = None;
                }
                self
            }
            /// `groups=g`: the weight becomes `[out, in / g, k…]`, drawn again for its new
            /// fan-in; an error when `g` does not divide both channel counts.
            pub fn groups(mut self, g: usize) -> Result<Self> {
                let shape = self.weight.tensor().shape().to_vec();
                let cin = shape.get(1).copied().unwrap_or(0) * self.options.groups.max(1);
                let cout = shape.first().copied().unwrap_or(0);
                let (w, b) = conv_params(
                    stringify!($name),
                    cin,
                    cout,
                    shape.get(2..).unwrap_or(&[]),
                    g,
                    self.bias.is_some(),
                )?;
                self.weight = w;
                self.bias = b;
                self.options.groups = g;
                Ok(self)
            }
        }
    };
}

/// `nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
/// groups=1, bias=True)`: weight `[out, in / groups, kH, kW]`, bias `[out]` (absent with
/// `bias=False`).
///
/// ```
/// use wgnn::{nn::Conv2d, ModuleExt};
/// let conv = Conv2d::new(3, 16, 3)?.padding(1).bias(false);
/// assert_eq!(conv.repr(), "Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)");
/// let depthwise = Conv2d::new(16, 16, (3, 1))?.groups(16)?;
/// assert_eq!(depthwise.weight.tensor().shape(), [16, 1, 3, 1]);
/// # Ok::<(), wgnn::Error>(())
/// ```
#[derive(Debug, Module)]
#[module(extra_repr = Self::args)]
pub struct Conv2d {
    /// `[out_channels, in_channels / groups, kH, kW]`.
    pub weight: Parameter,
    /// `[out_channels]`, or `None` for `bias=False`.
    pub bias: Option<Parameter>,
    /// Stride, padding, dilation, groups.
    #[module(skip)]
    pub options: ConvOptions,
}

impl Conv2d {
    fn args(&self) -> String {
        conv_repr(&self.weight, &self.options, self.bias.is_some(), 2)
    }
    /// `nn.Conv2d(in_channels, out_channels, kernel_size)`, on the CPU, initialised as
    /// PyTorch's; the keyword arguments are the setters below.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl Pair) -> Result<Self> {
        let (kh, kw) = kernel_size.pair();
        let (weight, bias) = conv_params("Conv2d", in_channels, out_channels, &[kh, kw], 1, true)?;
        Ok(Conv2d {
            weight,
            bias,
            options: ConvOptions::default(),
        })
    }
}
conv_setters!(Conv2d, impl Pair, |p: _| Pair::pair(p));

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
#[derive(Debug, Module)]
#[module(extra_repr = Self::args)]
pub struct Conv1d {
    /// `[out_channels, in_channels / groups, k]`.
    pub weight: Parameter,
    /// `[out_channels]`, or `None` for `bias=False`.
    pub bias: Option<Parameter>,
    /// Stride, padding, dilation (width components), groups.
    #[module(skip)]
    pub options: ConvOptions,
}

impl Conv1d {
    fn args(&self) -> String {
        conv_repr(&self.weight, &self.options, self.bias.is_some(), 1)
    }
    /// `nn.Conv1d(in_channels, out_channels, kernel_size)`, on the CPU, initialised as
    /// PyTorch's; the keyword arguments are the setters below.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: usize) -> Result<Self> {
        let (weight, bias) =
            conv_params("Conv1d", in_channels, out_channels, &[kernel_size], 1, true)?;
        Ok(Conv1d {
            weight,
            bias,
            options: ConvOptions::default(),
        })
    }
}
conv_setters!(Conv1d, usize, |p: usize| (1, p));

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
#[derive(Debug, Clone, Copy, Module)]
#[module(extra_repr = Self::args)]
pub struct MaxPool2d {
    /// `(kH, kW)`.
    #[module(skip)]
    pub kernel_size: (usize, usize),
    /// `(sH, sW)`.
    #[module(skip)]
    pub stride: (usize, usize),
    /// `(pH, pW)`, filled with -inf.
    #[module(skip)]
    pub padding: (usize, usize),
}

impl MaxPool2d {
    fn args(&self) -> String {
        format!(
            "kernel_size={}, stride={}, padding={}, dilation=1, ceil_mode=False",
            int_or_pair(self.kernel_size),
            int_or_pair(self.stride),
            int_or_pair(self.padding)
        )
    }
    /// `nn.MaxPool2d(kernel_size)`: stride = kernel size, no padding.
    ///
    /// ```
    /// use wgnn::{nn::MaxPool2d, ModuleExt};
    /// let pool = MaxPool2d::new(3).stride(1).padding(1);
    /// assert_eq!(pool.repr(), "MaxPool2d(kernel_size=3, stride=1, padding=1, dilation=1, ceil_mode=False)");
    /// ```
    pub fn new(kernel_size: impl Pair) -> Self {
        let k = kernel_size.pair();
        MaxPool2d {
            kernel_size: k,
            stride: k,
            padding: (0, 0),
        }
    }
}

impl Forward for MaxPool2d {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::max_pool2d(x, self.kernel_size, self.stride, self.padding)
    }
}

/// The keyword arguments both poolings take, as chained setters.
macro_rules! pool_setters {
    ($($name:ident),*) => {$(
        impl $name {
            /// `stride=…`.
            pub fn stride(mut self, s: impl Pair) -> Self {
                self.stride = s.pair();
                self
            }
            /// `padding=…`.
            pub fn padding(mut self, p: impl Pair) -> Self {
                self.padding = p.pair();
                self
            }
        }
    )*};
}
pool_setters!(MaxPool2d, AvgPool2d);

/// `nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=True)`.
#[derive(Debug, Clone, Copy, Module)]
#[module(extra_repr = Self::args)]
pub struct AvgPool2d {
    /// `(kH, kW)`.
    #[module(skip)]
    pub kernel_size: (usize, usize),
    /// `(sH, sW)`.
    #[module(skip)]
    pub stride: (usize, usize),
    /// `(pH, pW)`, zeros.
    #[module(skip)]
    pub padding: (usize, usize),
    /// Whether the padding zeros count in each window's divisor (PyTorch's default: yes).
    #[module(skip)]
    pub count_include_pad: bool,
}

impl AvgPool2d {
    fn args(&self) -> String {
        format!(
            "kernel_size={}, stride={}, padding={}",
            int_or_pair(self.kernel_size),
            int_or_pair(self.stride),
            int_or_pair(self.padding)
        )
    }
    /// `nn.AvgPool2d(kernel_size)`: stride = kernel size, no padding.
    pub fn new(kernel_size: impl Pair) -> Self {
        let k = kernel_size.pair();
        AvgPool2d {
            kernel_size: k,
            stride: k,
            padding: (0, 0),
            count_include_pad: true,
        }
    }
    /// `count_include_pad=…`.
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
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
#[derive(Debug, Clone, Copy, Module)]
#[module(extra_repr = Self::args)]
pub struct AdaptiveAvgPool2d {
    /// `(oH, oW)`.
    #[module(skip)]
    pub output_size: (usize, usize),
}

impl AdaptiveAvgPool2d {
    fn args(&self) -> String {
        format!(
            "output_size={}",
            tuple(&[self.output_size.0, self.output_size.1])
        )
    }
    /// `nn.AdaptiveAvgPool2d(output_size)`: `1` or `(1, 1)`.
    pub fn new(output_size: impl Pair) -> Self {
        AdaptiveAvgPool2d {
            output_size: output_size.pair(),
        }
    }
}

impl Forward for AdaptiveAvgPool2d {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        ops::adaptive_avg_pool2d(x, self.output_size)
    }
}

/// `nn.Flatten(start_dim=1, end_dim=-1)`.
#[derive(Debug, Clone, Copy, Module)]
#[module(extra_repr = Self::args)]
pub struct Flatten {
    /// First dimension merged.
    #[module(skip)]
    pub start_dim: isize,
    /// Last dimension merged (negative counts from the end).
    #[module(skip)]
    pub end_dim: isize,
}

impl Flatten {
    fn args(&self) -> String {
        format!("start_dim={}, end_dim={}", self.start_dim, self.end_dim)
    }
    /// `nn.Flatten()`: dimensions 1 to -1.
    pub fn new() -> Self {
        Flatten::default()
    }
    /// `nn.Flatten(start_dim, end_dim)`.
    pub fn dims(start_dim: isize, end_dim: isize) -> Self {
        Flatten { start_dim, end_dim }
    }
}

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

/// Declares a stateless activation module: its fields with PyTorch's defaults (printed by
/// `$repr`), `new()` / `Default`, a setter per field (its keyword argument), and its forward.
macro_rules! activation {
    ($(#[$doc:meta])* $name:ident { $($f:ident: $t:ty = $def:expr),* } repr = |$s:ident| $repr:expr, forward = |$s2:ident, $x:ident| $fwd:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, crate::Module)]
        #[module(extra_repr = Self::args)]
        pub struct $name {
            $(
                #[allow(missing_docs)]
                #[module(skip)]
                pub $f: $t,
            )*
        }
        impl Default for $name {
            fn default() -> Self {
                $name { $($f: $def),* }
            }
        }
        impl $name {
            fn args(&self) -> String {
                let $s = self;
                $repr
            }
            /// The layer with PyTorch's defaults.
            pub fn new() -> Self {
                Self::default()
            }
            $(
                #[doc = concat!("`", stringify!($f), "=…`.")]
                pub fn $f(mut self, v: $t) -> Self {
                    self.$f = v;
                    self
                }
            )*
        }
        impl Forward for $name {
            fn forward(&mut self, $x: &Tensor) -> Result<Tensor> {
                let $s2 = &*self;
                $fwd
            }
        }
    };
}

activation!(
    /// `nn.GELU(approximate='none' | 'tanh')`.
    GELU { tanh_approximation: bool = false }
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
    ELU { alpha: f32 = 1.0 }
    repr = |s| format!("alpha={}", py_float32(s.alpha)),
    forward = |s, x| ops::elu(x, s.alpha)
);
activation!(
    /// `nn.LeakyReLU(negative_slope=0.01)`.
    LeakyReLU { negative_slope: f32 = 0.01 }
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
    Softplus { beta: f32 = 1.0, threshold: f32 = 20.0 }
    repr = |s| format!(
        "beta={}, threshold={}",
        py_float32(s.beta),
        py_float32(s.threshold)
    ),
    forward = |s, x| ops::softplus(x, s.beta, s.threshold)
);
activation!(
    /// `nn.Hardtanh(min_val=-1.0, max_val=1.0)`.
    Hardtanh { min_val: f32 = -1.0, max_val: f32 = 1.0 }
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
