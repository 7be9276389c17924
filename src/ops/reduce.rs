//! Reductions over dimensions: `sum`, `mean_dim`, `amax`, `max` (values and indices), `var`,
//! each with PyTorch's `keepdim`. The reduced dimensions are moved last (a view; a copy only
//! when that layout is not dense) and each row is reduced by one workgroup (`row_sum.wgsl`),
//! the CPU adding in the same order; a sum over the leading dimensions of a dense tensor reads
//! its columns in place instead (no copy), in the same order.
//!
//! Numbers: `amax` and `max` are exact (the same bits everywhere; NaN propagates). `sum`,
//! `mean_dim` and `var` add in another order than PyTorch: 64 strided partial sums, then a tree,
//! on both devices (bit-identical between the CPU and a GPU that does not contract, within
//! `n · 2⁻²⁴ · Σ|x|` of the exact sum in any case).

use crate::autograd::{no_grad, record};
use crate::error::{Error, Result};
use crate::ops::grad::{col_sum, equal, mul as mul_same, row_max, row_sum};
use crate::tensor::Tensor;

/// How `x` is reduced over `dims`: the reduced dimensions moved last as `[rows, width]`, and
/// the output's shape with and without the kept size-1 dimensions.
struct Plan {
    rows: usize,
    width: usize,
    /// `x` with the reduced dimensions last, `[rows, width]`.
    moved: Tensor,
    /// The output's shape with size-1 dimensions where reduced.
    keep_shape: Vec<usize>,
    /// The output's shape without them.
    drop_shape: Vec<usize>,
    /// The permutation that moved them (kept dimensions first, in order).
    order: Vec<usize>,
    /// `moved` is `x` itself, dense, stored `[width, rows]` (the reduced dimensions lead):
    /// reduce its columns in place ([`col_sum`]). Only where the caller allows it.
    columns: bool,
}

fn plan(name: &str, x: &Tensor, dims: &[usize]) -> Result<Plan> {
    plan_with(name, x, dims, false)
}

/// [`plan`], with the reduced dimensions left in place where they lead a dense `x` and
/// `columns` allows it.
fn plan_with(name: &str, x: &Tensor, dims: &[usize], columns: bool) -> Result<Plan> {
    let s = x.shape();
    let mut reduced = vec![false; s.len()];
    for &d in dims {
        if d >= s.len() {
            return Err(Error::shape(
                name,
                format!(
                    "dimension {d} is out of range for shape {s:?} (rank {})",
                    s.len()
                ),
            ));
        }
        if std::mem::replace(&mut reduced[d], true) {
            return Err(Error::shape(
                name,
                format!("dimension {d} appears twice in {dims:?}"),
            ));
        }
    }
    // No dimensions: all of them, as PyTorch's `sum(dim=())`.
    if dims.is_empty() {
        reduced.iter_mut().for_each(|r| *r = true);
    }
    let kept: Vec<usize> = (0..s.len()).filter(|&d| !reduced[d]).collect();
    let red: Vec<usize> = (0..s.len()).filter(|&d| reduced[d]).collect();
    let order: Vec<usize> = kept.iter().chain(&red).copied().collect();
    let rows: usize = kept.iter().map(|&d| s[d]).product();
    let width: usize = red.iter().map(|&d| s[d]).product();
    let columns =
        columns && x.is_dense() && !kept.is_empty() && red.iter().enumerate().all(|(i, &d)| i == d);
    let moved = if columns {
        x.clone()
    } else {
        no_grad(|| crate::ops::permute(x, &order)?.reshape([rows, width]))?
    };
    let keep_shape = (0..s.len())
        .map(|d| if reduced[d] { 1 } else { s[d] })
        .collect();
    let drop_shape = kept.iter().map(|&d| s[d]).collect();
    Ok(Plan {
        rows,
        width,
        moved,
        keep_shape,
        drop_shape,
        order,
        columns,
    })
}

impl Plan {
    fn shape(&self, keepdim: bool) -> &[usize] {
        if keepdim {
            &self.keep_shape
        } else {
            &self.drop_shape
        }
    }
}

/// `x.sum(dims, keepdim)` (all dimensions when `dims` is empty).
pub fn sum(x: &Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
    let p = plan_with("sum", x, dims, true)?;
    let y = if p.columns {
        no_grad(|| col_sum(&p.moved, p.width, p.rows))?
    } else {
        row_sum(&p.moved, p.rows, p.width, false)?
    };
    let y = y.reshape(p.shape(keepdim))?;
    Ok(record("sum", y, &[x], || {
        let (keep, full) = (p.keep_shape.clone(), x.shape().to_vec());
        // Every element of a reduced group gets the group's gradient.
        Box::new(move |g, _| Ok(vec![Some(crate::ops::expand(&g.reshape(&keep)?, &full)?)]))
    }))
}

/// `x.mean(dims, keepdim)` (all dimensions when `dims` is empty): the sum times `1 / n`, `n`
/// the number of elements reduced.
pub fn mean_dim(x: &Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
    let p = plan("mean", x, dims)?;
    if p.width == 0 {
        return Err(Error::shape(
            "mean",
            format!(
                "the mean over {dims:?} of {:?} reduces no element",
                x.shape()
            ),
        ));
    }
    crate::ops::scale(&sum(x, dims, keepdim)?, (1.0 / p.width as f64) as f32)
}

/// `x.amax(dims, keepdim)`: the maximum over `dims` (NaN if a group holds one). Its gradient
/// is shared evenly among the elements equal to the maximum, as PyTorch's.
pub fn amax(x: &Tensor, dims: &[usize], keepdim: bool) -> Result<Tensor> {
    let p = plan("amax", x, dims)?;
    if p.width == 0 {
        return Err(Error::shape(
            "amax",
            format!("amax over {dims:?} of {:?} reduces no element", x.shape()),
        ));
    }
    let y = row_max(&p.moved, p.rows, p.width)?.reshape(p.shape(keepdim))?;
    let saved = y.detach();
    Ok(record("amax", y, &[x], || {
        let (xd, keep, full, dims) = (
            x.detach(),
            p.keep_shape.clone(),
            x.shape().to_vec(),
            dims.to_vec(),
        );
        Box::new(move |g, _| {
            let m = crate::ops::expand(&saved.reshape(&keep)?, &full)?.contiguous()?;
            let hit = equal(&xd.contiguous()?, &m)?;
            let count = sum(&hit, &dims, true)?;
            let share = crate::ops::div(&g.reshape(&keep)?, &count)?;
            Ok(vec![Some(mul_same(
                &hit,
                &crate::ops::expand(&share, &full)?.contiguous()?,
            )?)])
        })
    }))
}

/// `torch.max(x, dim, keepdim)`: the maximum along `dim` and its index (int64; the first one
/// among equal maxima). The gradient goes to that index, as PyTorch's.
pub fn max(x: &Tensor, dim: usize, keepdim: bool) -> Result<(Tensor, Tensor)> {
    let p = plan("max", x, &[dim])?;
    if p.width == 0 {
        return Err(Error::shape(
            "max",
            format!("max along {dim} of {:?} reduces no element", x.shape()),
        ));
    }
    let values = row_max(&p.moved, p.rows, p.width)?.reshape(p.shape(keepdim))?;
    let idx = crate::ops::argmax(&p.moved)?.reshape(p.shape(keepdim))?;
    let values = record("max", values, &[x], || {
        let (idx, rows, width, order) = (idx.clone(), p.rows, p.width, p.order.clone());
        let moved_shape: Vec<usize> = order.iter().map(|&d| x.shape()[d]).collect();
        Box::new(move |g, _| {
            // g at the index, zeros elsewhere: one_hot rows scaled by g, moved back.
            let hot = crate::ops::one_hot(&idx.reshape([rows])?, width)?;
            let gs = crate::ops::mul(&hot, &g.reshape([rows, 1])?)?;
            let mut inverse = vec![0; order.len()];
            for (i, &d) in order.iter().enumerate() {
                inverse[d] = i;
            }
            Ok(vec![Some(crate::ops::permute(
                &gs.reshape(&moved_shape)?,
                &inverse,
            )?)])
        })
    });
    Ok((values, idx))
}

/// `x.var(dims, unbiased, keepdim)`: `Σ (x - mean)² / (n - 1)` (`unbiased`, Bessel's correction,
/// PyTorch's default) or `/ n`, over `dims` (all when empty). Written with the ops above, so
/// its gradient is theirs.
pub fn var(x: &Tensor, dims: &[usize], unbiased: bool, keepdim: bool) -> Result<Tensor> {
    let p = plan("var", x, dims)?;
    let n = p.width as f64 - if unbiased { 1.0 } else { 0.0 };
    let all: Vec<usize> = if dims.is_empty() {
        (0..x.shape().len()).collect()
    } else {
        dims.to_vec()
    };
    let d = crate::ops::sub(x, &mean_dim(x, &all, true)?)?;
    let s = sum(&crate::ops::mul(&d, &d)?, &all, keepdim)?;
    // n ≤ 0 gives inf or NaN, as PyTorch's.
    crate::ops::scale(&s, (1.0 / n) as f32)
}
