//! Layout ops. A tensor is a layout over shared storage, so `permute`, `transpose`, `t`,
//! `narrow`, `chunk`, `split`, `select`, `expand`, `squeeze` and `unsqueeze` are views: they
//! cost no kernel, and each records the backward that carries a gradient back to the layout it
//! came from. [`Tensor::contiguous`] copies a view into a dense tensor through one strided
//! gather (`strided_copy.wgsl`), which every other op does for its inputs when they are not
//! dense. Copies move bits: the CPU and GPU results are identical. Any dtype of 2, 4 or 8
//! bytes works on the GPU; every dtype on the CPU.

use std::sync::Arc;

use crate::autograd::record;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::codes::CopyMode;
use crate::gpu::kernels::{Kernel, PadParams, StridedParams};
use crate::gpu::launch::Launch;
use crate::gpu::pool::GpuBuffer;
use crate::gpu::split::Bind;
use crate::gpu::GpuContext;
use crate::ops::common::{elementwise_grid, launch_whole, pad8, MAX_RANK};
use crate::ops::grad::sum_to;
use crate::ops::op::{run, Op};
use crate::tensor::{HostBytes, Tensor};

/// `y[i] = x[base + Σ coord_d · strides_d]` over `out`, `x` being the input's whole storage.
struct Gather {
    name: &'static str,
    out: Vec<usize>,
    strides: Vec<usize>,
    base: usize,
    dtype: DType,
}

fn gather(
    name: &'static str,
    x: &Tensor,
    out: Vec<usize>,
    strides: Vec<usize>,
    base: usize,
) -> Result<Tensor> {
    if out.len() > MAX_RANK {
        return Err(Error::shape(
            name,
            format!(
                "rank {} is more than the {MAX_RANK} dimensions supported",
                out.len()
            ),
        ));
    }
    let op = Gather {
        name,
        out,
        strides,
        base,
        dtype: x.dtype(),
    };
    run(&op, &[x], None)
}

impl Op for Gather {
    fn name(&self) -> &'static str {
        self.name
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn out_dtype(&self) -> DType {
        self.dtype
    }
    fn reads_layout(&self) -> bool {
        true
    }
    fn moves_bits(&self) -> bool {
        true
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let size = self.dtype.size();
        let x = inputs[0].bytes();
        let y = out.bytes_mut();
        let rank = self.out.len();
        let mut coord = vec![0usize; rank];
        let mut xi = self.base;
        for o in y.chunks_exact_mut(size) {
            let at = xi * size;
            o.copy_from_slice(x.get(at..at + size).ok_or_else(|| {
                Error::internal(format!("{}: index outside its input", self.name))
            })?);
            // Odometer step over the output coordinates.
            for d in (0..rank).rev() {
                coord[d] += 1;
                xi += self.strides[d];
                if coord[d] < self.out[d] {
                    break;
                }
                xi -= self.strides[d] * self.out[d];
                coord[d] = 0;
            }
        }
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        // 2-byte elements: one invocation per output word of two elements.
        let (words, mode) = if self.dtype.size() == 2 {
            (1, CopyMode::Gather16)
        } else {
            (words_of(self.name, self.dtype)?, CopyMode::Gather)
        };
        let mut shape = self.out.clone();
        let mut strides: Vec<usize> = self.strides.iter().map(|s| s * words).collect();
        if words == 2 {
            shape.push(2);
            strides.push(1);
        }
        let (shape8, strides8) = pad8(self.name, &shape, &strides)?;
        let elements = shape.iter().product::<usize>() as u64;
        let n = if mode == CopyMode::Gather16 {
            elements.div_ceil(2)
        } else {
            elements
        };
        // The checks count elements (the kernel's indices); the grid covers invocations.
        elementwise_grid(ctx, self.name, &[inputs[0], out], elements)?;
        let (gx, gy, row_width) = crate::gpu::split::grid(ctx, n)?;
        let base = u32::try_from(self.base * words)
            .map_err(|_| Error::shape(self.name, "offset beyond u32"))?;
        launch_whole(
            ctx,
            Kernel::StridedCopy(StridedParams {
                count: n as u32,
                row_width,
                base,
                mode: mode.code(),
                shape: shape8,
                strides: strides8,
            }),
            &[inputs[0], out],
            [gx, gy, 1],
        )
    }
}

/// 32-bit words per element for the copy kernel (8-byte elements are two words: one more,
/// innermost, dimension), or an error naming the dtype.
fn words_of(name: &str, dtype: DType) -> Result<usize> {
    match dtype.size() {
        4 => Ok(1),
        8 => Ok(2),
        _ => Err(Error::Dtype {
            op: format!("{name} on a GPU"),
            expected: "a dtype of 2, 4 or 8 bytes (convert with .to_dtype first)".into(),
            got: dtype.name().into(),
        }),
    }
}

fn check_dim(name: &str, shape: &[usize], dim: usize) -> Result<()> {
    if dim >= shape.len() {
        return Err(Error::shape(
            name,
            format!(
                "dimension {dim} is out of range for shape {shape:?} (rank {})",
                shape.len()
            ),
        ));
    }
    Ok(())
}

/// `x.contiguous()` of a view: its elements copied in row-major order (see
/// [`Tensor::contiguous`], which calls this only when the layout is not dense).
pub(crate) fn materialize(x: &Tensor) -> Result<Tensor> {
    let y = gather(
        "contiguous",
        x,
        x.shape().to_vec(),
        x.strides().to_vec(),
        x.storage_offset(),
    )?;
    Ok(record("contiguous", y, &[x], || {
        Box::new(move |g, _| Ok(vec![Some(g.clone())]))
    }))
}

/// `x` with another layout over its storage, recorded with `backward`.
fn view(
    name: &'static str,
    x: &Tensor,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
    backward: impl FnOnce() -> crate::autograd::BackwardFn,
) -> Tensor {
    record(name, x.view_of(shape, strides, offset), &[x], backward)
}

/// `x.permute(dims)`: dimension `i` of the result is dimension `dims[i]` of `x` (a view).
pub fn permute(x: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let name = "permute";
    let s = x.shape();
    let mut seen = vec![false; s.len()];
    if dims.len() != s.len()
        || dims
            .iter()
            .any(|&d| d >= s.len() || std::mem::replace(&mut seen[d], true))
    {
        return Err(Error::shape(
            name,
            format!(
                "dims {dims:?} are not a permutation of the {} dimensions of {s:?}",
                s.len()
            ),
        ));
    }
    let st = x.strides();
    Ok(view(
        name,
        x,
        dims.iter().map(|&d| s[d]).collect(),
        dims.iter().map(|&d| st[d]).collect(),
        x.storage_offset(),
        || {
            // The inverse permutation carries the gradient back.
            let mut inverse = vec![0; dims.len()];
            for (i, &d) in dims.iter().enumerate() {
                inverse[d] = i;
            }
            Box::new(move |g, _| Ok(vec![Some(permute(g, &inverse)?)]))
        },
    ))
}

/// `x.transpose(d0, d1)` (a view).
pub fn transpose(x: &Tensor, d0: usize, d1: usize) -> Result<Tensor> {
    let s = x.shape();
    check_dim("transpose", s, d0)?;
    check_dim("transpose", s, d1)?;
    let mut dims: Vec<usize> = (0..s.len()).collect();
    dims.swap(d0, d1);
    permute(x, &dims)
}

/// `x.t()`: a matrix transposed (a view); 0-D and 1-D tensors are returned as they are.
pub fn t(x: &Tensor) -> Result<Tensor> {
    match x.shape().len() {
        0 | 1 => Ok(x.clone()),
        2 => transpose(x, 0, 1),
        r => Err(Error::shape(
            "t",
            format!("t() expects a tensor of at most 2 dimensions, got {r} (use transpose)"),
        )),
    }
}

/// `x.narrow(dim, start, len)`: elements `start..start + len` of dimension `dim` (a view).
pub fn narrow(x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
    let name = "narrow";
    let s = x.shape();
    check_dim(name, s, dim)?;
    if start.checked_add(len).is_none_or(|e| e > s[dim]) {
        return Err(Error::shape(
            name,
            format!(
                "{start}..{start}+{len} is outside dimension {dim} of size {} (shape {s:?})",
                s[dim]
            ),
        ));
    }
    let mut out = s.to_vec();
    out[dim] = len;
    // An empty view keeps the offset where it is (it reads nothing).
    let offset = x.storage_offset() + if len > 0 { start * x.strides()[dim] } else { 0 };
    Ok(view(name, x, out, x.strides().to_vec(), offset, || {
        let full = s.to_vec();
        Box::new(move |g, _| Ok(vec![Some(pad(g, dim, start, &full)?)]))
    }))
}

/// `x.chunk(chunks, dim)`: PyTorch's split into pieces of `ceil(size / chunks)` (the last may be
/// smaller, and there may be fewer than `chunks`), each a view.
pub fn chunk(x: &Tensor, chunks: usize, dim: usize) -> Result<Vec<Tensor>> {
    check_dim("chunk", x.shape(), dim)?;
    if chunks == 0 {
        return Err(Error::invalid("chunk: chunks must be at least 1"));
    }
    let size = x.shape()[dim];
    split(x, size.div_ceil(chunks).max(1), dim)
}

/// `x.split(size, dim)`: pieces of `size` along `dim` (the last may be smaller), each a view.
pub fn split(x: &Tensor, size: usize, dim: usize) -> Result<Vec<Tensor>> {
    check_dim("split", x.shape(), dim)?;
    if size == 0 {
        return Err(Error::invalid("split: the piece size must be at least 1"));
    }
    let n = x.shape()[dim];
    (0..n)
        .step_by(size)
        .map(|s| narrow(x, dim, s, size.min(n - s)))
        .collect()
}

/// `x.select(dim, index)` (`x[..., index, ...]`): dimension `dim` removed at `index` (a view).
pub fn select(x: &Tensor, dim: usize, index: usize) -> Result<Tensor> {
    let name = "select";
    let s = x.shape();
    check_dim(name, s, dim)?;
    if index >= s[dim] {
        return Err(Error::shape(
            name,
            format!(
                "index {index} is out of range for dimension {dim} of size {} (shape {s:?})",
                s[dim]
            ),
        ));
    }
    let (mut shape, mut strides) = (s.to_vec(), x.strides().to_vec());
    let offset = x.storage_offset() + index * strides[dim];
    shape.remove(dim);
    strides.remove(dim);
    Ok(view(name, x, shape, strides, offset, || {
        let full = s.to_vec();
        Box::new(move |g, _| Ok(vec![Some(pad(&unsqueeze(g, dim)?, dim, index, &full)?)]))
    }))
}

/// `x.squeeze(dim)`: dimension `dim` removed if its size is 1, else `x` as it is (a view).
pub fn squeeze(x: &Tensor, dim: usize) -> Result<Tensor> {
    check_dim("squeeze", x.shape(), dim)?;
    if x.shape()[dim] != 1 {
        return Ok(x.clone());
    }
    let (mut shape, mut strides) = (x.shape().to_vec(), x.strides().to_vec());
    shape.remove(dim);
    strides.remove(dim);
    Ok(view(
        "squeeze",
        x,
        shape,
        strides,
        x.storage_offset(),
        || Box::new(move |g, _| Ok(vec![Some(unsqueeze(g, dim)?)])),
    ))
}

/// `x.unsqueeze(dim)`: a dimension of size 1 inserted before `dim` (`dim` may be the rank, to
/// append one; a view).
pub fn unsqueeze(x: &Tensor, dim: usize) -> Result<Tensor> {
    let s = x.shape();
    if dim > s.len() {
        return Err(Error::shape(
            "unsqueeze",
            format!(
                "dimension {dim} is out of range for shape {s:?} (at most {})",
                s.len()
            ),
        ));
    }
    let (mut shape, mut strides) = (s.to_vec(), x.strides().to_vec());
    let stride = if dim < s.len() {
        strides[dim] * s[dim]
    } else {
        1
    };
    shape.insert(dim, 1);
    strides.insert(dim, stride.max(1));
    Ok(view(
        "unsqueeze",
        x,
        shape,
        strides,
        x.storage_offset(),
        || Box::new(move |g, _| Ok(vec![Some(squeeze(g, dim)?)])),
    ))
}

/// `torch.flatten(x, start_dim, end_dim)`: dimensions `start_dim..=end_dim` merged into one
/// (negative dimensions count from the end; a scalar becomes `[1]`). A view where the layout
/// allows, as `reshape`.
pub fn flatten(x: &Tensor, start_dim: isize, end_dim: isize) -> Result<Tensor> {
    let rank = x.shape().len();
    if rank == 0 {
        return x.reshape([1]);
    }
    let norm = |d: isize| -> Result<usize> {
        let v = if d < 0 { d + rank as isize } else { d };
        if v < 0 || v >= rank as isize {
            return Err(Error::invalid(format!(
                "flatten: dimension {d} is out of range for a tensor of {rank} dimensions"
            )));
        }
        Ok(v as usize)
    };
    let (s, e) = (norm(start_dim)?, norm(end_dim)?);
    if s > e {
        return Err(Error::invalid(format!(
            "flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim})"
        )));
    }
    let shape = x.shape();
    let mut out: Vec<usize> = shape[..s].to_vec();
    out.push(shape[s..=e].iter().product());
    out.extend_from_slice(&shape[e + 1..]);
    x.reshape(&out)
}

/// `x.expand(shape)`: size-1 (or missing leading) dimensions repeated, as a view whose
/// expanded dimensions have stride 0.
pub fn expand(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let name = "expand";
    let s = x.shape();
    let bad = || {
        Error::shape(
            name,
            format!("shape {s:?} cannot be expanded to {shape:?} (only size-1 dimensions grow)"),
        )
    };
    if shape.len() < s.len() {
        return Err(bad());
    }
    let st = x.strides();
    let off = shape.len() - s.len();
    let mut strides = vec![0; shape.len()];
    for i in 0..s.len() {
        if s[i] == shape[off + i] {
            strides[off + i] = if s[i] == 1 { 0 } else { st[i] };
        } else if s[i] != 1 {
            return Err(bad());
        }
    }
    Ok(view(
        name,
        x,
        shape.to_vec(),
        strides,
        x.storage_offset(),
        || {
            let from = s.to_vec();
            Box::new(move |g, _| Ok(vec![Some(sum_to(g, &from)?)]))
        },
    ))
}

/// `torch.cat(tensors, dim)`: the tensors (one dtype, equal shapes but along `dim`) joined
/// along `dim`. One copy per input into its slice of the output (on a GPU a scatter through
/// strides); the gradient of each input is its slice of the output's gradient (a view).
pub fn cat(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
    let name = "cat";
    let first = tensors
        .first()
        .ok_or_else(|| Error::invalid("cat: no tensors to join"))?;
    let s0 = first.shape();
    check_dim(name, s0, dim)?;
    let mut total = 0;
    for (i, t) in tensors.iter().enumerate() {
        let s = t.shape();
        let fits = s.len() == s0.len()
            && (0..s.len()).all(|d| d == dim || s[d] == s0[d])
            && t.dtype() == first.dtype();
        if !fits {
            return Err(Error::shape(
                name,
                format!(
                    "tensor {i} is {} {s:?}, tensor 0 {} {s0:?}: they must match but along \
                     dimension {dim}",
                    t.dtype().name(),
                    first.dtype().name()
                ),
            ));
        }
        total += s[dim];
    }
    let mut out = s0.to_vec();
    out[dim] = total;
    let mut op = Cat {
        out: out.clone(),
        dim,
        sizes: tensors.iter().map(|t| t.shape()[dim]).collect(),
        dtype: first.dtype(),
    };
    let y = if first.dtype().is_half() && matches!(first.device(), crate::Device::Gpu(_)) {
        // The scatter writes whole words: 16-bit floats are joined as float32 (both casts
        // are exact, so the bits are the CPU's).
        use crate::ops::cast::cast;
        let wide = crate::autograd::no_grad(|| {
            tensors
                .iter()
                .map(|t| cast(t, DType::F32))
                .collect::<Result<Vec<_>>>()
        })?;
        op.dtype = DType::F32;
        let y = run(&op, &wide.iter().collect::<Vec<_>>(), None)?;
        op.dtype = first.dtype();
        cast(&y, first.dtype())?
    } else {
        run(&op, tensors, None)?
    };
    Ok(record(name, y, tensors, || {
        let sizes = op.sizes.clone();
        Box::new(move |g, needs| {
            let mut at = 0;
            let mut grads = Vec::with_capacity(sizes.len());
            for (i, &n) in sizes.iter().enumerate() {
                grads.push(
                    crate::autograd::wants(needs, i)
                        .then(|| narrow(g, dim, at, n))
                        .transpose()?,
                );
                at += n;
            }
            Ok(grads)
        })
    }))
}

/// `torch.stack(tensors, dim)`: the tensors (one shape) joined along a new dimension `dim`.
pub fn stack(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
    let views = tensors
        .iter()
        .map(|t| unsqueeze(t, dim))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Tensor> = views.iter().collect();
    cat(&refs, dim)
}

struct Cat {
    out: Vec<usize>,
    dim: usize,
    sizes: Vec<usize>,
    dtype: DType,
}

impl Op for Cat {
    fn name(&self) -> &'static str {
        "cat"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn out_dtype(&self) -> DType {
        self.dtype
    }
    fn moves_bits(&self) -> bool {
        true
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let es = self.dtype.size();
        let outer: usize = self.out[..self.dim].iter().product();
        let inner: usize = self.out[self.dim + 1..].iter().product::<usize>() * es;
        let row = self.out[self.dim] * inner;
        let y = out.bytes_mut();
        let mut at = 0;
        for (x, &n) in inputs.iter().zip(&self.sizes) {
            let (x, piece) = (x.bytes(), n * inner);
            for o in 0..outer {
                y[o * row + at..o * row + at + piece]
                    .copy_from_slice(&x[o * piece..(o + 1) * piece]);
            }
            at += piece;
        }
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let words = words_of("cat", self.dtype)?;
        let out_strides = crate::ops::contiguous_strides(&self.out);
        let mut launches = Vec::new();
        let mut at = 0;
        for (x, &n) in inputs.iter().zip(&self.sizes) {
            let mut shape = self.out.clone();
            shape[self.dim] = n;
            let mut strides: Vec<usize> = out_strides.iter().map(|s| s * words).collect();
            if words == 2 {
                shape.push(2);
                strides.push(1);
            }
            let count = shape.iter().product::<usize>() as u64;
            if count > 0 {
                let (shape8, strides8) = pad8("cat", &shape, &strides)?;
                let (gx, gy, row_width) = elementwise_grid(ctx, "cat", &[x, out], count)?;
                let base = u32::try_from(at * out_strides[self.dim] * words)
                    .map_err(|_| Error::shape("cat", "an offset beyond u32"))?;
                launches.push(Launch {
                    kernel: Kernel::StridedCopy(StridedParams {
                        count: count as u32,
                        row_width,
                        base,
                        mode: CopyMode::Scatter.code(),
                        shape: shape8,
                        strides: strides8,
                    }),
                    binds: vec![Bind::whole(x), Bind::whole(out)],
                    groups: [gx, gy, 1],
                });
            }
            at += n;
        }
        ctx.record(&launches)
    }
}

struct Pad {
    out: Vec<usize>,
    outer: usize,
    inner: usize,
    start: usize,
    len: usize,
}

/// narrow's gradient: `g` (the slice `start..start + len` of dimension `dim`) placed in zeros
/// of `full` (the input's shape).
pub(crate) fn pad(g: &Tensor, dim: usize, start: usize, full: &[usize]) -> Result<Tensor> {
    let len = g.shape().get(dim).copied().unwrap_or(0);
    let op = Pad {
        out: full.to_vec(),
        outer: full[..dim].iter().product(),
        inner: full[dim + 1..].iter().product(),
        start,
        len,
    };
    run(&op, &[g], None)
}

impl Op for Pad {
    fn name(&self) -> &'static str {
        "narrow backward"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let x = inputs[0].as_f32();
        let (inner, len) = (self.inner, self.len);
        let full = self.out.iter().product::<usize>() / (self.outer * inner).max(1);
        let y = out.as_f32_mut();
        for o in 0..self.outer {
            for j in 0..len {
                let src = (o * len + j) * inner;
                let dst = (o * full + self.start + j) * inner;
                y[dst..dst + inner].copy_from_slice(&x[src..src + inner]);
            }
        }
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let n = self.out.iter().product::<usize>() as u64;
        let full = n as usize / (self.outer * self.inner).max(1);
        let (gx, gy, row_width) = elementwise_grid(ctx, "narrow backward", &[inputs[0], out], n)?;
        launch_whole(
            ctx,
            Kernel::Pad(PadParams {
                count: n as u32,
                row_width,
                inner: self.inner as u32,
                full: full as u32,
                start: self.start as u32,
                len: self.len as u32,
                _pad: [0; 2],
            }),
            &[inputs[0], out],
            [gx, gy, 1],
        )
    }
}
