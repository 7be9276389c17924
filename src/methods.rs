//! Tensor methods and operators named as PyTorch's: every public op of [`ops`](crate::ops) is
//! also a method (`x.relu()?`, `x.softmax(-1)?`, `x.sum(&[1, 2], false)?`,
//! `x.reshape(&[b, -1])?`), dimensions count from the end when negative wherever PyTorch takes
//! them so, and `+ - * /` work between tensors (`&Tensor`, `Tensor`, and `Result<Tensor>` on
//! one side, so chains need one `?`) and with `f32`/`f64` scalars on either side (a float
//! literal on the right needs no suffix; on the left it needs one, `1f32 - &x`, since either
//! type fits there). One implementation behind both: each method calls the free function.
//!
//! ```
//! use wgnn::{Device, Tensor};
//! let a = Tensor::from_slice(&[1f32, -2.0, 3.0, -4.0], &[2, 2])?;
//! let b = Tensor::from_slice(&[0.5f32, 0.25], &[2])?;
//! let gate = (&a.tanh()? * &b.sigmoid()?)?;               // broadcast [2, 2] × [2]
//! let y = ((2f32 * &(&gate + 1.0)?)? - &a)?;                // scalars on either side
//! assert_eq!(y.shape(), [2, 2]);
//! let s = a.reshape(&[1, -1])?.softmax(-1)?.sum(&[-1], false)?;
//! assert!((s.to_vec::<f32>()?[0] - 1.0).abs() < 1e-6);
//! let halves = a.chunk(2, -1)?;                              // [2, 1] each
//! let back = Tensor::cat(&[&halves[0], &halves[1]], -1)?;
//! assert_eq!(back.to_vec::<f32>()?, a.to_vec::<f32>()?);
//! # Ok::<(), wgnn::Error>(())
//! ```

use std::ops::{Add, Div, Mul, Sub};

use crate::error::{Error, Result};
use crate::ops::{self, ConvOptions, Generator};
use crate::tensor::Tensor;

/// An integer that can name a dimension or a size: PyTorch's `int` (negative dimensions count
/// from the end; a `-1` size is inferred).
pub trait Dim: Copy {
    /// As a signed value.
    fn as_i64(self) -> i64;
}
macro_rules! dim_ints {
    ($($t:ty),*) => {$(
        impl Dim for $t {
            fn as_i64(self) -> i64 {
                self as i64
            }
        }
    )*};
}
dim_ints!(usize, isize, i32, i64, u32);

/// A shape or a list of dimensions as PyTorch takes it: `&[2, -1]`, `&vec`, `[1, 2]`.
pub trait Dims {
    /// The values, signed.
    fn dims(&self) -> Vec<i64>;
}
impl<T: Dim> Dims for &[T] {
    fn dims(&self) -> Vec<i64> {
        self.iter().map(|d| d.as_i64()).collect()
    }
}
impl<T: Dim, const N: usize> Dims for &[T; N] {
    fn dims(&self) -> Vec<i64> {
        self.iter().map(|d| d.as_i64()).collect()
    }
}
impl<T: Dim, const N: usize> Dims for [T; N] {
    fn dims(&self) -> Vec<i64> {
        self.iter().map(|d| d.as_i64()).collect()
    }
}
impl<T: Dim> Dims for &Vec<T> {
    fn dims(&self) -> Vec<i64> {
        self.iter().map(|d| d.as_i64()).collect()
    }
}
impl<T: Dim> Dims for Vec<T> {
    fn dims(&self) -> Vec<i64> {
        self.iter().map(|d| d.as_i64()).collect()
    }
}

/// Dimension `d` of a tensor of rank `rank` (negative from the end), as PyTorch's
/// `maybe_wrap_dim`: an error naming the valid range otherwise.
pub fn wrap_dim(op: &str, d: impl Dim, rank: usize) -> Result<usize> {
    let d = d.as_i64();
    let r = rank.max(1) as i64;
    let w = if d < 0 { d + r } else { d };
    if !(0..r).contains(&w) {
        return Err(Error::shape(
            op,
            format!(
                "Dimension out of range (expected to be in range of [{}, {}], but got {d})",
                -r,
                r - 1
            ),
        ));
    }
    Ok(w as usize)
}

/// Every dimension of `dims` wrapped; a repeated one is PyTorch's error.
fn wrap_dims(op: &str, dims: impl Dims, rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for d in dims.dims() {
        let w = wrap_dim(op, d, rank)?;
        if out.contains(&w) {
            return Err(Error::shape(
                op,
                format!("dim {w} appears multiple times in the list of dims"),
            ));
        }
        out.push(w);
    }
    Ok(out)
}

/// A shape with at most one `-1` (inferred from `numel`), as `view`/`reshape` take it.
pub(crate) fn infer_shape(op: &str, shape: impl Dims, numel: usize) -> Result<Vec<usize>> {
    let dims = shape.dims();
    let mut infer = None;
    let mut known: usize = 1;
    for (i, &d) in dims.iter().enumerate() {
        if d == -1 {
            if infer.replace(i).is_some() {
                return Err(Error::shape(op, "only one dimension can be inferred"));
            }
        } else if d < 0 {
            return Err(Error::shape(op, format!("invalid shape dimension {d}")));
        } else {
            known = known.checked_mul(d as usize).ok_or_else(|| {
                Error::shape(
                    op,
                    format!("shape {dims:?} has more elements than memory can hold"),
                )
            })?;
        }
    }
    let mut out: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(i) = infer {
        if known == 0 || !numel.is_multiple_of(known) {
            return Err(Error::shape(
                op,
                format!("shape '{dims:?}' is invalid for input of size {numel}"),
            ));
        }
        out[i] = numel / known;
    }
    Ok(out)
}

/// `f(x)` over the last dimension, for a dimension `dim` that may be another: moved last and
/// back.
fn along(
    x: &Tensor,
    op: &str,
    dim: isize,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let rank = x.shape().len();
    let d = wrap_dim(op, dim, rank)?;
    if rank == 0 || d + 1 == rank {
        return f(x);
    }
    let moved = ops::transpose(x, d, rank - 1)?;
    ops::transpose(&f(&moved)?, d, rank - 1)
}

impl Tensor {
    /// `x.relu()`.
    pub fn relu(&self) -> Result<Tensor> {
        ops::relu(self)
    }
    /// `x.tanh()`.
    pub fn tanh(&self) -> Result<Tensor> {
        ops::tanh(self)
    }
    /// `x.sigmoid()`.
    pub fn sigmoid(&self) -> Result<Tensor> {
        ops::sigmoid(self)
    }
    /// `x.exp()`.
    pub fn exp(&self) -> Result<Tensor> {
        ops::exp(self)
    }
    /// `x.log()`.
    pub fn log(&self) -> Result<Tensor> {
        ops::log(self)
    }
    /// `x.neg()` (also `-1.0 * &x`).
    pub fn neg(&self) -> Result<Tensor> {
        ops::neg(self)
    }
    /// `x.sqrt()`.
    pub fn sqrt(&self) -> Result<Tensor> {
        ops::sqrt(self)
    }
    /// `x.rsqrt()`.
    pub fn rsqrt(&self) -> Result<Tensor> {
        ops::rsqrt(self)
    }
    /// `x.pow(exponent)`.
    pub fn pow(&self, exponent: f32) -> Result<Tensor> {
        ops::pow(self, exponent)
    }
    /// `x.clamp(min, max)`.
    pub fn clamp(&self, min: f32, max: f32) -> Result<Tensor> {
        ops::clamp(self, min, max)
    }
    /// `F.silu(x)`.
    pub fn silu(&self) -> Result<Tensor> {
        ops::silu(self)
    }
    /// `F.gelu(x)` (`approximate='none'`).
    pub fn gelu(&self) -> Result<Tensor> {
        ops::gelu(self, false)
    }
    /// `F.elu(x, alpha)`.
    pub fn elu(&self, alpha: f32) -> Result<Tensor> {
        ops::elu(self, alpha)
    }
    /// `F.leaky_relu(x, negative_slope)`.
    pub fn leaky_relu(&self, negative_slope: f32) -> Result<Tensor> {
        ops::leaky_relu(self, negative_slope)
    }
    /// `F.softplus(x, beta, threshold)`.
    pub fn softplus(&self, beta: f32, threshold: f32) -> Result<Tensor> {
        ops::softplus(self, beta, threshold)
    }
    /// `F.hardtanh(x, min_val, max_val)`.
    pub fn hardtanh(&self, min_val: f32, max_val: f32) -> Result<Tensor> {
        ops::hardtanh(self, min_val, max_val)
    }
    /// `x.add(other)`, broadcasting (also `&x + &other`). Where nothing is recorded for
    /// autograd and both have one shape, the sum is computed when first read, so a layer norm
    /// that takes it adds inside its own kernel (the same bits).
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        Tensor::deferred_add(self, other)
    }
    /// `x.sub(other)`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        ops::sub(self, other)
    }
    /// `x.mul(other)`, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        ops::mul(self, other)
    }
    /// `x.div(other)`, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        ops::div(self, other)
    }
    /// `x.matmul(other)` (`x @ other`).
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        ops::matmul(self, other)
    }
    /// `torch.where(self, a, b)` on a bool condition.
    pub fn where_(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        ops::where_(self, a, b)
    }
    /// `x.masked_fill(mask, value)`.
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Result<Tensor> {
        ops::masked_fill(self, mask, value)
    }
    /// `x.softmax(dim)`.
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        along(self, "softmax", dim, ops::softmax)
    }
    /// `x.sum(dims, keepdim)`; empty `dims` sums everything (`x.sum()`).
    pub fn sum(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        let d = self.reduce_dims("sum", dims)?;
        ops::sum(self, &d, keepdim)
    }
    /// `x.mean(dims, keepdim)`; empty `dims` averages everything (`x.mean()`).
    pub fn mean(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        let d = self.reduce_dims("mean", dims)?;
        ops::mean_dim(self, &d, keepdim)
    }
    /// `x.var(dims, unbiased, keepdim)`.
    pub fn var(&self, dims: impl Dims, unbiased: bool, keepdim: bool) -> Result<Tensor> {
        let d = self.reduce_dims("var", dims)?;
        ops::var(self, &d, unbiased, keepdim)
    }
    /// `x.amax(dims, keepdim)`.
    pub fn amax(&self, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        let d = self.reduce_dims("amax", dims)?;
        ops::amax(self, &d, keepdim)
    }
    /// `x.max(dim, keepdim)`: values and int64 indices.
    pub fn max(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        ops::max(self, wrap_dim("max", dim, self.shape().len())?, keepdim)
    }
    /// `x.argmax(dim)` (int64).
    pub fn argmax(&self, dim: isize) -> Result<Tensor> {
        let rank = self.shape().len();
        let d = wrap_dim("argmax", dim, rank)?;
        if rank == 0 || d + 1 == rank {
            return ops::argmax(self);
        }
        // `dim` moved last, the others in order: the result's dimensions are then in place.
        let order: Vec<usize> = (0..rank).filter(|&i| i != d).chain([d]).collect();
        ops::argmax(&ops::permute(self, &order)?.contiguous()?)
    }
    fn reduce_dims(&self, op: &str, dims: impl Dims) -> Result<Vec<usize>> {
        let rank = self.shape().len();
        let d = wrap_dims(op, dims, rank)?;
        Ok(if d.is_empty() { (0..rank).collect() } else { d })
    }

    /// `x.view(shape)` / `x.reshape(shape)` with one `-1` inferred: a view when the layout
    /// allows it, else a contiguous copy, as PyTorch's `reshape`.
    pub fn view(&self, shape: impl Dims) -> Result<Tensor> {
        self.reshape(shape)
    }
    /// `x.permute(dims)`.
    pub fn permute(&self, dims: impl Dims) -> Result<Tensor> {
        let d = wrap_dims("permute", dims, self.shape().len())?;
        ops::permute(self, &d)
    }
    /// `x.transpose(d0, d1)`.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let r = self.shape().len();
        ops::transpose(
            self,
            wrap_dim("transpose", d0, r)?,
            wrap_dim("transpose", d1, r)?,
        )
    }
    /// `x.t()`.
    pub fn t(&self) -> Result<Tensor> {
        ops::t(self)
    }
    /// `x.flatten(start_dim, end_dim)`.
    pub fn flatten(&self, start_dim: isize, end_dim: isize) -> Result<Tensor> {
        ops::flatten(self, start_dim, end_dim)
    }
    /// `x.squeeze(dim)`.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        ops::squeeze(self, wrap_dim("squeeze", dim, self.shape().len())?)
    }
    /// `x.unsqueeze(dim)` (`dim` in `[-rank-1, rank]`).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        ops::unsqueeze(self, wrap_dim("unsqueeze", dim, self.shape().len() + 1)?)
    }
    /// `x.narrow(dim, start, length)`.
    pub fn narrow(&self, dim: isize, start: usize, length: usize) -> Result<Tensor> {
        ops::narrow(
            self,
            wrap_dim("narrow", dim, self.shape().len())?,
            start,
            length,
        )
    }
    /// `x.select(dim, index)` (`x[:, index]` for `dim = 1`).
    pub fn select(&self, dim: isize, index: usize) -> Result<Tensor> {
        ops::select(self, wrap_dim("select", dim, self.shape().len())?, index)
    }
    /// `x.chunk(chunks, dim)`.
    pub fn chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
        ops::chunk(self, chunks, wrap_dim("chunk", dim, self.shape().len())?)
    }
    /// `x.split(split_size, dim)`.
    pub fn split(&self, split_size: usize, dim: isize) -> Result<Vec<Tensor>> {
        ops::split(
            self,
            split_size,
            wrap_dim("split", dim, self.shape().len())?,
        )
    }
    /// `x.expand(shape)` (`-1` keeps a size).
    pub fn expand(&self, shape: impl Dims) -> Result<Tensor> {
        let want = shape.dims();
        let s = self.shape();
        let lead = want.len().saturating_sub(s.len());
        let mut out = Vec::with_capacity(want.len());
        for (i, &w) in want.iter().enumerate() {
            out.push(if w == -1 && i >= lead {
                s[i - lead]
            } else if w < 0 {
                return Err(Error::shape("expand", format!("invalid size {w} at {i}")));
            } else {
                w as usize
            });
        }
        ops::expand(self, &out)
    }
    /// `torch.cat(tensors, dim)`.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let rank = tensors.first().map_or(1, |t| t.shape().len());
        ops::cat(tensors, wrap_dim("cat", dim, rank)?)
    }
    /// `torch.stack(tensors, dim)`.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let rank = tensors.first().map_or(0, |t| t.shape().len());
        ops::stack(tensors, wrap_dim("stack", dim, rank + 1)?)
    }

    /// `F.linear(x, weight, bias)`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        ops::linear(self, weight, bias)
    }
    /// `F.conv2d(x, weight, bias, …)`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: &ConvOptions,
    ) -> Result<Tensor> {
        ops::conv2d(self, weight, bias, options)
    }
    /// `F.conv1d(x, weight, bias, …)`.
    pub fn conv1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: &ConvOptions,
    ) -> Result<Tensor> {
        ops::conv1d(self, weight, bias, options)
    }
    /// `F.max_pool2d(x, kernel, stride, padding)`.
    pub fn max_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        ops::max_pool2d(self, kernel, stride, padding)
    }
    /// `F.avg_pool2d(x, kernel, stride, padding, count_include_pad=True)`.
    pub fn avg_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        ops::avg_pool2d(self, kernel, stride, padding, true)
    }
    /// `F.adaptive_avg_pool2d(x, output_size)`.
    pub fn adaptive_avg_pool2d(&self, output_size: (usize, usize)) -> Result<Tensor> {
        ops::adaptive_avg_pool2d(self, output_size)
    }
    /// `F.layer_norm(x, normalized_shape, weight, bias, eps)`.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        ops::layer_norm(self, normalized_shape, weight, bias, eps)
    }
    /// `F.dropout(x, p, training)` from `generator`.
    pub fn dropout(&self, p: f64, training: bool, generator: &mut Generator) -> Result<Tensor> {
        ops::dropout(self, p, training, generator)
    }
    /// `F.one_hot(x, num_classes)` of int64 indices (float32 result).
    pub fn one_hot(&self, num_classes: usize) -> Result<Tensor> {
        ops::one_hot(self, num_classes)
    }
    /// `F.cross_entropy(logits, targets)`, mean over rows.
    pub fn cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        ops::cross_entropy(self, targets)
    }
}

/// A scalar as a 0-dimensional tensor of `like`'s dtype and device.
fn scalar(v: f64, like: &Tensor) -> Result<Tensor> {
    let t = Tensor::full(&[], v as f32, &like.device())?;
    if like.dtype().is_float() && like.dtype() != t.dtype() {
        t.to_dtype(like.dtype())
    } else {
        Ok(t)
    }
}

/// What the operators take on the right of a tensor (and on either side of one another): a
/// tensor, a reference, the `Result` of an op (its error passes through), or an `f32`/`f64`
/// scalar (a float literal is taken as `f64`, so `&x + 1.0` needs no suffix).
pub trait Operand {
    /// The tensor, the scalar, or the error it carries.
    fn operand(self) -> Result<Rhs>;
}

/// An operator's right-hand side, resolved.
pub enum Rhs {
    /// A tensor (broadcast as PyTorch).
    Tensor(Tensor),
    /// A Python number: a 0-dimensional tensor of the other side's dtype.
    Scalar(f64),
}

impl Operand for Tensor {
    fn operand(self) -> Result<Rhs> {
        Ok(Rhs::Tensor(self))
    }
}
impl Operand for &Tensor {
    fn operand(self) -> Result<Rhs> {
        Ok(Rhs::Tensor(self.clone()))
    }
}
impl Operand for Result<Tensor> {
    fn operand(self) -> Result<Rhs> {
        self.map(Rhs::Tensor)
    }
}
impl Operand for &Result<Tensor> {
    fn operand(self) -> Result<Rhs> {
        self.clone().map(Rhs::Tensor)
    }
}
impl Operand for f64 {
    fn operand(self) -> Result<Rhs> {
        Ok(Rhs::Scalar(self))
    }
}
impl Operand for f32 {
    fn operand(self) -> Result<Rhs> {
        Ok(Rhs::Scalar(self as f64))
    }
}

/// `a op b` for a tensor `a` and any right-hand side.
fn apply(a: &Tensor, b: Rhs, f: fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Tensor> {
    match b {
        Rhs::Tensor(b) => f(a, &b),
        Rhs::Scalar(v) => f(a, &scalar(v, a)?),
    }
}

macro_rules! tensor_ops {
    ($($tr:ident $m:ident $f:expr;)*) => {$(
        impl<R: Operand> $tr<R> for &Tensor {
            type Output = Result<Tensor>;
            fn $m(self, rhs: R) -> Result<Tensor> {
                apply(self, rhs.operand()?, $f)
            }
        }
        impl<R: Operand> $tr<R> for Tensor {
            type Output = Result<Tensor>;
            fn $m(self, rhs: R) -> Result<Tensor> {
                apply(&self, rhs.operand()?, $f)
            }
        }
        impl $tr<&Tensor> for Result<Tensor> {
            type Output = Result<Tensor>;
            fn $m(self, rhs: &Tensor) -> Result<Tensor> {
                $f(&self?, rhs)
            }
        }
        impl $tr<Tensor> for Result<Tensor> {
            type Output = Result<Tensor>;
            fn $m(self, rhs: Tensor) -> Result<Tensor> {
                $f(&self?, &rhs)
            }
        }
        impl $tr<&Tensor> for f32 {
            type Output = Result<Tensor>;
            fn $m(self, rhs: &Tensor) -> Result<Tensor> {
                $f(&scalar(self as f64, rhs)?, rhs)
            }
        }
        impl $tr<Tensor> for f32 {
            type Output = Result<Tensor>;
            fn $m(self, rhs: Tensor) -> Result<Tensor> {
                $f(&scalar(self as f64, &rhs)?, &rhs)
            }
        }
        impl $tr<&Tensor> for f64 {
            type Output = Result<Tensor>;
            fn $m(self, rhs: &Tensor) -> Result<Tensor> {
                $f(&scalar(self, rhs)?, rhs)
            }
        }
        impl $tr<Tensor> for f64 {
            type Output = Result<Tensor>;
            fn $m(self, rhs: Tensor) -> Result<Tensor> {
                $f(&scalar(self, &rhs)?, &rhs)
            }
        }
    )*};
}

tensor_ops! {
    Add add Tensor::deferred_add;
    Sub sub ops::sub;
    Mul mul ops::mul;
    Div div ops::div;
}
