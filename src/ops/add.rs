//! `y = x + b` with PyTorch broadcasting, and the positional case `x + table[:, :seq]`.

use std::sync::Arc;

use crate::autograd::{record, wants};
use crate::error::{Error, Result};
use crate::gpu::kernels::{BroadcastParams, Kernel, PrefixParams};
use crate::gpu::launch::Launch;
use crate::gpu::pool::GpuBuffer;
use crate::gpu::split::{self, Bind};
use crate::gpu::GpuContext;
use crate::ops::grad::sum_to;
use crate::ops::layout::pad;
use crate::ops::op::{check_float, run, Op};
use crate::ops::threads::par_chunks;
use crate::tensor::{HostBytes, Tensor};

const MAX_RANK: usize = 8;

/// The broadcast shape of two shapes (PyTorch's rules), or an error naming the dimension.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    "broadcast_add",
                    format!(
                        "the size of x ({da}) must match the size of b ({db}) at dimension {i}, \
                         or one of them must be 1 (x {a:?}, b {b:?})"
                    ),
                ))
            }
        };
    }
    Ok(out)
}

/// The plan of an add: either "every row of x plus the first `row` elements of t" or general.
enum Plan {
    /// y[r, i] = x[r, i] + t[i] for r < rows, i < row.
    Prefix { rows: usize, row: usize },
    /// Strided broadcasting over the (padded) output shape.
    General {
        shape: [usize; MAX_RANK],
        xs: [usize; MAX_RANK],
        bs: [usize; MAX_RANK],
    },
}

fn plan(x: &[usize], b: &[usize], out: &[usize]) -> Result<Plan> {
    // b (without leading 1s) a suffix of x, x already the output shape: row broadcasting.
    let lead = b.iter().take_while(|&&d| d == 1).count();
    let bs = &b[lead..];
    if x == out && bs.len() <= x.len() && x[x.len() - bs.len()..] == *bs {
        let row: usize = bs.iter().product();
        let total: usize = x.iter().product();
        return Ok(Plan::Prefix {
            rows: total.checked_div(row).unwrap_or(0),
            row,
        });
    }
    if out.len() > MAX_RANK {
        return Err(Error::shape(
            "broadcast_add",
            format!(
                "rank {} is more than the {MAX_RANK} dimensions supported",
                out.len()
            ),
        ));
    }
    let strides = |s: &[usize]| {
        let mut st = [0usize; MAX_RANK];
        let off = MAX_RANK - s.len();
        let mut acc = 1;
        for i in (0..s.len()).rev() {
            st[off + i] = if s[i] == 1 { 0 } else { acc };
            acc *= s[i];
        }
        st
    };
    let mut shape = [1usize; MAX_RANK];
    shape[MAX_RANK - out.len()..].copy_from_slice(out);
    Ok(Plan::General {
        shape,
        xs: strides(x),
        bs: strides(b),
    })
}

/// The add op: a checked plan and its output shape.
struct Add {
    name: &'static str,
    plan: Plan,
    out: Vec<usize>,
}

/// `x + b` with PyTorch broadcasting (float32, float16 or bfloat16, both on the same device). The common case —
/// `b` whose shape, leading 1s removed, ends `x`'s shape (bias, positional table) — takes the
/// fast row path; anything else the general strided path (rank ≤ 8).
pub fn broadcast_add(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let name = "broadcast_add";
    check_float(name, x, "x")?;
    check_float(name, b, "b")?;
    let out = broadcast_shape(x.shape(), b.shape())?;
    let plan = plan(x.shape(), b.shape(), &out)?;
    let y = run(&Add { name, plan, out }, &[x, b], None)?;
    Ok(record(name, y, &[x, b], || {
        let (xs, bs) = (x.shape().to_vec(), b.shape().to_vec());
        Box::new(move |g, needs| {
            Ok(vec![
                wants(needs, 0).then(|| sum_to(g, &xs)).transpose()?,
                wants(needs, 1).then(|| sum_to(g, &bs)).transpose()?,
            ])
        })
    }))
}

/// `x + table[:, :seq]` for `x: [batch, seq, d]` and `table: [1, max_len, d]` or `[max_len, d]`
/// with `seq ≤ max_len`: the first `seq` rows of the table are a prefix of its buffer, so no slice
/// is made.
pub fn add_positional(x: &Tensor, table: &Tensor) -> Result<Tensor> {
    let name = "positional encoding forward";
    check_float(name, x, "x")?;
    check_float(name, table, "table")?;
    if x.shape().len() != 3 {
        return Err(Error::shape(
            name,
            format!(
                "x must be [batch, seq_len, d_model], got shape {:?} (rank {})",
                x.shape(),
                x.shape().len()
            ),
        ));
    }
    let (max_len, d) = match table.shape() {
        [1, l, d] | [l, d] => (*l, *d),
        s => {
            return Err(Error::shape(
                name,
                format!("the table must be [1, max_len, d_model], got {s:?}"),
            ))
        }
    };
    let (seq, dx) = (x.shape()[1], x.shape()[2]);
    if dx != d {
        return Err(Error::shape(
            name,
            format!(
                "x has d_model {dx} (shape {:?}) but the table has d_model {d}",
                x.shape()
            ),
        ));
    }
    if seq > max_len {
        return Err(Error::shape(
            name,
            format!("seq_len {seq} is longer than max_len {max_len}; build the module with max_len >= {seq}"),
        ));
    }
    let plan = Plan::Prefix {
        rows: x.shape()[0],
        row: seq * d,
    };
    let y = run(
        &Add {
            name,
            plan,
            out: x.shape().to_vec(),
        },
        &[x, table],
        None,
    )?;
    Ok(record(name, y, &[x, table], || {
        let ts = table.shape().to_vec();
        Box::new(move |g, needs| {
            // The table's gradient: summed over the batch, placed in the first seq rows.
            let table_grad = |g: &Tensor| -> Result<Tensor> {
                let rows = sum_to(g, &[1, seq, d])?.reshape([seq, d])?;
                pad(&rows, 0, 0, &[max_len, d])?.reshape(&ts)
            };
            Ok(vec![
                wants(needs, 0).then(|| g.clone()),
                wants(needs, 1).then(|| table_grad(g)).transpose()?,
            ])
        })
    }))
}

impl Op for Add {
    fn name(&self) -> &'static str {
        self.name
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let (xs, bs) = (inputs[0].as_f32(), inputs[1].as_f32());
        match self.plan {
            Plan::Prefix { row, .. } => add_rows_into(xs, &bs[..row], out.as_f32_mut()),
            Plan::General {
                shape,
                xs: xst,
                bs: bst,
            } => par_chunks(out.as_f32_mut(), |start, chunk| {
                for (j, v) in chunk.iter_mut().enumerate() {
                    let mut o = start + j;
                    let (mut xi, mut bi) = (0, 0);
                    for d in (0..MAX_RANK).rev() {
                        let c = o % shape[d];
                        o /= shape[d];
                        xi += c * xst[d];
                        bi += c * bst[d];
                    }
                    *v = xs[xi] + bs[bi];
                }
            }),
        }
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let (x, b) = (inputs[0], inputs[1]);
        let launches = match self.plan {
            Plan::Prefix { rows, row } => prefix_launches(ctx, x, b, out, rows, row)?,
            Plan::General { shape, xs, bs } => general_launches(ctx, x, b, out, shape, xs, bs)?,
        };
        ctx.record(&launches)
    }
}

/// `y[r*row + i] = x[r*row + i] + t[i]` with `row = t.len()`, on all cores.
fn add_rows_into(x: &[f32], t: &[f32], y: &mut [f32]) {
    let row = t.len();
    if row == 0 {
        return;
    }
    par_chunks(y, |start, chunk| {
        let mut j = 0;
        while j < chunk.len() {
            let i0 = (start + j) % row;
            let len = (row - i0).min(chunk.len() - j);
            let xs = &x[start + j..start + j + len];
            for ((o, a), b) in chunk[j..j + len].iter_mut().zip(xs).zip(&t[i0..i0 + len]) {
                *o = a + b;
            }
            j += len;
        }
    });
}

/// Row broadcasting: chunks of whole batch rows (or pieces of one row) that fit a binding, on a
/// grid of (row elements × batch rows).
fn prefix_launches<'a>(
    ctx: &GpuContext,
    x: &'a GpuBuffer,
    t: &'a GpuBuffer,
    y: &'a GpuBuffer,
    rows: usize,
    row: usize,
) -> Result<Vec<Launch<'a>>> {
    let vec4 = row.is_multiple_of(4);
    let unit = if vec4 { 4u64 } else { 1 };
    let row_units = row as u64 / unit;
    let max_dim = split::max_groups(ctx);
    let per_binding = split::units_per_binding(ctx, 4 * unit, "a broadcast add")?;
    let i_chunk = row_units
        .min(max_dim * split::WORKGROUP as u64)
        .min(per_binding)
        .max(1);
    let b_chunk = if i_chunk == row_units {
        (rows as u64)
            .min(max_dim)
            .min((per_binding / row_units.max(1)).max(1))
    } else {
        1
    };
    let mut out = Vec::new();
    for (b0, nb) in split::chunks(rows as u64, b_chunk) {
        for (i0, ni) in split::chunks(row_units, i_chunk) {
            let start = b0 * row_units + i0;
            let len = (nb - 1) * row_units + ni;
            let (xr, base) = Bind::elements(ctx, x, start, len, 4 * unit);
            let (yr, _) = Bind::elements(ctx, y, start, len, 4 * unit);
            let (tr, tbase) = Bind::elements(ctx, t, i0, ni, 4 * unit);
            let params = PrefixParams {
                count: ni as u32,
                row_stride: row_units.min(u32::MAX as u64) as u32,
                xy_base: base,
                t_base: tbase,
            };
            out.push(Launch {
                kernel: if vec4 {
                    Kernel::BroadcastAddPrefixVec4(params)
                } else {
                    Kernel::BroadcastAddPrefix(params)
                },
                binds: vec![xr, tr, yr],
                groups: [ni.div_ceil(split::WORKGROUP as u64) as u32, nb as u32, 1],
            });
        }
    }
    Ok(out)
}

/// General broadcasting: the inputs bound whole, the output in chunks that fit a binding and a
/// grid.
fn general_launches<'a>(
    ctx: &GpuContext,
    x: &'a GpuBuffer,
    b: &'a GpuBuffer,
    y: &'a GpuBuffer,
    shape: [usize; MAX_RANK],
    xs: [usize; MAX_RANK],
    bs: [usize; MAX_RANK],
) -> Result<Vec<Launch<'a>>> {
    split::check_whole(ctx, x, "input x of a general broadcast_add")?;
    split::check_whole(ctx, b, "input b of a general broadcast_add")?;
    let n: u64 = shape.iter().map(|&d| d as u64).product();
    split::check_u32_index(ctx, n, &format!("a general broadcast_add of {n} elements"))?;
    let chunk =
        split::units_per_binding(ctx, 4, "a broadcast add")?.min(split::max_invocations(ctx));
    let u = |a: [usize; MAX_RANK]| a.map(|v| v as u32);
    let mut out = Vec::new();
    for (start, count) in split::chunks(n, chunk) {
        let (gx, gy, row_width) = split::grid(ctx, count)?;
        let (yr, base) = Bind::elements(ctx, y, start, count, 4);
        out.push(Launch {
            kernel: Kernel::BroadcastAdd(BroadcastParams {
                count: count as u32,
                start: start as u32,
                y_base: base,
                row_width,
                shape: u(shape),
                x_strides: u(xs),
                b_strides: u(bs),
            }),
            binds: vec![Bind::whole(x), Bind::whole(b), yr],
            groups: [gx, gy, 1],
        });
    }
    Ok(out)
}
