//! Integer-index ops: `one_hot`, `embedding` (row lookup) and `argmax`. int64 values travel to
//! the GPU as pairs of u32 words. The CPU path refuses an index out of range, as PyTorch does;
//! the GPU path cannot stop mid-kernel, so there an out-of-range index gives a row of zeros
//! (check indices before uploading them when they come from outside).

use std::sync::Arc;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::kernels::{IndexParams, Kernel};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::common::{as_i64, check_dtype, elementwise_grid, launch_whole};
use crate::ops::op::{check_float, run, Op};
use crate::tensor::{HostBytes, Tensor};

enum Kind {
    OneHot { classes: usize },
    Embedding { rows: usize, dim: usize },
    Argmax { width: usize },
}

struct Index {
    name: &'static str,
    kind: Kind,
    out: Vec<usize>,
}

/// `F.one_hot(x, num_classes).float()`: int64 `x` of any shape to float32 `[…, num_classes]`.
pub fn one_hot(x: &Tensor, num_classes: usize) -> Result<Tensor> {
    let name = "one_hot";
    check_dtype(name, x, "x", DType::I64)?;
    if num_classes == 0 {
        return Err(Error::invalid("one_hot: num_classes must be at least 1"));
    }
    let mut out = x.shape().to_vec();
    out.push(num_classes);
    run(
        &Index {
            name,
            kind: Kind::OneHot {
                classes: num_classes,
            },
            out,
        },
        &[x],
        None,
    )
}

/// `F.embedding(indices, weight)`: rows of `weight [num_embeddings, dim]` picked by int64
/// `indices` of any shape, giving `[…, dim]`.
pub fn embedding(indices: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let name = "embedding";
    check_dtype(name, indices, "indices", DType::I64)?;
    check_float(name, weight, "weight")?;
    let (rows, dim) = match weight.shape() {
        [r, d] => (*r, *d),
        s => {
            return Err(Error::shape(
                name,
                format!("weight must be [num_embeddings, embedding_dim], got {s:?}"),
            ))
        }
    };
    let mut out = indices.shape().to_vec();
    out.push(dim);
    let y = run(
        &Index {
            name,
            kind: Kind::Embedding { rows, dim },
            out,
        },
        &[indices, weight],
        None,
    )?;
    Ok(crate::autograd::record(name, y, &[indices, weight], || {
        let idx = indices.detach();
        Box::new(move |g, _| {
            // dweight = one_hot(indices)ᵀ · g (the transpose a view the product reads in
            // place): each row sums the gradients of its picks (the
            // products are exact, the sums in GEMM order). Costs n·rows·dim: fine for the small
            // vocabularies of the tutorials.
            let n = idx.numel();
            let oh = one_hot(&idx.reshape([n])?, rows)?;
            // The products take one dtype: the float32 one-hot meets g widened (exact), as the
            // product computed it before refusing mixed dtypes.
            let g = g.reshape([n, dim])?.to_dtype(oh.dtype())?;
            let dw = crate::ops::matmul(&crate::ops::t(&oh)?, &g)?;
            Ok(vec![None, Some(dw)])
        })
    }))
}

/// `x.argmax(dim=-1)` as int64: the first index of each row's maximum (NaN counts as the
/// maximum, as in PyTorch).
pub fn argmax(x: &Tensor) -> Result<Tensor> {
    let name = "argmax";
    check_float(name, x, "x")?;
    let s = x.shape();
    let width = match s.last() {
        Some(&w) if w > 0 => w,
        _ => {
            return Err(Error::shape(
                name,
                format!("x {s:?} needs a last dimension of at least one element"),
            ))
        }
    };
    run(
        &Index {
            name,
            kind: Kind::Argmax { width },
            out: s[..s.len() - 1].to_vec(),
        },
        &[x],
        None,
    )
}

fn out_of_range(name: &str, v: i64, n: usize) -> Error {
    Error::invalid(format!(
        "{name}: index {v} is out of range for {n} {}",
        if name == "one_hot" { "classes" } else { "rows" }
    ))
}

impl Op for Index {
    fn name(&self) -> &'static str {
        self.name
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn out_dtype(&self) -> DType {
        match self.kind {
            Kind::Argmax { .. } => DType::I64,
            _ => DType::F32,
        }
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        match self.kind {
            Kind::OneHot { classes } => {
                let y = out.as_f32_mut();
                for (i, v) in as_i64(inputs[0].bytes()).into_iter().enumerate() {
                    let c = usize::try_from(v)
                        .ok()
                        .filter(|&c| c < classes)
                        .ok_or_else(|| out_of_range(self.name, v, classes))?;
                    y[i * classes + c] = 1.0;
                }
            }
            Kind::Embedding { rows, dim } => {
                let w = inputs[1].as_f32();
                let y = out.as_f32_mut();
                for (i, v) in as_i64(inputs[0].bytes()).into_iter().enumerate() {
                    let r = usize::try_from(v)
                        .ok()
                        .filter(|&r| r < rows)
                        .ok_or_else(|| out_of_range(self.name, v, rows))?;
                    y[i * dim..(i + 1) * dim].copy_from_slice(&w[r * dim..(r + 1) * dim]);
                }
            }
            Kind::Argmax { width } => {
                let x = inputs[0].as_f32();
                let idx: Vec<i64> = x
                    .chunks_exact(width)
                    .map(|row| {
                        let mut at = 0;
                        for (i, &v) in row.iter().enumerate().skip(1) {
                            let best = row[at];
                            if !best.is_nan() && (v > best || v.is_nan()) {
                                at = i;
                            }
                        }
                        at as i64
                    })
                    .collect();
                out.bytes_mut().copy_from_slice(bytemuck::cast_slice(&idx));
            }
        }
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let mut bufs: Vec<&GpuBuffer> = inputs.to_vec();
        bufs.push(out);
        let (kernel, n): (fn(IndexParams) -> Kernel, u64) = match self.kind {
            Kind::Argmax { .. } => (Kernel::Argmax, self.out.iter().product::<usize>() as u64),
            Kind::OneHot { .. } => (Kernel::OneHot, self.out.iter().product::<usize>() as u64),
            Kind::Embedding { .. } => {
                (Kernel::Embedding, self.out.iter().product::<usize>() as u64)
            }
        };
        let (gx, gy, row_width) = elementwise_grid(ctx, self.name, &bufs, n)?;
        let (a, b) = match self.kind {
            Kind::OneHot { classes } => (classes, 0),
            Kind::Embedding { rows, dim } => (dim, rows),
            Kind::Argmax { width } => (width, 0),
        };
        let to_u32 = |v: usize| {
            u32::try_from(v).map_err(|_| Error::shape(self.name, format!("size {v} beyond u32")))
        };
        let params = IndexParams {
            count: n as u32,
            row_width,
            a: to_u32(a)?,
            b: to_u32(b)?,
        };
        launch_whole(ctx, kernel(params), &bufs, [gx, gy, 1])
    }
}
