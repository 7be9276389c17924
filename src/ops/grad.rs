//! The elementwise and row kernels that gradients, optimizers and several ops share: mul / add /
//! sub / div / equality / relu's gradient / clipping over tensors of one shape, row reductions
//! (sums, sums of squares, maxima: the gradient over broadcast dimensions, squared norms,
//! `sum` and `amax`) and `sum_to`. The gradients of softmax, layer_norm and cross_entropy live
//! beside their forwards (`norm.rs`, `loss.rs`), narrow's (`pad`) beside narrow (`layout.rs`).
//!
//! Numbers: the elementwise ops give the same bits on both devices (division within
//! 2.5 ulp on a GPU); the row sums add in the order of `sum64` on both (64 strided partial sums,
//! then a tree), tested against PyTorch's gradients at 1e-5 × max|grad| (`tests/training.rs`)
//! and against finite differences (`tests/autograd.rs`).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::codes::{BinaryOp, RowSumOp};
use crate::gpu::kernels::{BinaryParams, Kernel, RowOpParams};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::common::{elementwise_grid, launch_rows, launch_whole, sum64, ROW_THREADS};
use crate::ops::op::{check_float, run, Op};
use crate::ops::threads::{par_chunks, par_rows};
use crate::tensor::{HostBytes, Tensor};

#[derive(Clone, Copy, PartialEq)]
enum BinKind {
    Mul,
    ReluBackward,
    Add,
    Sub,
    Div,
    Equal,
    AddRelu,
    /// Scale by `min(max_norm / (sqrt(b[0]) + 1e-6), 1)`.
    Clip(f32),
}

struct Binary {
    name: &'static str,
    kind: BinKind,
    out: Vec<usize>,
}

fn binary(name: &'static str, a: &Tensor, b: &Tensor, kind: BinKind) -> Result<Tensor> {
    check_float(name, a, "a")?;
    check_float(name, b, "b")?;
    let ok = match kind {
        BinKind::Clip(_) => b.numel() == 1,
        _ => a.shape() == b.shape(),
    };
    if !ok {
        return Err(Error::shape(
            name,
            format!("operands {:?} and {:?} do not fit", a.shape(), b.shape()),
        ));
    }
    run(
        &Binary {
            name,
            kind,
            out: a.shape().to_vec(),
        },
        &[a, b],
        None,
    )
}

/// `a + b` for tensors of one shape (gradient accumulation).
pub(crate) fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("add", a, b, BinKind::Add)
}

/// `relu(a + b)` for tensors of one shape in one pass, where no gradient is recorded; where one
/// is, the two ops, which record their backward. The same bits either way.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if crate::autograd::is_grad_enabled() && (a.requires_grad() || b.requires_grad()) {
        return crate::ops::relu(&crate::ops::broadcast_add(a, b)?);
    }
    binary("add_relu", a, b, BinKind::AddRelu)
}

/// `a * b` for tensors of one shape.
pub(crate) fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("mul", a, b, BinKind::Mul)
}

/// `a - b` for tensors of one shape.
pub(crate) fn sub_same(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("sub", a, b, BinKind::Sub)
}

/// `a / b` for tensors of one shape.
pub(crate) fn div_same(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("div", a, b, BinKind::Div)
}

/// relu's gradient: `g` where `x > 0`, else 0 (PyTorch's `threshold_backward`).
pub(crate) fn relu_backward(g: &Tensor, x: &Tensor) -> Result<Tensor> {
    binary("relu backward", g, x, BinKind::ReluBackward)
}

/// `g · min(max_norm / (sqrt(sumsq) + 1e-6), 1)` with `sumsq` a one-element device tensor:
/// `clip_grad_norm_`'s scaling without reading the norm back.
pub(crate) fn clip_scale(g: &Tensor, sumsq: &Tensor, max_norm: f32) -> Result<Tensor> {
    binary("clip_grad_norm_", g, sumsq, BinKind::Clip(max_norm))
}

impl Op for Binary {
    fn name(&self) -> &'static str {
        self.name
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let (a, b) = (inputs[0].as_f32(), inputs[1].as_f32());
        let kind = self.kind;
        let coef = match kind {
            BinKind::Clip(max) => (max / (b[0].sqrt() + 1e-6)).min(1.0),
            _ => 0.0,
        };
        // One loop per kind over zipped slices, so each vectorises.
        par_chunks(out.as_f32_mut(), |start, chunk| {
            let a = &a[start..start + chunk.len()];
            if let BinKind::Clip(_) = kind {
                for (y, &av) in chunk.iter_mut().zip(a) {
                    *y = av * coef;
                }
                return;
            }
            let b = &b[start..start + chunk.len()];
            let pairs = chunk.iter_mut().zip(a.iter().zip(b));
            match kind {
                BinKind::Mul => pairs.for_each(|(y, (&av, &bv))| *y = av * bv),
                BinKind::ReluBackward => {
                    pairs.for_each(|(y, (&av, &bv))| *y = if bv > 0.0 { av } else { 0.0 })
                }
                BinKind::Add => pairs.for_each(|(y, (&av, &bv))| *y = av + bv),
                BinKind::AddRelu => pairs.for_each(|(y, (&av, &bv))| {
                    let v = av + bv;
                    *y = if v < 0.0 { 0.0 } else { v };
                }),
                BinKind::Sub => pairs.for_each(|(y, (&av, &bv))| *y = av - bv),
                BinKind::Div => pairs.for_each(|(y, (&av, &bv))| *y = av / bv),
                BinKind::Equal => pairs.for_each(|(y, (&av, &bv))| *y = (av == bv) as u8 as f32),
                BinKind::Clip(_) => {}
            }
        });
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let n = self.out.iter().product::<usize>() as u64;
        let (gx, gy, row_width) =
            elementwise_grid(ctx, self.name, &[inputs[0], inputs[1], out], n)?;
        let (op, alpha) = match self.kind {
            BinKind::Mul => (BinaryOp::Mul, 0.0),
            BinKind::ReluBackward => (BinaryOp::ReluBackward, 0.0),
            BinKind::Add => (BinaryOp::Add, 0.0),
            BinKind::AddRelu => (BinaryOp::AddRelu, 0.0),
            BinKind::Sub => (BinaryOp::Sub, 0.0),
            BinKind::Div => (BinaryOp::Div, 0.0),
            BinKind::Equal => (BinaryOp::Equal, 0.0),
            BinKind::Clip(m) => (BinaryOp::Clip, m),
        };
        let op = op.code();
        launch_whole(
            ctx,
            Kernel::Binary(BinaryParams {
                count: n as u32,
                row_width,
                op,
                alpha,
            }),
            &[inputs[0], inputs[1], out],
            [gx, gy, 1],
        )
    }
}

/// Which reduction of each row.
#[derive(Clone, Copy, PartialEq)]
enum RowKind {
    Sum,
    SumSquares,
    Max,
}

struct Rows {
    name: &'static str,
    kind: RowKind,
    rows: usize,
    width: usize,
    /// x is stored [width, rows]: reduce its columns (no transposing copy).
    columns: bool,
    out: Vec<usize>,
}

impl Op for Rows {
    fn name(&self) -> &'static str {
        self.name
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let w = self.width;
        let x = inputs[0].as_f32();
        let rows = self.rows;
        // Element i of row r.
        let at = |r: usize, i: usize| {
            if self.columns {
                x[i * rows + r]
            } else {
                x[r * w + i]
            }
        };
        match self.kind {
            RowKind::Sum | RowKind::SumSquares if self.columns => {
                // The columns of a dense [w, rows] in the row kernels' order (per column: 64
                // strided partial sums over its elements, then the tree), computed a whole
                // row of x at a time so the reads are contiguous: the same bits as `sum64`
                // down each column.
                let sq = self.kind == RowKind::SumSquares;
                let mut part = vec![0f32; ROW_THREADS * rows];
                for (t, p) in part.chunks_mut(rows.max(1)).enumerate() {
                    let mut i = t;
                    while i < w {
                        for (a, &v) in p.iter_mut().zip(&x[i * rows..(i + 1) * rows]) {
                            *a += if sq { v * v } else { v };
                        }
                        i += ROW_THREADS;
                    }
                }
                let mut half = ROW_THREADS / 2;
                while half > 0 {
                    let (lo, hi) = part.split_at_mut(half * rows);
                    for (a, &b) in lo.iter_mut().zip(&hi[..half * rows]) {
                        *a += b;
                    }
                    half /= 2;
                }
                out.as_f32_mut().copy_from_slice(&part[..rows]);
            }
            RowKind::Sum | RowKind::SumSquares => {
                let sq = self.kind == RowKind::SumSquares;
                par_rows(out.as_f32_mut(), 1, |r, y| {
                    y[0] = sum64(w, |i| {
                        let v = at(r, i);
                        if sq {
                            v * v
                        } else {
                            v
                        }
                    });
                });
            }
            RowKind::Max => {
                par_rows(out.as_f32_mut(), 1, |r, y| {
                    y[0] = (0..w).map(|i| at(r, i)).fold(f32::NEG_INFINITY, |m, v| {
                        if m.is_nan() || v.is_nan() {
                            f32::NAN
                        } else {
                            m.max(v)
                        }
                    });
                });
            }
        }
        Ok(())
    }
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let op = match self.kind {
            RowKind::SumSquares => RowSumOp::Squares,
            RowKind::Max => RowSumOp::Max,
            RowKind::Sum => RowSumOp::Sum,
        }
        .code()
            | if self.columns {
                RowSumOp::Columns.code()
            } else {
                0
            };
        launch_rows(
            ctx,
            self.name,
            inputs,
            out,
            (self.rows, self.width),
            false,
            |gx, _| {
                Kernel::RowSum(RowOpParams {
                    rows: self.rows as u32,
                    width: self.width as u32,
                    groups_x: gx,
                    op,
                })
            },
        )
    }
}

/// The maximum of each row of `x` viewed as `[rows, width]` (width at least 1; NaN if the row
/// holds one).
pub(crate) fn row_max(x: &Tensor, rows: usize, width: usize) -> Result<Tensor> {
    check_float("amax", x, "x")?;
    if rows.checked_mul(width) != Some(x.numel()) || width == 0 {
        return Err(Error::internal(format!(
            "row_max: [{rows}, {width}] does not view {:?}",
            x.shape()
        )));
    }
    run(
        &Rows {
            name: "amax",
            kind: RowKind::Max,
            rows,
            width,
            columns: false,
            out: vec![rows],
        },
        &[x],
        None,
    )
}

/// 1 where `a == b`, else 0, for tensors of one shape.
pub(crate) fn equal(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("eq", a, b, BinKind::Equal)
}

/// The sum (or, with `square`, the sum of squares) of each row of `x` viewed as `[rows, width]`
/// (zeros when the rows are empty).
pub(crate) fn row_sum(x: &Tensor, rows: usize, width: usize, square: bool) -> Result<Tensor> {
    check_float("row_sum", x, "x")?;
    if rows.checked_mul(width) != Some(x.numel()) {
        return Err(Error::internal(format!(
            "row_sum: [{rows}, {width}] does not view {:?}",
            x.shape()
        )));
    }
    if width == 0 {
        return Tensor::zeros(&[rows], x.dtype(), &x.device());
    }
    let kind = if square {
        RowKind::SumSquares
    } else {
        RowKind::Sum
    };
    if let Some(p) = crate::ops::common::pieces(rows, width) {
        // Each piece's sum (of squares), then the pieces' sums: many workgroups, not one.
        let partial = run(
            &Rows {
                name: "row_sum",
                kind,
                rows: rows * p,
                width: width / p,
                columns: false,
                out: vec![rows * p],
            },
            &[x],
            None,
        )?;
        return run(
            &Rows {
                name: "row_sum",
                kind: RowKind::Sum,
                rows,
                width: p,
                columns: false,
                out: vec![rows],
            },
            &[&partial],
            None,
        );
    }
    run(
        &Rows {
            name: "row_sum",
            kind,
            rows,
            width,
            columns: false,
            out: vec![rows],
        },
        &[x],
        None,
    )
}

/// The sums of the columns of a dense `x` viewed as `[width, rows]` (a sum over its leading
/// dimensions), read in place: the same numbers as [`row_sum`] of its transpose, without the
/// copy a transpose would take.
pub(crate) fn col_sum(x: &Tensor, width: usize, rows: usize) -> Result<Tensor> {
    check_float("row_sum", x, "x")?;
    if rows.checked_mul(width) != Some(x.numel()) || !x.is_dense() {
        return Err(Error::internal(format!(
            "col_sum: a dense [{width}, {rows}] does not view {:?}",
            x.shape()
        )));
    }
    if width == 0 {
        return Tensor::zeros(&[rows], x.dtype(), &x.device());
    }
    run(
        &Rows {
            name: "row_sum",
            kind: RowKind::Sum,
            rows,
            width,
            columns: true,
            out: vec![rows],
        },
        &[x],
        None,
    )
}

/// The sum of the squares of every element, as a one-element tensor (a squared 2-norm).
pub(crate) fn sum_squares(x: &Tensor) -> Result<Tensor> {
    row_sum(&x.detach(), 1, x.numel(), true)
}

/// Sums `g` down to `shape` (which broadcasts to `g`'s shape): the gradient of a broadcast.
/// The summed dimensions are moved last by one copy (none when they already are) and each
/// remaining element is one row sum.
pub(crate) fn sum_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let gs = g.shape();
    if gs == shape {
        return Ok(g.clone());
    }
    let off = gs.len().checked_sub(shape.len()).ok_or_else(|| {
        Error::internal(format!("sum_to: {shape:?} has more dimensions than {gs:?}"))
    })?;
    // A dimension is summed when it is missing from `shape` or has size 1 there.
    let summed: Vec<bool> = (0..gs.len())
        .map(|d| d < off || (shape[d - off] == 1 && gs[d] != 1))
        .collect();
    for d in off..gs.len() {
        if !summed[d] && shape[d - off] != gs[d] {
            return Err(Error::internal(format!(
                "sum_to: {shape:?} does not broadcast to {gs:?}"
            )));
        }
    }
    let kept: Vec<usize> = (0..gs.len()).filter(|&d| !summed[d]).collect();
    let red: Vec<usize> = (0..gs.len()).filter(|&d| summed[d]).collect();
    let width: usize = red.iter().map(|&d| gs[d]).product();
    let rows: usize = kept.iter().map(|&d| gs[d]).product();
    // Summed dimensions all before the kept ones (a bias's gradient): the columns of a dense
    // [width, rows], read in place.
    if g.is_dense() && red.iter().enumerate().all(|(i, &d)| i == d) {
        return col_sum(g, width, rows)?.reshape(shape);
    }
    let order: Vec<usize> = kept.iter().chain(&red).copied().collect();
    let moved = if order.iter().enumerate().all(|(i, &d)| i == d) {
        g.clone()
    } else {
        crate::ops::permute(g, &order)?
    };
    row_sum(&moved, rows, width, false)?.reshape(shape)
}
