//! `matmul` (PyTorch's `torch.matmul`: batched, broadcasting leading dimensions, 1-D operands
//! promoted and squeezed), `linear` (`x · Wᵀ + b`), and the scaled `a · bᵀ` of attention. The GPU
//! kernel is tiled through workgroup memory and reads both operands through strides, so
//! transposes and broadcast batches cost no copy; the CPU path is the `gemm` crate.
//!
//! Numbers: sums over K run in another order than PyTorch's (and the CPU's differs from the
//! GPU's), so results differ from PyTorch by rounding: the tests bound the error by
//! `K · 2⁻²⁴ · Σ|aᵢ·bᵢ|` per element, well inside the model-level bound of 2e-5 × max|y|.

use std::sync::Arc;

use crate::autograd::{record, wants};
use crate::error::{Error, Result};
use crate::gpu::kernels::{Kernel, MatmulDirectParams, MatmulParams};
use crate::gpu::launch::Launch;
use crate::gpu::pool::GpuBuffer;
use crate::gpu::split::{self, Bind};
use crate::gpu::GpuContext;
use crate::ops::add::broadcast_shape;
use crate::ops::grad::sum_to;
use crate::ops::op::{check_float, run, Op};
use crate::tensor::{HostBytes, Tensor};

/// Output block of one workgroup (`matmul.wgsl`): rows × columns.
const TILE_M: u64 = 16;
const TILE_N: u64 = 256;

/// How one operand is read: `X[z1, z2, r, c] = x[base + z1*bs1 + z2*bs2 + r*rs + c*cs]`.
#[derive(Clone, Copy, Debug, Default)]
struct Operand {
    base: usize,
    rs: usize,
    cs: usize,
    bs1: usize,
    bs2: usize,
}

/// An operand's layout as the plan reads it: views are read in place, through their strides.
#[derive(Clone, Copy)]
struct Lay<'a> {
    shape: &'a [usize],
    strides: &'a [usize],
    offset: usize,
}

impl<'a> Lay<'a> {
    fn of(t: &'a Tensor) -> Lay<'a> {
        Lay {
            shape: t.shape(),
            strides: t.strides(),
            offset: t.storage_offset(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Gemm {
    name: &'static str,
    out: Vec<usize>,
    m: usize,
    n: usize,
    k: usize,
    nb1: usize,
    nb2: usize,
    a: Operand,
    b: Operand,
    alpha: f32,
    bias: bool,
    /// ReLU applied to the output (after the bias): the linear layer's epilogue.
    relu: bool,
    /// Where C[z1, z2, r, c] is stored: `z1*bs1 + z2*bs2 + r*rs + c` (dense by default).
    c: OutLayout,
    /// The output batch dimensions each batch level runs over (empty when folded into rows).
    levels: [Vec<usize>; 2],
    /// The output's shape as stored (`out` permuted, for [`matmul_permuted`]).
    stored: Vec<usize>,
}

/// The output's strides per batch level and row (columns are always adjacent).
#[derive(Clone, Copy, Debug, Default)]
struct OutLayout {
    rs: usize,
    bs1: usize,
    bs2: usize,
}

/// A plan that needs the operands' batches made explicit first (a broadcast pattern the
/// kernel's two batch levels cannot express).
enum Planned {
    Ready(Box<Gemm>),
    Expand(Vec<usize>),
}

fn plan(
    name: &'static str,
    la: Lay<'_>,
    lb: Lay<'_>,
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    bias: bool,
) -> Result<Planned> {
    let (a, b) = (la.shape, lb.shape);
    if a.is_empty() || b.is_empty() {
        return Err(Error::shape(
            name,
            format!("both operands need at least one dimension, got a {a:?} and b {b:?}"),
        ));
    }
    // 1-D operands promoted (a row for a, a column for b), with the strides they read at.
    let (am, ast): (Vec<usize>, Vec<usize>) = if a.len() == 1 {
        (vec![1, a[0]], vec![0, la.strides[0]])
    } else {
        (a.to_vec(), la.strides.to_vec())
    };
    let (bm, bst): (Vec<usize>, Vec<usize>) = if b.len() == 1 {
        if trans_b {
            (vec![1, b[0]], vec![0, lb.strides[0]])
        } else {
            (vec![b[0], 1], vec![lb.strides[0], 0])
        }
    } else {
        (b.to_vec(), lb.strides.to_vec())
    };
    let (m, ka) = if trans_a {
        (am[am.len() - 1], am[am.len() - 2])
    } else {
        (am[am.len() - 2], am[am.len() - 1])
    };
    let (kb, n) = if trans_b {
        (bm[bm.len() - 1], bm[bm.len() - 2])
    } else {
        (bm[bm.len() - 2], bm[bm.len() - 1])
    };
    if ka != kb {
        let which = if trans_b { "last" } else { "second-to-last" };
        return Err(Error::shape(
            name,
            format!(
                "a {a:?} and b {b:?} cannot be multiplied: a's last dimension ({ka}) must equal \
                 b's {which} dimension ({kb})"
            ),
        ));
    }
    let k = ka;
    let (ba, bb) = (&am[..am.len() - 2], &bm[..bm.len() - 2]);
    let out_batch = broadcast_shape(ba, bb).map_err(|_| {
        Error::shape(
            name,
            format!(
                "the batch dimensions of a {a:?} and b {b:?} do not broadcast ({ba:?} vs {bb:?})"
            ),
        )
    })?;
    let mut out: Vec<usize> = out_batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    // Row and column strides of the matrices A[m, k] and B[k, n] the kernel reads.
    let (ra, rb) = (am.len(), bm.len());
    let mut ga = Operand {
        base: la.offset,
        rs: if trans_a { ast[ra - 1] } else { ast[ra - 2] },
        cs: if trans_a { ast[ra - 2] } else { ast[ra - 1] },
        ..Default::default()
    };
    let gb = Operand {
        base: lb.offset,
        rs: if trans_b { bst[rb - 1] } else { bst[rb - 2] },
        cs: if trans_b { bst[rb - 2] } else { bst[rb - 1] },
        ..Default::default()
    };
    let numel = |s: &[usize]| s.iter().product::<usize>();
    let (sa_mat, sb_mat) = (&ast[..ra - 2], &bst[..rb - 2]);
    // b without a batch and a's batch the output's, a's batch dimensions running on from its
    // rows: a's rows are one [batch·M, K] matrix.
    let folds = {
        let mut want = ga.rs * m;
        let mut ok = !trans_a && numel(bb) == 1 && ba == out_batch.as_slice();
        ok &= m > 1 || numel(ba) == 1;
        for i in (0..ba.len()).rev() {
            if ba[i] != 1 {
                ok &= sa_mat[i] == want;
                want *= ba[i];
            }
        }
        ok
    };
    if folds {
        let rows = m * numel(ba);
        return Ok(Planned::Ready(Box::new(Gemm {
            name,
            stored: out.clone(),
            out,
            m: rows,
            n,
            k,
            nb1: 1,
            nb2: 1,
            a: ga,
            b: gb,
            alpha,
            bias,
            relu: false,
            c: OutLayout {
                rs: n,
                bs1: rows * n,
                bs2: rows * n,
            },
            levels: [vec![], vec![]],
        })));
    }
    // Per output batch dimension: the operand's stride, 0 where it is broadcast.
    let strides = |batch: &[usize], st: &[usize]| -> Vec<usize> {
        let off = out_batch.len() - batch.len();
        let mut out = vec![0; out_batch.len()];
        for i in 0..batch.len() {
            if batch[i] != 1 {
                out[off + i] = st[i];
            }
        }
        out
    };
    let sa = strides(ba, sa_mat);
    let sb = strides(bb, sb_mat);
    let mut groups: Vec<(usize, usize, usize)> = Vec::new();
    let mut dims: Vec<Vec<usize>> = Vec::new();
    for i in 0..out_batch.len() {
        let d = (out_batch[i], sa[i], sb[i]);
        if d.0 == 1 {
            continue;
        }
        match groups.last_mut() {
            Some(g) if g.1 == d.1 * d.0 && g.2 == d.2 * d.0 => {
                *g = (g.0 * d.0, d.1, d.2);
                dims.last_mut().into_iter().for_each(|v| v.push(i));
            }
            _ => {
                groups.push(d);
                dims.push(vec![i]);
            }
        }
    }
    let (g1, g2) = match groups.as_slice() {
        [] => ((1, 0, 0), (1, 0, 0)),
        [g] => ((1, 0, 0), *g),
        [g1, g2] => (*g1, *g2),
        _ => return Ok(Planned::Expand(out_batch)),
    };
    let levels = match dims.len() {
        0 => [vec![], vec![]],
        1 => [vec![], dims.remove(0)],
        _ => {
            let inner = dims.remove(1);
            [dims.remove(0), inner]
        }
    };
    ga.bs1 = g1.1;
    ga.bs2 = g2.1;
    let mut gb = gb;
    gb.bs1 = g1.2;
    gb.bs2 = g2.2;
    Ok(Planned::Ready(Box::new(Gemm {
        name,
        stored: out.clone(),
        out,
        m,
        n,
        k,
        nb1: g1.0,
        nb2: g2.0,
        a: ga,
        b: gb,
        alpha,
        bias,
        relu: false,
        c: OutLayout {
            rs: n,
            bs1: g2.0 * m * n,
            bs2: m * n,
        },
        levels,
    })))
}

/// Runs a plan, expanding the operands' batches first when the plan asks for it.
fn gemm(
    name: &'static str,
    a: &Tensor,
    b: &Tensor,
    trans: (bool, bool),
    alpha: f32,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    gemm_stored(name, a, b, trans, alpha, bias, (None, false))
}

/// [`gemm`], the output stored in the order `perm` of its dimensions when given: the result
/// is `permute(a·b, perm)`, dense.
fn gemm_stored(
    name: &'static str,
    a: &Tensor,
    b: &Tensor,
    (trans_a, trans_b): (bool, bool),
    alpha: f32,
    bias: Option<&Tensor>,
    (perm, relu): (Option<&[usize]>, bool),
) -> Result<Tensor> {
    check_float(name, a, "a")?;
    check_float(name, b, "b")?;
    crate::ops::op::check_same_dtype(name, &[(a, "a"), (b, "b")])?;
    if let Some(t) = bias {
        check_float(name, t, "bias")?;
        crate::ops::op::check_same_dtype(name, &[(a, "a"), (t, "bias")])?;
    }
    match plan(
        name,
        Lay::of(a),
        Lay::of(b),
        trans_a,
        trans_b,
        alpha,
        bias.is_some(),
    )? {
        Planned::Ready(mut g) => {
            g.relu = relu;
            // The operands are read in place through their layouts; the bias dense.
            let bias = bias.map(Tensor::contiguous).transpose()?;
            let mut inputs = vec![a, b];
            inputs.extend(bias.as_ref());
            match perm {
                None => run(&*g, &inputs, None),
                Some(p) if g.permute_output(p) => run(&*g, &inputs, None),
                // Not addressable by the batch levels: a dense product, permuted and copied.
                Some(p) => crate::ops::permute(&run(&*g, &inputs, None)?, p)?.contiguous(),
            }
        }
        Planned::Expand(batch) => {
            // Rare broadcast patterns: make both batches explicit (dense copies), then one
            // batch level fits.
            let full = |t: &Tensor| -> Result<Tensor> {
                let s = t.shape();
                let mut shape = batch.clone();
                shape.extend_from_slice(&s[s.len() - 2..]);
                crate::ops::expand(t, &shape)?.contiguous()
            };
            gemm_stored(
                name,
                &full(a)?,
                &full(b)?,
                (trans_a, trans_b),
                alpha,
                bias,
                (perm, relu),
            )
        }
    }
}

/// `torch.matmul(a, b)` for float32, float16 and bfloat16 tensors: `[…, M, K] · […, K, N] → […, M, N]`, leading
/// (batch) dimensions broadcast; a 1-D `a` is a row `[1, K]` and a 1-D `b` a column `[K, 1]`,
/// removed from the result again.
///
/// ```
/// use wgnn::{ops, Tensor};
/// let a = Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.], &[2, 3])?;
/// let b = Tensor::from_slice(&[1f32, 0., 0., 1., 1., 1.], &[3, 2])?;
/// let c = ops::matmul(&a, &b)?;
/// assert_eq!(c.shape(), [2, 2]);
/// assert_eq!(c.to_vec::<f32>()?, [4., 5., 10., 11.]);
/// # Ok::<(), wgnn::Error>(())
/// ```
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let y = gemm("matmul", a, b, (false, false), 1.0, None)?;
    Ok(record("matmul", y, &[a, b], || {
        let (a, b) = (a.detach(), b.detach());
        Box::new(move |g, needs| {
            // A 1-D operand is a row [1, K] (a) or a column [K, 1] (b) whose extra dimension
            // the output dropped: differentiate the 2-D product, with g given that dimension
            // back, and reshape the gradients to the operands' shapes (reshapes are views).
            let (a2, b2) = (as_matrix(&a, true)?, as_matrix(&b, false)?);
            let mut gshape = g.shape().to_vec();
            if a.shape().len() == 1 {
                gshape.insert(gshape.len() - usize::from(b.shape().len() > 1), 1);
            }
            if b.shape().len() == 1 {
                gshape.push(1);
            }
            let g2 = g.reshape(&gshape)?;
            // y = a·b: da = g·bᵀ, db = aᵀ·g, each summed over broadcast batches.
            Ok(vec![
                wants(needs, 0)
                    .then(|| {
                        sum_to(
                            &gemm("matmul backward", &g2, &b2, (false, true), 1.0, None)?,
                            a2.shape(),
                        )?
                        .reshape(a.shape())
                    })
                    .transpose()?,
                wants(needs, 1)
                    .then(|| {
                        sum_to(
                            &gemm("matmul backward", &a2, &g2, (true, false), 1.0, None)?,
                            b2.shape(),
                        )?
                        .reshape(b.shape())
                    })
                    .transpose()?,
            ])
        })
    }))
}

/// `matmul(a, b).permute(perm)` as a dense tensor, written in that order by the product itself
/// instead of copied afterwards: attention's `(attention · v).permute(0, 2, 1, 3)`, which
/// merges the heads back with a free `reshape`. `a` and `b` have at least two dimensions and
/// `perm` keeps the last dimension last; the same bits as `matmul` followed by
/// `permute(…).contiguous()`.
pub fn matmul_permuted(a: &Tensor, b: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let name = "matmul_permuted";
    if a.shape().len() < 2 || b.shape().len() < 2 {
        return Err(Error::shape(
            name,
            format!(
                "both operands need two dimensions, got a {:?} and b {:?}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let rank = a.shape().len().max(b.shape().len());
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm.last() != Some(&(rank - 1))
        || perm
            .iter()
            .any(|&d| d >= rank || std::mem::replace(&mut seen[d], true))
    {
        return Err(Error::shape(
            name,
            format!(
                "perm {perm:?} must be a permutation of the {rank} output dimensions that keeps \
                 the last one last"
            ),
        ));
    }
    let y = gemm_stored(name, a, b, (false, false), 1.0, None, (Some(perm), false))?;
    Ok(record(name, y, &[a, b], || {
        let (a, b) = (a.detach(), b.detach());
        let mut inverse = vec![0; perm.len()];
        for (i, &d) in perm.iter().enumerate() {
            inverse[d] = i;
        }
        Box::new(move |g, needs| {
            // The gradient of the product, read back through the inverse permutation (a view).
            let g = crate::ops::permute(g, &inverse)?;
            Ok(vec![
                wants(needs, 0)
                    .then(|| sum_to(&gemm(name, &g, &b, (false, true), 1.0, None)?, a.shape()))
                    .transpose()?,
                wants(needs, 1)
                    .then(|| sum_to(&gemm(name, &a, &g, (true, false), 1.0, None)?, b.shape()))
                    .transpose()?,
            ])
        })
    }))
}

/// A 1-D matmul operand as the matrix `torch.matmul` reads it: a row `[1, K]` for `a`, a column
/// `[K, 1]` for `b` (a view); other operands as they are.
fn as_matrix(t: &Tensor, row: bool) -> Result<Tensor> {
    match t.shape() {
        [k] if row => t.reshape([1, *k]),
        [k] => t.reshape([*k, 1]),
        _ => Ok(t.clone()),
    }
}

/// `alpha · a · bᵀ` over the last two dimensions (`[…, M, K] · […, N, K]ᵀ`): attention's
/// `q · kᵀ / √d`. [`matmul`] of a transposed view reads the transpose in place just as well;
/// this entry point stays for the scale, applied in the same kernel (one pass less than
/// `matmul` then `scale`).
pub fn matmul_nt(a: &Tensor, b: &Tensor, alpha: f32) -> Result<Tensor> {
    if a.shape().len() < 2 || b.shape().len() < 2 {
        return Err(Error::shape(
            "matmul_nt",
            format!(
                "both operands need two dimensions, got a {:?} and b {:?}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let y = gemm("matmul_nt", a, b, (false, true), alpha, None)?;
    Ok(record("matmul_nt", y, &[a, b], || {
        let (a, b) = (a.detach(), b.detach());
        Box::new(move |g, needs| {
            // y = α·a·bᵀ: da = α·g·b, db = α·gᵀ·a, each summed over broadcast batches.
            Ok(vec![
                wants(needs, 0)
                    .then(|| {
                        sum_to(
                            &gemm("matmul_nt backward", g, &b, (false, false), alpha, None)?,
                            a.shape(),
                        )
                    })
                    .transpose()?,
                wants(needs, 1)
                    .then(|| {
                        sum_to(
                            &gemm("matmul_nt backward", g, &a, (true, false), alpha, None)?,
                            b.shape(),
                        )
                    })
                    .transpose()?,
            ])
        })
    }))
}

/// `F.linear(x, weight, bias)`: `x · weightᵀ + bias` for `x: […, in]`, `weight: [out, in]`,
/// `bias: [out]`, any number of leading dimensions.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (out_f, in_f) = check_linear("linear", x, weight, bias)?;
    linear_checked(x, weight, bias, (out_f, in_f))
}

/// `F.relu(F.linear(x, weight, bias))` with the bias and the ReLU applied as the product's
/// epilogue (in the GPU kernel's store; on the CPU in one pass over the GEMM's output), where
/// no gradient is recorded; where one is, the two ops, which record their backward. The same
/// bits either way.
pub fn linear_relu(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (out_f, in_f) = check_linear("linear_relu", x, weight, bias)?;
    let records = crate::autograd::is_grad_enabled()
        && (x.requires_grad() || weight.requires_grad() || bias.is_some_and(|b| b.requires_grad()));
    if records {
        return crate::ops::relu(&linear_checked(x, weight, bias, (out_f, in_f))?);
    }
    gemm_stored(
        "linear_relu",
        x,
        weight,
        (false, true),
        1.0,
        bias,
        (None, true),
    )
}

/// `linear`'s shape checks: (out_features, in_features).
fn check_linear(
    name: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<(usize, usize)> {
    let mut operands = vec![(x, "input"), (weight, "weight")];
    operands.extend(bias.map(|b| (b, "bias")));
    crate::ops::op::check_same_dtype(name, &operands)?;
    let (out_f, in_f) = match weight.shape() {
        [o, i] => (*o, *i),
        s => {
            return Err(Error::shape(
                name,
                format!("weight must be [out_features, in_features], got {s:?}"),
            ))
        }
    };
    if x.shape().last() != Some(&in_f) {
        return Err(Error::shape(
            name,
            format!(
                "x {:?} must end in in_features = {in_f} (weight {:?})",
                x.shape(),
                weight.shape()
            ),
        ));
    }
    if let Some(b) = bias {
        if b.shape() != [out_f] {
            return Err(Error::shape(
                name,
                format!(
                    "bias must be [{out_f}] (weight {:?}), got {:?}",
                    weight.shape(),
                    b.shape()
                ),
            ));
        }
    }
    Ok((out_f, in_f))
}

/// [`linear`] after its checks.
fn linear_checked(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    (out_f, in_f): (usize, usize),
) -> Result<Tensor> {
    let name = "linear";
    let y = gemm(name, x, weight, (false, true), 1.0, bias)?;
    let inputs: Vec<&Tensor> = [x, weight].into_iter().chain(bias).collect();
    Ok(record(name, y, &inputs, || {
        let (x, w) = (x.detach(), weight.detach());
        Box::new(move |g, needs| {
            // y = x·Wᵀ + b: dx = g·W; dW = gᵀ·x over all rows; db = g summed over rows.
            let lead = &x.shape()[..x.shape().len() - 1];
            let rows: usize = lead.iter().product();
            let g2 = g.reshape([rows, out_f])?;
            let mut grads = vec![
                wants(needs, 0)
                    .then(|| gemm("linear backward", g, &w, (false, false), 1.0, None))
                    .transpose()?,
                wants(needs, 1)
                    .then(|| {
                        let x2 = x.reshape([rows, in_f])?;
                        gemm("linear backward", &g2, &x2, (true, false), 1.0, None)
                    })
                    .transpose()?,
            ];
            if needs.len() > 2 {
                grads.push(wants(needs, 2).then(|| sum_to(&g2, &[out_f])).transpose()?);
            }
            Ok(grads)
        })
    }))
}

impl Gemm {
    /// Stores the output in the order `perm` of its dimensions (the last one kept last), so
    /// that `permute(y, perm)` is dense. False when the plan's batch levels cannot address
    /// that order (the caller then permutes a dense result).
    fn permute_output(&mut self, perm: &[usize]) -> bool {
        let r = self.out.len();
        if r < 2 || perm.len() != r || perm[r - 1] != r - 1 || self.bias {
            return false;
        }
        if self.levels.iter().all(|l| l.is_empty())
            && self.out[..r - 2].iter().product::<usize>() > 1
        {
            return false; // batch folded into rows
        }
        let stored: Vec<usize> = perm.iter().map(|&d| self.out[d]).collect();
        let st = crate::ops::contiguous_strides(&stored);
        let mut logical = vec![0; r];
        for (i, &d) in perm.iter().enumerate() {
            logical[d] = st[i];
        }
        // Within a level, consecutive dimensions must chain as the operands' do.
        let chains = self.levels.iter().all(|l| {
            l.windows(2)
                .all(|w| logical[w[0]] == logical[w[1]] * self.out[w[1]])
        });
        if !chains {
            return false;
        }
        let inner = |l: &[usize]| l.last().map_or(0, |&d| logical[d]);
        self.c = OutLayout {
            rs: logical[r - 2],
            bs1: inner(&self.levels[0]),
            bs2: inner(&self.levels[1]),
        };
        self.stored = stored;
        true
    }

    /// Element offset of batch `z`'s output matrix.
    fn c_offset(&self, z: usize) -> usize {
        let (z1, z2) = (z / self.nb2, z % self.nb2);
        z1 * self.c.bs1 + z2 * self.c.bs2
    }

    pub(crate) fn m(&self) -> usize {
        self.m
    }
    pub(crate) fn n(&self) -> usize {
        self.n
    }
    pub(crate) fn k(&self) -> usize {
        self.k
    }
    fn batch(&self) -> usize {
        self.nb1 * self.nb2
    }
    /// Element offsets of batch `z` in a and b (their bases included).
    fn offsets(&self, z: usize) -> (usize, usize) {
        let (z1, z2) = (z / self.nb2, z % self.nb2);
        (
            self.a.base + z1 * self.a.bs1 + z2 * self.a.bs2,
            self.b.base + z1 * self.b.bs1 + z2 * self.b.bs2,
        )
    }
    /// Highest element index an operand is read at, plus one.
    fn extent(&self, o: &Operand, rows: usize, cols: usize) -> usize {
        let last = |n: usize, s: usize| n.saturating_sub(1) * s;
        o.base
            + last(self.nb1, o.bs1)
            + last(self.nb2, o.bs2)
            + last(rows, o.rs)
            + last(cols, o.cs)
            + 1
    }
}

impl Op for Gemm {
    fn name(&self) -> &'static str {
        self.name
    }
    fn reads_layout(&self) -> bool {
        true
    }
    fn out_shape(&self) -> &[usize] {
        &self.stored
    }
    fn flops(&self) -> u64 {
        2 * (self.m * self.n * self.k * self.batch()) as u64
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let (a, b) = (inputs[0].as_f32(), inputs[1].as_f32());
        let (m, n, k) = (self.m, self.n, self.k);
        let c = out.as_f32_mut();
        if k > 0 && m > 0 && n > 0 && self.batch() > 0 {
            // The bounds the raw-pointer GEMM relies on, checked once.
            let c_end = self.c_offset(self.batch() - 1) + (m - 1) * self.c.rs + n;
            if self.extent(&self.a, m, k) > a.len()
                || self.extent(&self.b, k, n) > b.len()
                || c_end > c.len()
            {
                return Err(Error::internal(format!(
                    "{}: plan exceeds its inputs",
                    self.name
                )));
            }
            let threads = crate::ops::threads::cores();
            let par = if m * n * k >= 1 << 18 && threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            for z in 0..self.batch() {
                let (ao, bo) = self.offsets(z);
                // SAFETY: `extent` bounds every index the GEMM reads below `a.len()` and
                // `b.len()` for every batch, and `c_end` every index it writes below
                // `c.len()` (row stride `c.rs`, column stride 1); the batches' outputs are
                // disjoint (a permutation of a dense layout).
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr().add(self.c_offset(z)),
                        1,
                        self.c.rs as isize,
                        false,
                        a.as_ptr().add(ao),
                        self.a.cs as isize,
                        self.a.rs as isize,
                        b.as_ptr().add(bo),
                        self.b.cs as isize,
                        self.b.rs as isize,
                        0.0,
                        self.alpha,
                        false,
                        false,
                        false,
                        par,
                    );
                }
            }
        }
        // The epilogue, one pass over the output while it is in cache.
        match (self.bias, self.relu) {
            (true, relu) => {
                let bias = inputs[2].as_f32();
                for row in c.chunks_mut(n.max(1)) {
                    for (v, b) in row.iter_mut().zip(bias) {
                        *v += b;
                        if relu && *v < 0.0 {
                            *v = 0.0;
                        }
                    }
                }
            }
            (false, true) => c.iter_mut().filter(|v| **v < 0.0).for_each(|v| *v = 0.0),
            (false, false) => {}
        }
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        for (buf, what) in inputs.iter().zip(["a", "b", "bias"]) {
            split::check_whole(ctx, buf, &format!("operand {what} of {}", self.name))?;
        }
        split::check_whole(ctx, out, &format!("the output of {}", self.name))?;
        let (m, n, batch) = (self.m as u64, self.n as u64, self.batch() as u64);
        let biggest = (batch * m * n)
            .max(self.extent(&self.a, self.m, self.k) as u64)
            .max(self.extent(&self.b, self.k, self.n) as u64);
        split::check_u32_index(
            ctx,
            biggest,
            &format!("{} of {biggest} elements", self.name),
        )?;
        let max = split::max_groups(ctx);
        let bias = inputs.get(2).copied().unwrap_or(inputs[0]);
        let binds = |swap: bool| {
            let (x, y) = if swap {
                (inputs[1], inputs[0])
            } else {
                (inputs[0], inputs[1])
            };
            vec![
                Bind::whole(x),
                Bind::whole(y),
                Bind::whole(bias),
                Bind::whole(out),
            ]
        };
        if let Some(chunks) = crate::gpu::tuning::split_k(ctx, self) {
            return self.split_k(ctx, inputs, out, chunks, max);
        }
        if let Some((map, kernel)) = crate::gpu::tuning::matmul_kernel(ctx, self) {
            let launches = self.direct_launches(ctx, &map, kernel, max, binds)?;
            return ctx.record(&launches);
        }
        let (gx, gy) = (n.div_ceil(TILE_N), m.div_ceil(TILE_M));
        if gx > max || gy > max {
            return Err(Error::Limit {
                what: format!("{} with an output of {m} × {n}", self.name),
                requested: (gy * TILE_M).max(gx * TILE_N),
                limit_name: "max_compute_workgroups_per_dimension × 16 rows (× 256 columns)",
                limit: max * TILE_M,
                adapter: ctx.describe(),
            });
        }
        let u = |v: usize| v as u32;
        let launches: Vec<Launch> = split::chunks(batch, max)
            .map(|(z0, nz)| Launch {
                kernel: Kernel::Matmul(MatmulParams {
                    m: u(self.m),
                    n: u(self.n),
                    k: u(self.k),
                    nb2: u(self.nb2),
                    a_rs: u(self.a.rs),
                    a_cs: u(self.a.cs),
                    a_bs1: u(self.a.bs1),
                    a_bs2: u(self.a.bs2),
                    b_rs: u(self.b.rs),
                    b_cs: u(self.b.cs),
                    b_bs1: u(self.b.bs1),
                    b_bs2: u(self.b.bs2),
                    a_base: u(self.a.base),
                    b_base: u(self.b.base),
                    c_rs: u(self.c.rs),
                    c_bs1: u(self.c.bs1),
                    c_bs2: u(self.c.bs2),
                    z0: z0 as u32,
                    has_bias: self.bias as u32 | (self.relu as u32) << 1,
                    alpha: self.alpha,
                }),
                binds: binds(false),
                groups: [gx as u32, gy as u32, nz as u32],
            })
            .collect();
        ctx.record(&launches)
    }
}

/// One way to map a product onto the direct kernels: C' = X·Y with X's rows the `rows` of C'
/// and Y's columns its `cols` (C = A·B as it is, or Cᵀ = Bᵀ·Aᵀ when `transposed`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirectMap {
    pub transposed: bool,
    pub rows: usize,
    pub cols: usize,
    /// X[i, k] strides: (rs, cs, bs1, bs2, base).
    x: (usize, usize, usize, usize, usize),
    /// Y[k, j] strides: (rs, cs, bs1, bs2, base).
    y: (usize, usize, usize, usize, usize),
    c: (usize, usize),
    bias: u32,
    pub k: usize,
}

impl DirectMap {
    /// Whether X has unit stride along `x_unit` (0: its rows, 1: K) and Y along `y_unit` (0:
    /// K, 1: its columns), and every other stride, base and size in `sizes` that a vec4 array
    /// indexes divides by 4.
    fn reads_vec4(&self, x_unit: usize, y_unit: usize, sizes: [usize; 2]) -> bool {
        let (xs, ys) = ([self.x.0, self.x.1], [self.y.0, self.y.1]);
        xs[x_unit] == 1
            && ys[y_unit] == 1
            && [xs[1 - x_unit], ys[1 - y_unit], sizes[0], sizes[1]]
                .iter()
                .chain(&[self.x.2, self.x.3, self.x.4, self.y.2, self.y.3, self.y.4])
                .all(|v| v % 4 == 0)
    }
    /// Both operands contiguous along K in whole vec4s (`matmul_k4.wgsl`).
    pub fn k4(&self) -> bool {
        self.reads_vec4(1, 0, [self.k, self.k])
    }
    /// X contiguous along its rows and Y along its columns, in whole vec4s
    /// (`matmul_t4.wgsl`).
    pub fn t4(&self) -> bool {
        self.reads_vec4(0, 1, [self.rows, self.cols])
    }
    /// X contiguous along K and Y along its columns, in whole vec4s (`matmul_n4.wgsl`).
    pub fn n4(&self) -> bool {
        self.reads_vec4(1, 1, [self.k, self.cols])
    }
}

impl Gemm {
    /// The product mapped onto the direct kernels' X and Y, as it is or transposed.
    pub(crate) fn direct_map(&self, transposed: bool) -> DirectMap {
        let (a, b, c) = (&self.a, &self.b, &self.c);
        if transposed {
            DirectMap {
                transposed,
                rows: self.n,
                cols: self.m,
                x: (b.cs, b.rs, b.bs1, b.bs2, b.base),
                y: (a.cs, a.rs, a.bs1, a.bs2, a.base),
                c: (1, c.rs),
                bias: 2,
                k: self.k,
            }
        } else {
            DirectMap {
                transposed,
                rows: self.m,
                cols: self.n,
                x: (a.rs, a.cs, a.bs1, a.bs2, a.base),
                y: (b.rs, b.cs, b.bs1, b.bs2, b.base),
                c: (c.rs, 1),
                bias: 1,
                k: self.k,
            }
        }
    }

    /// The launches of one of the direct kernels (`kernel`: `MatmulDirect`, `MatmulK4` or
    /// `MatmulN4`, the last two only where the map allows them) on map `d`.
    fn direct_launches<'a>(
        &self,
        ctx: &GpuContext,
        d: &DirectMap,
        kernel: DirectKernel,
        max: u64,
        binds: impl Fn(bool) -> Vec<Bind<'a>>,
    ) -> Result<Vec<Launch<'a>>> {
        let u = |v: usize| v as u32;
        // Offsets counted in vec4 where an operand is read as vec4.
        let (qx, qy) = match kernel {
            DirectKernel::Scalar => (1, 1),
            DirectKernel::K4 | DirectKernel::N4 | DirectKernel::N4Rows | DirectKernel::T4(_) => {
                (4, 4)
            }
        };
        let (x, y) = (d.x, d.y);
        let (x, y) = match kernel {
            DirectKernel::Scalar => (x, y),
            // K counted in vec4: X's k stride is 1 vec4; Y's k stride (K4) is 1 vec4.
            DirectKernel::K4 => (
                (x.0 / qx, 1, x.2 / qx, x.3 / qx, x.4 / qx),
                (1, y.1 / qy, y.2 / qy, y.3 / qy, y.4 / qy),
            ),
            DirectKernel::N4 | DirectKernel::N4Rows => (
                (x.0 / qx, 1, x.2 / qx, x.3 / qx, x.4 / qx),
                (y.0 / qy, 1, y.2 / qy, y.3 / qy, y.4 / qy),
            ),
            // K counted whole: X's k stride and Y's k stride in vec4.
            DirectKernel::T4(_) => (
                (1, x.1 / qx, x.2 / qx, x.3 / qx, x.4 / qx),
                (y.0 / qy, 1, y.2 / qy, y.3 / qy, y.4 / qy),
            ),
        };
        let k = match kernel {
            DirectKernel::Scalar | DirectKernel::T4(_) => d.k,
            _ => d.k / 4,
        };
        let (tile_i, tile_j) = kernel.tile();
        let (gx, gy) = (
            (d.cols as u64).div_ceil(tile_j),
            (d.rows as u64).div_ceil(tile_i),
        );
        if gx > max || gy > max {
            return Err(Error::Limit {
                what: format!("{} with an output of {} × {}", self.name, self.m, self.n),
                requested: (gy * tile_i).max(gx * tile_j),
                limit_name: "max_compute_workgroups_per_dimension × the kernel's tile",
                limit: max * tile_i.min(tile_j),
                adapter: ctx.describe(),
            });
        }
        let make = match kernel {
            DirectKernel::Scalar => Kernel::MatmulDirect,
            DirectKernel::K4 => Kernel::MatmulK4,
            DirectKernel::N4 | DirectKernel::N4Rows => Kernel::MatmulN4,
            DirectKernel::T4(_) => Kernel::MatmulT4,
        };
        Ok(split::chunks(self.batch() as u64, max)
            .map(|(z0, nz)| Launch {
                kernel: make(MatmulDirectParams {
                    rows: u(d.rows),
                    cols: u(d.cols),
                    k: u(k),
                    nb2: u(self.nb2),
                    x_rs: u(x.0),
                    x_cs: u(x.1),
                    x_bs1: u(x.2),
                    x_bs2: u(x.3),
                    y_rs: u(y.0),
                    y_cs: u(y.1),
                    y_bs1: u(y.2),
                    y_bs2: u(y.3),
                    x_base: u(x.4),
                    y_base: u(y.4),
                    z0: z0 as u32,
                    bias: if self.bias { d.bias } else { 0 } | if self.relu { 4 } else { 0 },
                    alpha: self.alpha,
                    c_rs: u(d.c.0),
                    c_cs: u(d.c.1),
                    c_bs1: u(self.c.bs1),
                    c_bs2: u(self.c.bs2),
                    lanes: match kernel {
                        DirectKernel::T4(lanes) => lanes,
                        k => (k == DirectKernel::N4Rows) as u32,
                    },
                    _pad: [0; 2],
                }),
                // X is B when transposed.
                binds: binds(d.transposed),
                groups: [gx as u32, gy as u32, nz as u32],
            })
            .collect())
    }
}

impl Gemm {
    /// Whether the product can be split along K ([`crate::gpu::tuning::split_k`] decides
    /// whether it pays): one matrix, no bias, a dense output.
    pub(crate) fn splits_along_k(&self) -> bool {
        self.batch() == 1 && !self.bias && !self.relu && self.c.rs == self.n
    }

    /// A product with a small output and a long K (a weight's gradient, summed over every
    /// token) in two passes that fill the device: `chunks` partial products over slices of K,
    /// each its own batch entry of the direct kernel, written chunk-innermost into a scratch
    /// buffer; then each output element's `chunks` partials summed by the row reduction.
    fn split_k(
        &self,
        ctx: &Arc<GpuContext>,
        inputs: &[&GpuBuffer],
        out: &GpuBuffer,
        chunks: usize,
        max: u64,
    ) -> Result<()> {
        let kc = self.k / chunks;
        let d = self.direct_map(self.n < 64 && self.m > self.n);
        let partial_len = (self.m * self.n * chunks) as u64 * 4;
        let partials = GpuBuffer::output(ctx, partial_len)?;
        let (tile_i, tile_j) = DirectKernel::Scalar.tile();
        let (gx, gy) = (
            (d.cols as u64).div_ceil(tile_j),
            (d.rows as u64).div_ceil(tile_i),
        );
        if gx > max || gy > max || chunks as u64 > max {
            return Err(Error::Limit {
                what: format!("{} with an output of {} × {}", self.name, self.m, self.n),
                requested: (gy * tile_i).max(gx * tile_j),
                limit_name: "max_compute_workgroups_per_dimension × the kernel's tile",
                limit: max * tile_i.min(tile_j),
                adapter: ctx.describe(),
            });
        }
        let (x, y) = (d.x, d.y);
        let u = |v: usize| v as u32;
        let (xb, yb) = if d.transposed {
            (inputs[1], inputs[0])
        } else {
            (inputs[0], inputs[1])
        };
        let partial = Launch {
            kernel: Kernel::MatmulDirect(MatmulDirectParams {
                rows: u(d.rows),
                cols: u(d.cols),
                k: u(kc),
                nb2: u(chunks),
                x_rs: u(x.0),
                x_cs: u(x.1),
                x_bs1: 0,
                x_bs2: u(kc * x.1),
                y_rs: u(y.0),
                y_cs: u(y.1),
                y_bs1: 0,
                y_bs2: u(kc * y.0),
                x_base: u(x.4),
                y_base: u(y.4),
                z0: 0,
                bias: 0,
                alpha: self.alpha,
                c_rs: u(d.c.0 * chunks),
                c_cs: u(d.c.1 * chunks),
                c_bs1: 0,
                c_bs2: 1,
                lanes: 0,
                _pad: [0; 2],
            }),
            binds: vec![
                Bind::whole(xb),
                Bind::whole(yb),
                Bind::whole(xb),
                Bind::whole(&partials),
            ],
            groups: [gx as u32, gy as u32, chunks as u32],
        };
        ctx.record(&[partial])?;
        let rows = self.m * self.n;
        crate::ops::common::launch_rows(
            ctx,
            self.name,
            &[&partials],
            out,
            (rows, chunks),
            false,
            |gx, _| {
                Kernel::RowSum(crate::gpu::kernels::RowOpParams {
                    rows: rows as u32,
                    width: chunks as u32,
                    groups_x: gx,
                    op: crate::gpu::codes::RowSumOp::Sum.code(),
                })
            },
        )
    }
}

/// The direct matrix-product kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirectKernel {
    /// `matmul_direct.wgsl`, any strides.
    Scalar,
    /// `matmul_k4.wgsl`, both operands along K in vec4.
    K4,
    /// `matmul_n4.wgsl`, X along K and Y along its columns in vec4.
    N4,
    /// The same with the invocations across rows (for a C a few columns wide).
    N4Rows,
    /// `matmul_t4.wgsl`, X along its rows and Y along its columns in vec4, with this many
    /// invocations across column vec4s (a power of two up to 64).
    T4(u32),
}

impl DirectKernel {
    /// (rows, columns) of C' per workgroup.
    pub(crate) fn tile(self) -> (u64, u64) {
        match self {
            DirectKernel::Scalar => (8, 64),
            DirectKernel::K4 => (4, 256),
            DirectKernel::N4 => (8, 256),
            DirectKernel::N4Rows => (512, 4),
            DirectKernel::T4(l) => (4 * 64 / l as u64, 4 * l as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan for dense operands of these shapes.
    fn plan(
        name: &'static str,
        a: &[usize],
        b: &[usize],
        trans_a: bool,
        trans_b: bool,
        alpha: f32,
        bias: bool,
    ) -> Result<Planned> {
        let (sa, sb) = (
            crate::ops::contiguous_strides(a),
            crate::ops::contiguous_strides(b),
        );
        let lay = |shape, strides| Lay {
            shape,
            strides,
            offset: 0,
        };
        super::plan(
            name,
            lay(a, &sa),
            lay(b, &sb),
            trans_a,
            trans_b,
            alpha,
            bias,
        )
    }

    fn ready(p: Planned) -> Gemm {
        match p {
            Planned::Ready(g) => *g,
            Planned::Expand(_) => panic!("expected a direct plan"),
        }
    }

    #[test]
    fn plans_fold_broadcast_and_expand() {
        // A linear layer: batch folded into rows.
        let g = ready(plan("t", &[4, 16, 32], &[96, 32], false, true, 1.0, true).unwrap());
        assert_eq!((g.m, g.n, g.k, g.nb1, g.nb2), (64, 96, 32, 1, 1));
        assert_eq!(g.out, [4, 16, 96]);
        // Same batch on both: one level.
        let g = ready(plan("t", &[2, 3, 5, 7], &[2, 3, 7, 4], false, false, 1.0, false).unwrap());
        assert_eq!((g.nb1, g.nb2, g.a.bs2, g.b.bs2), (1, 6, 35, 28));
        // [B, 1] × [1, H]: two levels with a zero stride each.
        let g = ready(plan("t", &[2, 1, 5, 7], &[1, 3, 7, 4], false, false, 1.0, false).unwrap());
        assert_eq!((g.nb1, g.nb2), (2, 3));
        assert_eq!((g.a.bs1, g.a.bs2, g.b.bs1, g.b.bs2), (35, 0, 0, 28));
        // Alternating broadcast over three dims needs an expansion.
        assert!(matches!(
            plan(
                "t",
                &[2, 1, 2, 5, 7],
                &[1, 3, 1, 7, 4],
                false,
                false,
                1.0,
                false
            )
            .unwrap(),
            Planned::Expand(_)
        ));
        // 1-D operands.
        let g = ready(plan("t", &[7], &[7, 4], false, false, 1.0, false).unwrap());
        assert_eq!(g.out, [4]);
        let g = ready(plan("t", &[3, 7], &[7], false, false, 1.0, false).unwrap());
        assert_eq!(g.out, [3]);
        // Errors name both shapes.
        let e = plan("t", &[3, 7], &[6, 2], false, false, 1.0, false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("[3, 7]") && e.contains("[6, 2]"), "{e}");
    }
}
