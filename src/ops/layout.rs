//! Layout ops. Tensors in wgnn are always contiguous, so `reshape` is a view (it shares the
//! storage) while `permute`, `transpose`, `narrow`, `chunk` and `expand` make contiguous copies,
//! all through one strided gather (`strided_copy.wgsl`). Copies move bits: the CPU and GPU
//! results are identical. Any dtype of 4 or 8 bytes works on the GPU; every dtype on the CPU.

use std::sync::Arc;

use crate::autograd::record;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, StridedParams};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::common::{contiguous_strides, elementwise_grid, launch_whole, pad8, MAX_RANK};
use crate::ops::grad::{pad, sum_to};
use crate::ops::op::{run, Op};
use crate::tensor::{HostBytes, Tensor};

/// `y[i] = x[base + Σ coord_d · strides_d]` over `out`.
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
        // 8-byte elements are two words: one more, innermost, dimension.
        let words = match self.dtype.size() {
            4 => 1,
            8 => 2,
            _ => {
                return Err(Error::Dtype {
                    op: format!("{} on a GPU", self.name),
                    expected: "a dtype of 4 or 8 bytes (convert with .to_dtype first)".into(),
                    got: self.dtype.name().into(),
                })
            }
        };
        let mut shape = self.out.clone();
        let mut strides: Vec<usize> = self.strides.iter().map(|s| s * words).collect();
        if words == 2 {
            shape.push(2);
            strides.push(1);
        }
        let (shape8, strides8) = pad8(self.name, &shape, &strides)?;
        let n = shape.iter().product::<usize>() as u64;
        let (gx, gy, row_width) = elementwise_grid(ctx, self.name, &[inputs[0], out], n)?;
        let base = u32::try_from(self.base * words)
            .map_err(|_| Error::shape(self.name, "offset beyond u32"))?;
        launch_whole(
            ctx,
            Kernel::StridedCopy(StridedParams {
                count: n as u32,
                row_width,
                base,
                shape: shape8,
                strides: strides8,
                ..Default::default()
            }),
            &[inputs[0], out],
            [gx, gy, 1],
        )
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

/// `x.permute(dims)`: dimension `i` of the result is dimension `dims[i]` of `x` (a copy).
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
    let st = contiguous_strides(s);
    let y = gather(
        name,
        x,
        dims.iter().map(|&d| s[d]).collect(),
        dims.iter().map(|&d| st[d]).collect(),
        0,
    )?;
    Ok(record(name, y, &[x], || {
        // The inverse permutation carries the gradient back.
        let mut inverse = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate() {
            inverse[d] = i;
        }
        Box::new(move |g, _| Ok(vec![Some(permute(g, &inverse)?)]))
    }))
}

/// `x.transpose(d0, d1)` (a copy).
pub fn transpose(x: &Tensor, d0: usize, d1: usize) -> Result<Tensor> {
    let s = x.shape();
    check_dim("transpose", s, d0)?;
    check_dim("transpose", s, d1)?;
    let mut dims: Vec<usize> = (0..s.len()).collect();
    dims.swap(d0, d1);
    permute(x, &dims)
}

/// `x.narrow(dim, start, len)`: elements `start..start + len` of dimension `dim` (a copy).
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
    let st = contiguous_strides(s);
    let mut out = s.to_vec();
    out[dim] = len;
    let y = gather(name, x, out, st.clone(), start * st[dim])?;
    Ok(record(name, y, &[x], || {
        let full = s.to_vec();
        Box::new(move |g, _| Ok(vec![Some(pad(g, dim, start, &full)?)]))
    }))
}

/// `x.chunk(chunks, dim)`: PyTorch's split into pieces of `ceil(size / chunks)` (the last may be
/// smaller, and there may be fewer than `chunks`), each a copy.
pub fn chunk(x: &Tensor, chunks: usize, dim: usize) -> Result<Vec<Tensor>> {
    check_dim("chunk", x.shape(), dim)?;
    if chunks == 0 {
        return Err(Error::invalid("chunk: chunks must be at least 1"));
    }
    let size = x.shape()[dim];
    let step = size.div_ceil(chunks).max(1);
    (0..size)
        .step_by(step)
        .map(|s| narrow(x, dim, s, step.min(size - s)))
        .collect()
}

/// `x.expand(shape).contiguous()`: size-1 (or missing leading) dimensions repeated (a copy).
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
    let st = contiguous_strides(s);
    let off = shape.len() - s.len();
    let mut strides = vec![0; shape.len()];
    for i in 0..s.len() {
        if s[i] == shape[off + i] {
            strides[off + i] = if s[i] == 1 { 0 } else { st[i] };
        } else if s[i] != 1 {
            return Err(bad());
        }
    }
    let y = gather(name, x, shape.to_vec(), strides, 0)?;
    Ok(record(name, y, &[x], || {
        let from = s.to_vec();
        Box::new(move |g, _| Ok(vec![Some(sum_to(g, &from)?)]))
    }))
}
