//! `y = x + b` with PyTorch broadcasting, and the positional case `x + table[:, :seq]`.

use crate::device::{Device, GpuDevice};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::kernels::{grid, BroadcastParams, Dispatch, PrefixParams, Prepared, Range};
use crate::gpu::{transfer, GpuContext};
use crate::ops::threads::par_chunks;
use crate::tensor::{HostBytes, Storage, Tensor};

const MAX_RANK: usize = 8;

fn check_f32(op: &str, t: &Tensor, which: &str) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::Dtype {
            op: format!("{op} ({which})"),
            expected:
                "float32 (the kernels compute in float32; convert with .to_dtype(DType::F32))"
                    .into(),
            got: t.dtype().name().into(),
        });
    }
    Ok(())
}

fn same_device(op: &str, a: &Tensor, b: &Tensor) -> Result<Device> {
    let (da, db) = (a.device(), b.device());
    if da != db {
        return Err(Error::DeviceMismatch {
            op: op.into(),
            a: da.to_string(),
            b: db.to_string(),
        });
    }
    Ok(da)
}

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

/// `x + b` with PyTorch broadcasting (float32, both on the same device). The common case —
/// `b` whose shape, leading 1s removed, ends `x`'s shape (bias, positional table) — takes the
/// fast row path; anything else the general strided path (rank ≤ 8).
pub fn broadcast_add(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let op = "broadcast_add";
    check_f32(op, x, "x")?;
    check_f32(op, b, "b")?;
    let device = same_device(op, x, b)?;
    let out = broadcast_shape(x.shape(), b.shape())?;
    let p = plan(x.shape(), b.shape(), &out)?;
    run(&device, x, b, &out, p)
}

/// `x + table[:, :seq]` for `x: [batch, seq, d]` and `table: [1, max_len, d]` or `[max_len, d]`
/// with `seq ≤ max_len`: the first `seq` rows of the table are a prefix of its buffer, so no slice
/// is made.
pub fn add_positional(x: &Tensor, table: &Tensor) -> Result<Tensor> {
    let op = "positional encoding forward";
    check_f32(op, x, "x")?;
    check_f32(op, table, "table")?;
    let device = same_device(op, x, table)?;
    if x.shape().len() != 3 {
        return Err(Error::shape(
            op,
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
                op,
                format!("the table must be [1, max_len, d_model], got {s:?}"),
            ))
        }
    };
    let (seq, dx) = (x.shape()[1], x.shape()[2]);
    if dx != d {
        return Err(Error::shape(
            op,
            format!(
                "x has d_model {dx} (shape {:?}) but the table has d_model {d}",
                x.shape()
            ),
        ));
    }
    if seq > max_len {
        return Err(Error::shape(
            op,
            format!("seq_len {seq} is longer than max_len {max_len}; build the module with max_len >= {seq}"),
        ));
    }
    run(
        &device,
        x,
        table,
        x.shape(),
        Plan::Prefix {
            rows: x.shape()[0],
            row: seq * d,
        },
    )
}

fn run(device: &Device, x: &Tensor, b: &Tensor, out: &[usize], p: Plan) -> Result<Tensor> {
    match device {
        Device::Cpu => cpu(x, b, out, &p),
        Device::Gpu(g) => {
            let n: usize = out.iter().product();
            let y = g.0.scoped("broadcast_add", || {
                transfer::storage_buffer(&g.0, n as u64 * 4, "wgnn add output")
            })?;
            let (xb, bb) = match (x.wgpu_buffer(), b.wgpu_buffer()) {
                (Some(xb), Some(bb)) => (xb, bb),
                _ => return Err(Error::invalid("broadcast_add: GPU tensor without a buffer")),
            };
            if n > 0 {
                PreparedAdd::new(g, xb, bb, &y, &p)?.submit()?;
            }
            Ok(Tensor::from_parts(
                out.to_vec(),
                DType::F32,
                Storage::Gpu {
                    buffer: y,
                    device: g.clone(),
                },
            ))
        }
    }
}

fn cpu(x: &Tensor, b: &Tensor, out: &[usize], p: &Plan) -> Result<Tensor> {
    let (Some(xh), Some(bh)) = (x.host(), b.host()) else {
        return Err(Error::invalid(
            "broadcast_add: CPU tensor without host data",
        ));
    };
    let n: usize = out.iter().product();
    let mut y = HostBytes::zeroed(n * 4);
    let (xs, bs) = (xh.as_f32(), bh.as_f32());
    match *p {
        Plan::Prefix { row, .. } => add_rows_into(xs, &bs[..row], y.as_f32_mut()),
        Plan::General {
            shape,
            xs: xst,
            bs: bst,
        } => par_chunks(y.as_f32_mut(), |start, chunk| {
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
    Tensor::from_host(y, out, DType::F32)
}

/// `y[r*row + i] = x[r*row + i] + t[i]` with `row = t.len()`, on all cores. Public for the bench.
pub(crate) fn add_rows_into(x: &[f32], t: &[f32], y: &mut [f32]) {
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

/// An add with its bind groups built: the bench encodes it many times per submission.
pub(crate) struct PreparedAdd {
    ctx: GpuDevice,
    prepared: Prepared,
}

impl PreparedAdd {
    fn new(
        g: &GpuDevice,
        x: &wgpu::Buffer,
        b: &wgpu::Buffer,
        y: &wgpu::Buffer,
        p: &Plan,
    ) -> Result<Self> {
        let ctx = &g.0;
        let (kernel, dispatches) = match *p {
            Plan::Prefix { rows, row } => prefix_dispatches(ctx, x, b, y, rows, row)?,
            Plan::General { shape, xs, bs } => general_dispatches(ctx, x, b, y, shape, xs, bs)?,
        };
        Ok(PreparedAdd {
            ctx: g.clone(),
            prepared: Prepared::new(ctx, kernel, &dispatches)?,
        })
    }

    /// Builds the row-broadcast add `y = x + t[..row]` for the bench.
    pub(crate) fn rows(
        g: &GpuDevice,
        x: &Tensor,
        t: &Tensor,
        y: &Tensor,
        rows: usize,
        row: usize,
    ) -> Result<Self> {
        match (x.wgpu_buffer(), t.wgpu_buffer(), y.wgpu_buffer()) {
            (Some(xb), Some(tb), Some(yb)) => {
                PreparedAdd::new(g, xb, tb, yb, &Plan::Prefix { rows, row })
            }
            _ => Err(Error::invalid("PreparedAdd::rows needs GPU tensors")),
        }
    }

    /// Submits the add once; does not wait.
    fn submit(&self) -> Result<()> {
        self.prepared
            .submit(&self.ctx.0, "broadcast_add", 1)
            .map(|_| ())
    }

    /// Runs the add `repeats` times in one submission and waits.
    pub(crate) fn run(&self, repeats: usize) -> Result<()> {
        self.prepared.run(&self.ctx.0, "broadcast_add", repeats)
    }
}

fn prefix_dispatches<'a>(
    ctx: &GpuContext,
    x: &'a wgpu::Buffer,
    t: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    rows: usize,
    row: usize,
) -> Result<(&'static str, Vec<Dispatch<'a>>)> {
    let vec4 = row.is_multiple_of(4);
    let unit = if vec4 { 4u64 } else { 1 };
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let row_units = row as u64 / unit;
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension as u64;
    let max_bind_units = ((ctx.max_binding() - align) / 4 / unit).max(1);
    let i_chunk = row_units.min(max_dim * 256).min(max_bind_units).max(1);
    let b_chunk = if i_chunk == row_units {
        (rows as u64)
            .min(max_dim)
            .min((max_bind_units / row_units.max(1)).max(1))
    } else {
        1
    };
    let mut out = Vec::new();
    let mut b0 = 0u64;
    while b0 < rows as u64 {
        let nb = b_chunk.min(rows as u64 - b0);
        let mut i0 = 0u64;
        while i0 < row_units {
            let ni = i_chunk.min(row_units - i0);
            let start = (b0 * row_units + i0) * unit;
            let len = ((nb - 1) * row_units + ni) * unit;
            let (xr, base) = Range::elements(x, start, len, align);
            let (yr, _) = Range::elements(y, start, len, align);
            let (tr, tbase) = Range::elements(t, i0 * unit, ni * unit, align);
            let params = PrefixParams {
                count: ni as u32,
                row_stride: row_units.min(u32::MAX as u64) as u32,
                xy_base: base / unit as u32,
                t_base: tbase / unit as u32,
            };
            out.push(Dispatch {
                params: bytemuck::bytes_of(&params).to_vec(),
                storage: vec![xr, tr, yr],
                groups: [ni.div_ceil(256) as u32, nb as u32, 1],
            });
            i0 += ni;
        }
        b0 += nb;
    }
    Ok((
        if vec4 {
            "broadcast_add_prefix_vec4"
        } else {
            "broadcast_add_prefix"
        },
        out,
    ))
}

fn general_dispatches<'a>(
    ctx: &GpuContext,
    x: &'a wgpu::Buffer,
    b: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    shape: [usize; MAX_RANK],
    xs: [usize; MAX_RANK],
    bs: [usize; MAX_RANK],
) -> Result<(&'static str, Vec<Dispatch<'a>>)> {
    for (buf, name) in [(x, "x"), (b, "b")] {
        if buf.size() > ctx.max_binding() {
            return Err(Error::Limit {
                what: format!(
                    "input {name} of a general broadcast_add ({} bytes)",
                    buf.size()
                ),
                requested: buf.size(),
                limit_name: "max_storage_buffer_binding_size",
                limit: ctx.max_binding(),
                adapter: ctx.describe(),
            });
        }
    }
    let n: u64 = shape.iter().map(|&d| d as u64).product();
    if n > u32::MAX as u64 {
        return Err(Error::Limit {
            what: format!("a general broadcast_add of {n} elements"),
            requested: n,
            limit_name: "u32 element index",
            limit: u32::MAX as u64,
            adapter: ctx.describe(),
        });
    }
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let max_chunk = ((ctx.max_binding() - align) / 4).max(1);
    let u = |a: [usize; MAX_RANK]| a.map(|v| v as u32);
    let mut out = Vec::new();
    let mut start = 0u64;
    while start < n {
        let count = max_chunk.min(n - start);
        let (gx, gy, row_width) = grid(ctx, count)?;
        let (yr, base) = Range::elements(y, start, count, align);
        let params = BroadcastParams {
            count: count as u32,
            start: start as u32,
            y_base: base,
            row_width,
            shape: u(shape),
            x_strides: u(xs),
            b_strides: u(bs),
        };
        out.push(Dispatch {
            params: bytemuck::bytes_of(&params).to_vec(),
            storage: vec![Range::whole(x), Range::whole(b), yr],
            groups: [gx, gy, 1],
        });
        start += count;
    }
    Ok(("broadcast_add", out))
}
