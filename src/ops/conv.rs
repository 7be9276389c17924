//! `conv2d` and `conv1d` (PyTorch's `F.conv2d` / `F.conv1d`: stride, padding including
//! `"same"`, dilation, groups including depthwise, optional bias), with their backward.
//!
//! The CPU path lowers each image to a matrix product on the `gemm` crate (one image's columns
//! at a time, images spread over the cores). The GPU path is an implicit GEMM: the kernels
//! (`shaders/conv2d*.wgsl`) read the input through the convolution's index map where a matrix
//! product reads its left operand, so no unfolded copy of the input is ever made. Each
//! invocation holds a 4 × 4 register block (4 pixels of one output row × 4 channels), as the
//! direct matrix products do.
//!
//! Numbers: each output is a sum over `C/groups · KH · KW` products, in another order than
//! PyTorch's (oneDNN's) and than the other device's; the tests bound the difference by
//! 1e-5 × max|y| (forward) and 1e-5 × max|grad| (backward) on PyTorch's op cases.

use std::sync::Arc;

use rayon::prelude::*;

use crate::autograd::{record, wants};
use crate::error::{Error, Result};
use crate::gpu::kernels::{ConvParams, Kernel};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::split;
use crate::gpu::GpuContext;
use crate::ops::common::launch_whole;
use crate::ops::grad::sum_to;
use crate::ops::op::{check_float, run, Op};
use crate::tensor::{HostBytes, Tensor};

/// A convolution's padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// `padding=(ph, pw)`: zeros on both sides (conv1d reads `pw`).
    Explicit(usize, usize),
    /// `padding="same"`: the output as large as the input (stride 1 only); when the total
    /// padding `dilation · (kernel - 1)` is odd, the extra zero goes after (right, bottom), as
    /// PyTorch pads.
    Same,
}

/// The arguments of [`conv2d`] and [`conv1d`] after the tensors, with PyTorch's defaults
/// (stride 1, padding 0, dilation 1, groups 1). Pairs are `(height, width)`; `conv1d` reads the
/// width components.
///
/// ```
/// use wgnn::ops::{ConvOptions, Padding};
/// let o = ConvOptions::default().stride(2).padding(1);
/// assert_eq!((o.stride, o.padding), ((2, 2), Padding::Explicit(1, 1)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvOptions {
    /// `stride`.
    pub stride: (usize, usize),
    /// `padding`.
    pub padding: Padding,
    /// `dilation`.
    pub dilation: (usize, usize),
    /// `groups`: input and output channels are split into this many groups, each convolved
    /// with its own slice of the weight (`groups = in_channels` is a depthwise convolution).
    pub groups: usize,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions {
            stride: (1, 1),
            padding: Padding::Explicit(0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl ConvOptions {
    /// The same stride along both dimensions.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    /// The same zero padding on every side.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = Padding::Explicit(p, p);
        self
    }
    /// `padding="same"`.
    pub fn same(mut self) -> Self {
        self.padding = Padding::Same;
        self
    }
    /// The same dilation along both dimensions.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    /// `groups`.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// Everything a convolution's kernels need: sizes of the input `[n, c, h, w]`, the weight
/// `[o, c / groups, kh, kw]` and the output `[n, o, oh, ow]`, the steps, and the top/left
/// padding (a `"same"` padding's extra bottom/right zero is the bounds check's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub groups: usize,
}

impl Geom {
    /// Input channels per group.
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Output channels per group.
    fn og(&self) -> usize {
        self.o / self.groups
    }
    /// The reduction length of one output: `cg · kh · kw`.
    fn kk(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Output pixels per image.
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    fn flops(&self) -> u64 {
        2 * (self.n * self.o * self.p() * self.kk()) as u64
    }

    /// Checks `x [N, C, H, W]` against `weight [O, C/groups, KH, KW]` and the options, as
    /// PyTorch does, with errors that name the sizes.
    fn of(name: &str, x: &[usize], wt: &[usize], o: &ConvOptions) -> Result<Geom> {
        let err = |m: String| Error::shape(name, m);
        let &[n, c, h, w] = x else {
            return Err(err(format!("expected a 4-D input [N, C, H, W], got {x:?}")));
        };
        let &[oc, cg, kh, kw] = wt else {
            return Err(err(format!(
                "expected a 4-D weight [out_channels, in_channels / groups, kH, kW], got {wt:?}"
            )));
        };
        let g = o.groups;
        if g == 0 || oc % g != 0 || c % g != 0 {
            return Err(err(format!(
                "groups {g} must be positive and divide the input's {c} and the weight's {oc} \
                 channels"
            )));
        }
        if cg * g != c {
            return Err(err(format!(
                "weight {wt:?} (groups {g}) expects input to have {} channels, but got {c} \
                 channels instead (input {x:?})",
                cg * g
            )));
        }
        let (sh, sw) = o.stride;
        let (dh, dw) = o.dilation;
        if sh == 0 || sw == 0 || dh == 0 || dw == 0 {
            return Err(err(format!(
                "stride {:?} and dilation {:?} must be positive",
                o.stride, o.dilation
            )));
        }
        if kh == 0 || kw == 0 || oc == 0 {
            return Err(err(format!("empty weight {wt:?}")));
        }
        let span = |k: usize, d: usize| (k - 1).checked_mul(d).and_then(|v| v.checked_add(1));
        let (eh, ew) = match (span(kh, dh), span(kw, dw)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(err("kernel extent overflows".into())),
        };
        let (ph, pw, oh, ow) = match o.padding {
            Padding::Same => {
                if (sh, sw) != (1, 1) {
                    return Err(err(
                        "padding='same' is not supported for strided convolutions".into(),
                    ));
                }
                ((eh - 1) / 2, (ew - 1) / 2, h, w)
            }
            Padding::Explicit(ph, pw) => {
                let size = |i: usize, p: usize, e: usize, s: usize| {
                    i.checked_add(p.checked_mul(2)?)
                        .and_then(|v| v.checked_sub(e))
                        .map(|v| v / s + 1)
                };
                match (size(h, ph, eh, sh), size(w, pw, ew, sw)) {
                    (Some(oh), Some(ow)) => (ph, pw, oh, ow),
                    _ => {
                        return Err(err(format!(
                            "input {x:?} with padding ({ph}, {pw}) is smaller than the kernel's \
                             extent ({eh}, {ew}) (kernel ({kh}, {kw}), dilation ({dh}, {dw}))"
                        )))
                    }
                }
            }
        };
        Ok(Geom {
            n,
            c,
            h,
            w,
            o: oc,
            kh,
            kw,
            oh,
            ow,
            sh,
            sw,
            ph,
            pw,
            dh,
            dw,
            groups: g,
        })
    }

    /// The input row and column that output `(oy, ox)` reads at kernel tap `(i, j)`, if
    /// inside the input.
    #[inline]
    fn src(&self, oy: usize, ox: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let y = (oy * self.sh + i * self.dh).checked_sub(self.ph)?;
        let x = (ox * self.sw + j * self.dw).checked_sub(self.pw)?;
        (y < self.h && x < self.w).then_some((y, x))
    }

    /// One image's columns for group `g`: `col[(c, i, j) · ld + off + (oy, ox)]`, `kk` rows of
    /// `p` (rows `ld` apart, so several images' columns can sit side by side). Each output row
    /// is a zero-filled margin and a copy (a strided one for strides past 1).
    fn im2col(&self, x: &[f32], g: usize, col: &mut [f32], ld: usize, off: usize) {
        let (cg, p) = (self.cg(), self.p());
        for c in 0..cg {
            let plane = &x[(g * cg + c) * self.h * self.w..][..self.h * self.w];
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let row = &mut col[((c * self.kh + i) * self.kw + j) * ld + off..][..p];
                    // Columns ox with 0 ≤ ox·sw + j·dw - pw < w: [lo, hi).
                    let shift = j * self.dw;
                    let lo = self.pw.saturating_sub(shift).div_ceil(self.sw).min(self.ow);
                    let hi = (self.w + self.pw)
                        .saturating_sub(shift)
                        .div_ceil(self.sw)
                        .clamp(lo, self.ow);
                    for oy in 0..self.oh {
                        let dst = &mut row[oy * self.ow..][..self.ow];
                        let y = (oy * self.sh + i * self.dh).checked_sub(self.ph);
                        let Some(y) = y.filter(|&y| y < self.h) else {
                            dst.fill(0.0);
                            continue;
                        };
                        let src = &plane[y * self.w..][..self.w];
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        let x0 = lo * self.sw + shift - self.pw;
                        if self.sw == 1 {
                            dst[lo..hi].copy_from_slice(&src[x0..x0 + hi - lo]);
                        } else {
                            for (k, d) in dst[lo..hi].iter_mut().enumerate() {
                                *d = src[x0 + k * self.sw];
                            }
                        }
                    }
                }
            }
        }
    }

    /// The reverse of [`im2col`](Self::im2col): adds `col` into one image's gradient.
    fn col2im(&self, col: &[f32], g: usize, dx: &mut [f32]) {
        let (cg, p) = (self.cg(), self.p());
        for c in 0..cg {
            let plane = &mut dx[(g * cg + c) * self.h * self.w..][..self.h * self.w];
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let row = &col[((c * self.kh + i) * self.kw + j) * p..][..p];
                    for oy in 0..self.oh {
                        for ox in 0..self.ow {
                            if let Some((y, x)) = self.src(oy, ox, i, j) {
                                plane[y * self.w + x] += row[oy * self.ow + ox];
                            }
                        }
                    }
                }
            }
        }
    }

    /// The forward of a stride-1 convolution of images `n0..n0 + nb` into `y` (their
    /// `[nb, O, OH, OW]`) without unfolding them: the images of each group are laid out padded,
    /// channel-major (`xp[c][image][row][col]`, rows `wp = OW + KW' - 1` wide), where kernel tap
    /// `(i, j)` of every output is the same element shifted by `i·dh·wp + j·dw`; so each tap is
    /// one GEMM over all the chunk's positions (`M` = positions, `N` = output channels, `K` =
    /// input channels) accumulated into `acc`, and the valid positions are copied out. The
    /// padded copy is 1.3× the input where the unfolded columns were 9×.
    #[allow(clippy::too_many_arguments)]
    fn forward_shifted(
        &self,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
        (n0, nb): (usize, usize),
        buf: &mut Vec<f32>,
    ) -> Result<()> {
        let (cg, og, kk, p) = (self.cg(), self.og(), self.kk(), self.p());
        let (eh, ew) = ((self.kh - 1) * self.dh + 1, (self.kw - 1) * self.dw + 1);
        let (hp, wp) = (self.oh + eh - 1, self.ow + ew - 1);
        let plane = hp * wp;
        let l = nb * plane;
        let ls = l + (eh - 1) * wp + (ew - 1);
        let (xp, acc) = scratch(buf, cg * ls + l * og)?.split_at_mut(cg * ls);
        let xs = self.c * self.h * self.w;
        for gi in 0..self.groups {
            xp.fill(0.0);
            for c in 0..cg {
                for k in 0..nb {
                    let src =
                        &x[(n0 + k) * xs + (gi * cg + c) * self.h * self.w..][..self.h * self.w];
                    let dst = &mut xp[c * ls + k * plane..][..plane];
                    for (r, row) in src.chunks(self.w).enumerate() {
                        dst[(r + self.ph) * wp + self.pw..][..self.w].copy_from_slice(row);
                    }
                }
            }
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let off = i * self.dh * wp + j * self.dw;
                    gemm_into(
                        (l, og, cg),
                        acc,
                        (1, l),
                        (&xp[off..], 1, ls),
                        (&w[gi * og * kk + i * self.kw + j..], self.kh * self.kw, kk),
                        i + j > 0,
                    )?;
                }
            }
            for k in 0..nb {
                for o in 0..og {
                    let ch = gi * og + o;
                    let bv = bias.map_or(0.0, |b| b[ch]);
                    let out = &mut y[(k * self.o + ch) * p..][..p];
                    for oy in 0..self.oh {
                        let src = &acc[o * l + k * plane + oy * wp..][..self.ow];
                        let dst = &mut out[oy * self.ow..][..self.ow];
                        if bias.is_some() {
                            for (d, v) in dst.iter_mut().zip(src) {
                                *d = v + bv;
                            }
                        } else {
                            dst.copy_from_slice(src);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the columns of an image are the image itself (1 × 1, stride 1, no padding).
    fn is_pointwise(&self) -> bool {
        (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw) == (1, 1, 1, 1, 0, 0)
    }
}

/// `C (m × n, strides (crs, ccs)) = A · B` on the `gemm` crate, single-threaded (the caller
/// spreads images over the cores), `A[i, k] = a[i·ars + k·acs]`, `B[k, j] = b[k·brs + j·bcs]`;
/// with `accumulate`, `C += A · B`.
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    (m, n, k): (usize, usize, usize),
    c: &mut [f32],
    (crs, ccs): (usize, usize),
    (a, ars, acs): (&[f32], usize, usize),
    (b, brs, bcs): (&[f32], usize, usize),
    accumulate: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs + 1
    };
    if (k > 0 && (last(m, ars, k, acs) > a.len() || last(k, brs, n, bcs) > b.len()))
        || last(m, crs, n, ccs) > c.len()
    {
        return Err(Error::internal(
            "conv: a GEMM's operands exceed their buffers",
        ));
    }
    // SAFETY: the checks above bound every index the GEMM reads in `a` and `b` and every index
    // it writes in `c` (strides `crs`, `ccs`; the callers' outputs never alias).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            ccs as isize,
            crs as isize,
            accumulate,
            a.as_ptr(),
            acs as isize,
            ars as isize,
            b.as_ptr(),
            bcs as isize,
            brs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

/// Calls `f(chunk_index, out_chunk, scratch)` on each `per`-element chunk of `out`, chunks over
/// the cores when there is enough work; `scratch` is one growable buffer per worker, reused
/// across its chunks (so the columns are neither allocated nor zeroed per image).
fn per_image(
    out: &mut [f32],
    per: usize,
    work: u64,
    f: impl Fn(usize, &mut [f32], &mut Vec<f32>) -> Result<()> + Sync,
) -> Result<()> {
    if per == 0 {
        return Ok(());
    }
    if crate::ops::threads::cores() > 1 && work >= 1 << 18 {
        out.par_chunks_mut(per)
            .enumerate()
            .try_for_each_init(Vec::new, |scratch, (i, c)| f(i, c, scratch))
    } else {
        let mut scratch = Vec::new();
        out.chunks_mut(per)
            .enumerate()
            .try_for_each(|(i, c)| f(i, c, &mut scratch))
    }
}

/// The first `n` elements of `buf`, grown (never shrunk or cleared) to hold them: contents
/// are stale, for buffers the caller overwrites whole.
fn scratch(buf: &mut Vec<f32>, n: usize) -> Result<&mut [f32]> {
    if buf.len() < n {
        buf.try_reserve_exact(n - buf.len())
            .map_err(|_| Error::OutOfMemory {
                what: "conv2d columns".into(),
                bytes: n as u128 * 4,
            })?;
        buf.resize(n, 0.0);
    }
    Ok(&mut buf[..n])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// x, weight[, bias] → y; with `transposed` (GPU only) the weight comes as
    /// `[groups, C/g·KH·KW, O/g]` for `conv2d_t8.wgsl`.
    Forward { bias: bool, transposed: bool },
    /// g, weight → dx.
    GradInput,
    /// x, g → dw, as `splits` partial sums `[splits, O, C/groups, KH, KW]` over slices of the
    /// batch (summed by the caller).
    GradWeight { splits: usize },
}

struct Conv {
    name: &'static str,
    kind: Kind,
    geom: Geom,
    out: Vec<usize>,
}

/// Images per partial sum of a weight gradient on the GPU (`splits` slices of the batch): enough
/// invocations to fill the adapter, each slice at least 1024 output pixels long.
fn weight_splits(ctx: Option<&GpuContext>, g: &Geom) -> usize {
    let Some(ctx) = ctx else { return 1 };
    let blocks = g.o.div_ceil(4) * g.kk().div_ceil(4);
    let want = crate::gpu::tuning::conv_weight_invocations(ctx);
    let by_work = g.n * g.p() / 1024;
    want.div_ceil(blocks.max(1))
        .min(by_work)
        .clamp(1, g.n.max(1))
}

/// `F.conv2d(x, weight, bias, stride, padding, dilation, groups)`: `x [N, C, H, W]`, `weight
/// [O, C / groups, KH, KW]`, `bias [O]`, to `[N, O, OH, OW]`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: &ConvOptions,
) -> Result<Tensor> {
    let name = "conv2d";
    check_float(name, x, "input")?;
    check_float(name, weight, "weight")?;
    let mut operands = vec![(x, "input"), (weight, "weight")];
    operands.extend(bias.map(|b| (b, "bias")));
    crate::ops::op::check_same_dtype(name, &operands)?;
    let geom = Geom::of(name, x.shape(), weight.shape(), options)?;
    if let Some(b) = bias {
        check_float(name, b, "bias")?;
        if b.shape() != [geom.o] {
            return Err(Error::shape(
                name,
                format!(
                    "bias {:?} must be [{}], one per output channel",
                    b.shape(),
                    geom.o
                ),
            ));
        }
    }
    // On a GPU, output channels in groups of 8 take the 8 × 16 kernel, which reads the weight
    // transposed (a copy of the weight, not of the input).
    let transposed = matches!(x.device(), crate::Device::Gpu(_)) && geom.og() % 8 == 0;
    let wt = if transposed {
        crate::autograd::no_grad(|| {
            crate::ops::transpose(&weight.reshape([geom.groups, geom.og(), geom.kk()])?, 1, 2)?
                .contiguous()
        })?
    } else {
        weight.clone()
    };
    let op = Conv {
        name,
        kind: Kind::Forward {
            bias: bias.is_some(),
            transposed,
        },
        geom,
        out: vec![geom.n, geom.o, geom.oh, geom.ow],
    };
    let y = match bias {
        Some(b) => run(&op, &[x, &wt, b], None)?,
        None => run(&op, &[x, &wt], None)?,
    };
    let inputs: Vec<&Tensor> = [Some(x), Some(weight), bias]
        .into_iter()
        .flatten()
        .collect();
    Ok(record(name, y, &inputs, || {
        let (x, w) = (x.detach(), weight.detach());
        let has_bias = bias.is_some();
        Box::new(move |g, needs| {
            let dx = wants(needs, 0)
                .then(|| conv2d_grad_input(g, &w, &geom))
                .transpose()?;
            let dw = wants(needs, 1)
                .then(|| conv2d_grad_weight(&x, g, &geom))
                .transpose()?;
            let mut grads = vec![dx, dw];
            if has_bias {
                grads.push(
                    wants(needs, 2)
                        .then(|| sum_to(g, &[geom.o, 1, 1])?.reshape([geom.o]))
                        .transpose()?,
                );
            }
            Ok(grads)
        })
    }))
}

/// The gradient of a convolution's input: `g [N, O, OH, OW]` against `w`.
fn conv2d_grad_input(g: &Tensor, w: &Tensor, geom: &Geom) -> Result<Tensor> {
    let op = Conv {
        name: "conv2d backward (input)",
        kind: Kind::GradInput,
        geom: *geom,
        out: vec![geom.n, geom.c, geom.h, geom.w],
    };
    run(&op, &[g, w], None)
}

/// The gradient of a convolution's weight: `x` against `g [N, O, OH, OW]`.
fn conv2d_grad_weight(x: &Tensor, g: &Tensor, geom: &Geom) -> Result<Tensor> {
    let ctx = match x.device() {
        crate::Device::Gpu(d) => Some(d.0.clone()),
        crate::Device::Cpu => None,
    };
    let splits = weight_splits(ctx.as_deref(), geom);
    let wshape = [geom.o, geom.cg(), geom.kh, geom.kw];
    let op = Conv {
        name: "conv2d backward (weight)",
        kind: Kind::GradWeight { splits },
        geom: *geom,
        out: [&[splits][..], &wshape].concat(),
    };
    let parts = run(&op, &[x, g], None)?;
    if splits == 1 {
        parts.reshape(wshape)
    } else {
        sum_to(&parts, &[1, wshape[0], wshape[1], wshape[2], wshape[3]])?.reshape(wshape)
    }
}

/// `F.conv1d(x, weight, bias, stride, padding, dilation, groups)`: `x [N, C, L]`, `weight
/// [O, C / groups, K]`, to `[N, O, OL]`; the options' width components apply (it runs as a
/// [`conv2d`] of height 1).
pub fn conv1d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: &ConvOptions,
) -> Result<Tensor> {
    let (&[n, c, l], &[o, cg, k]) = (x.shape(), weight.shape()) else {
        return Err(Error::shape(
            "conv1d",
            format!(
                "expected a 3-D input [N, C, L] and weight [out_channels, in_channels / groups, \
                 K], got {:?} and {:?}",
                x.shape(),
                weight.shape()
            ),
        ));
    };
    let opts = ConvOptions {
        stride: (1, options.stride.1),
        padding: match options.padding {
            Padding::Explicit(_, p) => Padding::Explicit(0, p),
            Padding::Same => Padding::Same,
        },
        dilation: (1, options.dilation.1),
        groups: options.groups,
    };
    let y = conv2d(
        &x.reshape([n, c, 1, l])?,
        &weight.reshape([o, cg, 1, k])?,
        bias,
        &opts,
    )?;
    let ol = y.shape()[3];
    y.reshape([n, o, ol])
}

impl Op for Conv {
    fn name(&self) -> &'static str {
        self.name
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn flops(&self) -> u64 {
        self.geom.flops()
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let g = self.geom;
        let (cg, og, kk, p) = (g.cg(), g.og(), g.kk(), g.p());
        let work = g.flops();
        match self.kind {
            Kind::Forward { bias, transposed } => {
                if transposed {
                    return Err(Error::internal("conv2d: a transposed weight on the CPU"));
                }
                let (x, w) = (inputs[0].as_f32(), inputs[1].as_f32());
                let b = bias.then(|| inputs[2].as_f32());
                // Images in chunks whose columns side by side make one GEMM at least 2048
                // wide: the small per-image products of the deep layers (64 × 64 × 576) cost
                // the GEMM's packing more than their multiply-adds.
                let per = (1024usize.div_ceil(p.max(1))).clamp(1, g.n.max(1));
                let img = g.o * p;
                if (g.sh, g.sw) == (1, 1) {
                    let (eh, ew) = ((g.kh - 1) * g.dh + 1, (g.kw - 1) * g.dw + 1);
                    let plane = (g.oh + eh - 1) * (g.ow + ew - 1);
                    let per = 1024usize.div_ceil(plane.max(1)).clamp(1, g.n.max(1));
                    return per_image(out.as_f32_mut(), per * img, work, |ci, y, buf| {
                        let nb = y.len() / img.max(1);
                        g.forward_shifted(x, w, b, y, (ci * per, nb), buf)
                    });
                }
                let xs = g.c * g.h * g.w;
                per_image(out.as_f32_mut(), per * img, work, |ci, y, buf| {
                    let n0 = ci * per;
                    let nb = y.len() / img.max(1);
                    let ld = nb * p;
                    let (col, tmp) = scratch(buf, (kk + og) * ld)?.split_at_mut(kk * ld);
                    for gi in 0..g.groups {
                        for k in 0..nb {
                            g.im2col(&x[(n0 + k) * xs..][..xs], gi, col, ld, k * p);
                        }
                        // As Yᵀ [ld, og] = colᵀ · Wᵀ, the wide side along the GEMM's M;
                        // one image writes its output in place, several go through `tmp`.
                        let (dst, dst_rs): (&mut [f32], usize) = if nb == 1 {
                            (&mut y[gi * og * p..], p)
                        } else {
                            (&mut *tmp, ld)
                        };
                        gemm_into(
                            (ld, og, kk),
                            dst,
                            (1, dst_rs),
                            (col, 1, ld),
                            (&w[gi * og * kk..], 1, kk),
                            false,
                        )?;
                        if nb > 1 {
                            for k in 0..nb {
                                for o in 0..og {
                                    let ch = gi * og + o;
                                    y[k * img + ch * p..][..p]
                                        .copy_from_slice(&tmp[o * ld + k * p..][..p]);
                                }
                            }
                        }
                    }
                    if let Some(b) = b {
                        for k in 0..nb {
                            for (ch, bv) in b.iter().enumerate() {
                                y[k * img + ch * p..][..p].iter_mut().for_each(|v| *v += bv);
                            }
                        }
                    }
                    Ok(())
                })
            }
            Kind::GradInput => {
                let (gy, w) = (inputs[0].as_f32(), inputs[1].as_f32());
                per_image(out.as_f32_mut(), g.c * g.h * g.w, work, |n, dx, buf| {
                    let gn = &gy[n * g.o * p..][..g.o * p];
                    let col = scratch(buf, kk * p)?;
                    for gi in 0..g.groups {
                        // dcol [kk, p] = W_gᵀ [kk, og] · g_n,g [og, p].
                        let target: &mut [f32] = if g.is_pointwise() {
                            &mut dx[gi * cg * p..][..cg * p]
                        } else {
                            &mut *col
                        };
                        gemm_into(
                            (kk, p, og),
                            target,
                            (p, 1),
                            (&w[gi * og * kk..], 1, kk),
                            (&gn[gi * og * p..], p, 1),
                            false,
                        )?;
                        if !g.is_pointwise() {
                            g.col2im(col, gi, dx);
                        }
                    }
                    Ok(())
                })
            }
            Kind::GradWeight { .. } => {
                // The CPU path returns the whole sum as its one split: each image's part is
                // computed in parallel, a few images at a time (memory: `batch` parts, not N),
                // and added in image order, so the sum is the same on any number of cores.
                let (x, gy) = (inputs[0].as_f32(), inputs[1].as_f32());
                let per = g.o * kk;
                let batch = (4 * crate::ops::threads::cores()).clamp(1, g.n.max(1));
                let mut parts: Vec<f32> =
                    crate::tensor::try_zeroed_vec(batch * per, "conv2d weight gradient parts")?;
                let dw = out.as_f32_mut();
                for n0 in (0..g.n).step_by(batch) {
                    let nb = batch.min(g.n - n0);
                    per_image(&mut parts[..nb * per], per, work, |k, part, buf| {
                        let n = n0 + k;
                        let xn = &x[n * g.c * g.h * g.w..][..g.c * g.h * g.w];
                        let gn = &gy[n * g.o * p..][..g.o * p];
                        let col = scratch(buf, if g.is_pointwise() { 0 } else { kk * p })?;
                        for gi in 0..g.groups {
                            let cols: &[f32] = if g.is_pointwise() {
                                &xn[gi * cg * p..][..cg * p]
                            } else {
                                g.im2col(xn, gi, col, p, 0);
                                &*col
                            };
                            // dW_g [og, kk] = g_n,g [og, p] · colᵀ [p, kk].
                            gemm_into(
                                (og, kk, p),
                                &mut part[gi * og * kk..],
                                (kk, 1),
                                (&gn[gi * og * p..], p, 1),
                                (cols, 1, p),
                                false,
                            )?;
                        }
                        Ok(())
                    })?;
                    for part in parts[..nb * per].chunks(per.max(1)) {
                        for (d, v) in dw.iter_mut().zip(part) {
                            *d += v;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let g = self.geom;
        for b in inputs.iter().chain([&out]) {
            split::check_whole(ctx, b, &format!("a buffer of {}", self.name))?;
        }
        let u = |v: usize| {
            u32::try_from(v).map_err(|_| Error::shape(self.name, format!("size {v} beyond u32")))
        };
        let biggest = [
            g.n * g.c * g.h * g.w,
            g.n * g.o * g.p(),
            g.o * g.kk() * g.n.max(1),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        split::check_u32_index(ctx, biggest as u64, &format!("{} indices", self.name))?;
        let mut p = ConvParams {
            n: u(g.n)?,
            c: u(g.c)?,
            h: u(g.h)?,
            w: u(g.w)?,
            o: u(g.o)?,
            kh: u(g.kh)?,
            kw: u(g.kw)?,
            oh: u(g.oh)?,
            ow: u(g.ow)?,
            sh: u(g.sh)?,
            sw: u(g.sw)?,
            ph: u(g.ph)?,
            pw: u(g.pw)?,
            dh: u(g.dh)?,
            dw: u(g.dw)?,
            groups: u(g.groups)?,
            cg: u(g.cg())?,
            og: u(g.og())?,
            kk: u(g.kk())?,
            flags: 0,
            splits: 1,
            per_split: u(g.n)?,
            blocks: 0,
            row_width: 0,
        };
        let mut bufs: Vec<&GpuBuffer> = inputs.to_vec();
        let (kernel, blocks): (fn(ConvParams) -> Kernel, u64) = match self.kind {
            Kind::Forward { bias, transposed } => {
                p.flags = bias as u32;
                if !bias {
                    bufs.push(inputs[0]);
                }
                if transposed {
                    let blocks = (g.n * g.oh * g.ow.div_ceil(8)) as u64
                        * (g.groups * g.og().div_ceil(16)) as u64;
                    (Kernel::Conv2dT8, blocks)
                } else {
                    let blocks = (g.n * g.oh * g.ow.div_ceil(4)) as u64
                        * (g.groups * g.og().div_ceil(4)) as u64;
                    (Kernel::Conv2d, blocks)
                }
            }
            Kind::GradInput => {
                let blocks =
                    (g.n * g.h * g.w.div_ceil(4)) as u64 * (g.groups * g.cg().div_ceil(4)) as u64;
                (Kernel::Conv2dGradInput, blocks)
            }
            Kind::GradWeight { splits } => {
                p.splits = u(splits)?;
                p.per_split = u(g.n.div_ceil(splits.max(1)))?;
                let blocks = (splits * g.groups * g.og().div_ceil(4) * g.kk().div_ceil(4)) as u64;
                (Kernel::Conv2dGradWeight, blocks)
            }
        };
        if bufs.len() < 3 {
            // Every conv kernel binds three inputs; the unused one is bound to an input.
            bufs.push(inputs[0]);
        }
        bufs.push(out);
        let (gx, gy, row_width) = split::grid(ctx, blocks)?;
        p.blocks = blocks as u32;
        p.row_width = row_width;
        launch_whole(ctx, kernel(p), &bufs, [gx, gy, 1])
    }
}
