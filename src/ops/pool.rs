//! Pooling over `[N, C, H, W]` (or `[C, H, W]`): `max_pool2d` (with its indices),
//! `avg_pool2d` (`count_include_pad` both ways) and `adaptive_avg_pool2d`, with their backward.
//!
//! Every path follows PyTorch's CPU loops element for element: the window in row-major order,
//! the running maximum replaced on `>` or a NaN (so ties keep the first maximum and the last
//! NaN wins, padding counts as -inf), sums in float32 in window order, the adaptive window
//! `[⌊o·I/O⌋, ⌈(o+1)·I/O⌉)` divided by its height then its width. The gradients gather, per
//! input element, the contributions of the windows that hold it in output order, which is
//! the order in which PyTorch's scatter adds them. So the CPU and every GPU give the same
//! bits (subnormals aside, which a GPU may flush), and PyTorch's in every fixture case but the
//! 8 × 8 → 1 × 1 adaptive average, which PyTorch sums in another order (1.2e-7 of the largest
//! value apart).

use std::sync::Arc;

use crate::autograd::record;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::codes::PoolOp;
use crate::gpu::kernels::{Kernel, PoolParams};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::ops::common::{elementwise_grid, launch_whole};
use crate::ops::op::{check_float, run, Op};
use crate::ops::threads::par_chunks;
use crate::tensor::{HostBytes, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Max,
    Avg { include_pad: bool },
    Adaptive,
}

/// One pooling: planes of `h × w` to `oh × ow`, windows `kh × kw` at steps `sh, sw` from
/// `-ph, -pw` (unused by the adaptive kind).
#[derive(Clone, Copy, Debug)]
struct Geom {
    kind: Kind,
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
}

impl Geom {
    /// The rows `[start, end)` of output row `o` and the row count the divisor uses (the
    /// columns: the same with the width's sizes).
    fn window(&self, o: usize, along_h: bool) -> (usize, usize, usize) {
        let (i, out, k, s, p) = if along_h {
            (self.h, self.oh, self.kh, self.sh, self.ph)
        } else {
            (self.w, self.ow, self.kw, self.sw, self.pw)
        };
        match self.kind {
            Kind::Adaptive => {
                let start = o * i / out;
                let end = ((o + 1) * i).div_ceil(out);
                (start, end, end - start)
            }
            Kind::Max | Kind::Avg { .. } => {
                let lo = (o * s) as isize - p as isize;
                let hi_padded = (lo + k as isize).min((i + p) as isize);
                let padded = (hi_padded - lo) as usize;
                let (a, b) = (lo.max(0) as usize, (lo + k as isize).min(i as isize).max(0));
                (a, (b as usize).max(a), padded)
            }
        }
    }

    /// Output `(oy, ox)` of one plane `x`: the value and the flat index of the maximum.
    fn forward(&self, x: &[f32], oy: usize, ox: usize) -> (f32, usize) {
        let (y0, y1, ny) = self.window(oy, true);
        let (x0, x1, nx) = self.window(ox, false);
        match self.kind {
            Kind::Max => {
                let mut best = f32::NEG_INFINITY;
                let mut at = y0 * self.w + x0;
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        let v = x[yy * self.w + xx];
                        if v > best || v.is_nan() {
                            best = v;
                            at = yy * self.w + xx;
                        }
                    }
                }
                (best, at)
            }
            Kind::Avg { include_pad } => {
                if y0 >= y1 || x0 >= x1 {
                    return (0.0, 0);
                }
                let mut sum = 0f32;
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        sum += x[yy * self.w + xx];
                    }
                }
                let div = if include_pad {
                    ny * nx
                } else {
                    (y1 - y0) * (x1 - x0)
                };
                (sum / div as f32, 0)
            }
            Kind::Adaptive => {
                let mut sum = 0f32;
                for yy in y0..y1 {
                    for xx in x0..x1 {
                        sum += x[yy * self.w + xx];
                    }
                }
                (sum / ny as f32 / nx as f32, 0)
            }
        }
    }

    /// The output rows whose windows hold input row `i` (along the height, or the width).
    fn holders(&self, i: usize, along_h: bool) -> std::ops::Range<usize> {
        let (out, k, s, p) = if along_h {
            (self.oh, self.kh, self.sh, self.ph)
        } else {
            (self.ow, self.kw, self.sw, self.pw)
        };
        match self.kind {
            // Adaptive windows are few and may overlap: every output is checked.
            Kind::Adaptive => 0..out,
            _ => {
                // o·s - p ≤ i < o·s - p + k.
                let hi = (i + p) / s;
                let lo = (i + p + 1).saturating_sub(k).div_ceil(s);
                lo..(hi + 1).min(out)
            }
        }
    }

    /// The gradient at input `(iy, ix)` of one plane: `x` the plane's input (max only), `g`
    /// the plane's output gradient.
    fn backward(&self, x: &[f32], g: &[f32], iy: usize, ix: usize) -> f32 {
        let mut sum = 0f32;
        for oy in self.holders(iy, true) {
            let (y0, y1, ny) = self.window(oy, true);
            if iy < y0 || iy >= y1 {
                continue;
            }
            for ox in self.holders(ix, false) {
                let (x0, x1, nx) = self.window(ox, false);
                if ix < x0 || ix >= x1 {
                    continue;
                }
                let gv = g[oy * self.ow + ox];
                match self.kind {
                    Kind::Max => {
                        if self.forward(x, oy, ox).1 == iy * self.w + ix {
                            sum += gv;
                        }
                    }
                    Kind::Avg { include_pad } => {
                        let div = if include_pad {
                            ny * nx
                        } else {
                            (y1 - y0) * (x1 - x0)
                        };
                        sum += gv / div as f32;
                    }
                    Kind::Adaptive => sum += gv / ny as f32 / nx as f32,
                }
            }
        }
        sum
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Forward,
    Indices,
    Backward,
}

struct Pool {
    name: &'static str,
    dir: Dir,
    geom: Geom,
    out: Vec<usize>,
}

/// `(planes, h, w)` of a pooling input `[N, C, H, W]` or `[C, H, W]`, and its leading dims.
fn planes_of(name: &str, x: &Tensor) -> Result<(usize, usize, usize, Vec<usize>)> {
    match x.shape() {
        [n, c, h, w] => Ok((n * c, *h, *w, vec![*n, *c])),
        [c, h, w] => Ok((*c, *h, *w, vec![*c])),
        s => Err(Error::shape(
            name,
            format!("expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got {s:?}"),
        )),
    }
}

/// Output size of one dimension: `(i + 2p - k) / s + 1`, with PyTorch's checks.
fn out_size(name: &str, i: usize, k: usize, s: usize, p: usize) -> Result<usize> {
    if k == 0 || s == 0 {
        return Err(Error::invalid(format!(
            "{name}: kernel size and stride must be greater than zero, got kernel {k}, \
             stride {s}"
        )));
    }
    if 2 * p > k {
        return Err(Error::invalid(format!(
            "{name}: pad should be at most half of effective kernel size, but got pad={p}, \
             kernel_size={k}"
        )));
    }
    match (i + 2 * p).checked_sub(k) {
        Some(v) => Ok(v / s + 1),
        None => Err(Error::shape(
            name,
            format!("input size {i} with padding {p} is smaller than the kernel {k}"),
        )),
    }
}

/// Kernel, stride and padding as `(height, width)` pairs.
type Window = ((usize, usize), (usize, usize), (usize, usize));

fn geom(name: &str, kind: Kind, x: &Tensor, (k, s, p): Window) -> Result<(Geom, Vec<usize>)> {
    check_float(name, x, "input")?;
    let (planes, h, w, mut lead) = planes_of(name, x)?;
    let oh = out_size(name, h, k.0, s.0, p.0)?;
    let ow = out_size(name, w, k.1, s.1, p.1)?;
    lead.extend([oh, ow]);
    let g = Geom {
        kind,
        planes,
        h,
        w,
        oh,
        ow,
        kh: k.0,
        kw: k.1,
        sh: s.0,
        sw: s.1,
        ph: p.0,
        pw: p.1,
    };
    Ok((g, lead))
}

/// Runs the forward of `g` and records its backward.
fn pooled(name: &'static str, x: &Tensor, g: Geom, out: Vec<usize>) -> Result<Tensor> {
    let op = Pool {
        name,
        dir: Dir::Forward,
        geom: g,
        out,
    };
    let y = run(&op, &[x], None)?;
    Ok(record(name, y, &[x], || {
        let x = x.detach();
        Box::new(move |gy, _| {
            let op = Pool {
                name: "pool backward",
                dir: Dir::Backward,
                geom: g,
                out: x.shape().to_vec(),
            };
            Ok(vec![Some(run(&op, &[&x, gy], None)?)])
        })
    }))
}

/// `F.max_pool2d(x, kernel_size, stride, padding)` (pairs are `(height, width)`; PyTorch's
/// default stride is the kernel size). Padding is -inf; ties keep the first maximum in
/// row-major window order, and a NaN in a window is its maximum.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let (g, out) = geom("max_pool2d", Kind::Max, x, (kernel, stride, padding))?;
    pooled("max_pool2d", x, g, out)
}

/// `F.max_pool2d(..., return_indices=True)`'s indices: int64, the flat index `y · W + x` of
/// each window's maximum within its plane (not differentiable).
pub fn max_pool2d_indices(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let (g, out) = geom("max_pool2d", Kind::Max, x, (kernel, stride, padding))?;
    let op = Pool {
        name: "max_pool2d indices",
        dir: Dir::Indices,
        geom: g,
        out,
    };
    run(&op, &[x], None)
}

/// `F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=...)`: each window's
/// mean, padding zeros counted in the divisor when `count_include_pad` (PyTorch's default).
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> Result<Tensor> {
    let kind = Kind::Avg {
        include_pad: count_include_pad,
    };
    let (g, out) = geom("avg_pool2d", kind, x, (kernel, stride, padding))?;
    pooled("avg_pool2d", x, g, out)
}

/// `F.adaptive_avg_pool2d(x, (oh, ow))`: output cell `o` averages input rows
/// `[⌊o·H/oh⌋, ⌈(o+1)·H/oh⌉)` (and the same for columns), so windows of sizes that do not
/// divide overlap, as PyTorch's.
pub fn adaptive_avg_pool2d(x: &Tensor, output_size: (usize, usize)) -> Result<Tensor> {
    let name = "adaptive_avg_pool2d";
    check_float(name, x, "input")?;
    let (planes, h, w, mut lead) = planes_of(name, x)?;
    let (oh, ow) = output_size;
    if oh == 0 || ow == 0 || h == 0 || w == 0 {
        return Err(Error::shape(
            name,
            format!(
                "output size {output_size:?} and the input's spatial size {:?} must be non-zero",
                (h, w)
            ),
        ));
    }
    lead.extend([oh, ow]);
    let g = Geom {
        kind: Kind::Adaptive,
        planes,
        h,
        w,
        oh,
        ow,
        kh: 0,
        kw: 0,
        sh: 1,
        sw: 1,
        ph: 0,
        pw: 0,
    };
    pooled(name, x, g, lead)
}

impl Op for Pool {
    fn name(&self) -> &'static str {
        self.name
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn out_dtype(&self) -> DType {
        match self.dir {
            Dir::Indices => DType::I64,
            _ => DType::F32,
        }
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let g = self.geom;
        let x = inputs[0].as_f32();
        let (ip, op) = (g.h * g.w, g.oh * g.ow);
        match self.dir {
            Dir::Forward => par_chunks(out.as_f32_mut(), |start, chunk| {
                for (j, y) in chunk.iter_mut().enumerate() {
                    let i = start + j;
                    let (plane, at) = (i / op, i % op);
                    *y = g.forward(&x[plane * ip..][..ip], at / g.ow, at % g.ow).0;
                }
            }),
            Dir::Indices => {
                let idx: Vec<i64> = (0..g.planes * op)
                    .map(|i| {
                        let (plane, at) = (i / op, i % op);
                        g.forward(&x[plane * ip..][..ip], at / g.ow, at % g.ow).1 as i64
                    })
                    .collect();
                out.bytes_mut().copy_from_slice(bytemuck::cast_slice(&idx));
            }
            Dir::Backward => {
                let gy = inputs[1].as_f32();
                par_chunks(out.as_f32_mut(), |start, chunk| {
                    for (j, d) in chunk.iter_mut().enumerate() {
                        let i = start + j;
                        let (plane, at) = (i / ip, i % ip);
                        *d = g.backward(
                            &x[plane * ip..][..ip],
                            &gy[plane * op..][..op],
                            at / g.w,
                            at % g.w,
                        );
                    }
                })
            }
        }
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let g = self.geom;
        let count = match self.dir {
            Dir::Backward => g.planes * g.h * g.w,
            _ => g.planes * g.oh * g.ow,
        };
        let mut bufs: Vec<&GpuBuffer> = inputs.to_vec();
        if bufs.len() < 2 {
            bufs.push(inputs[0]);
        }
        bufs.push(out);
        let (gx, gy, row_width) = elementwise_grid(ctx, self.name, &bufs, count as u64)?;
        let u = |v: usize| {
            u32::try_from(v).map_err(|_| Error::shape(self.name, format!("size {v} beyond u32")))
        };
        let op = match (self.dir, g.kind) {
            (Dir::Forward, Kind::Max) => PoolOp::Max,
            (Dir::Indices, _) => PoolOp::MaxIndex,
            (Dir::Backward, Kind::Max) => PoolOp::MaxBackward,
            (Dir::Forward, Kind::Avg { .. }) => PoolOp::Avg,
            (Dir::Backward, Kind::Avg { .. }) => PoolOp::AvgBackward,
            (Dir::Forward, Kind::Adaptive) => PoolOp::Adaptive,
            (Dir::Backward, Kind::Adaptive) => PoolOp::AdaptiveBackward,
        };
        let p = PoolParams {
            op: op.code(),
            count: u(count)?,
            row_width,
            planes: u(g.planes)?,
            h: u(g.h)?,
            w: u(g.w)?,
            oh: u(g.oh)?,
            ow: u(g.ow)?,
            kh: u(g.kh)?,
            kw: u(g.kw)?,
            sh: u(g.sh)?,
            sw: u(g.sw)?,
            ph: u(g.ph)?,
            pw: u(g.pw)?,
            include_pad: matches!(g.kind, Kind::Avg { include_pad: true }) as u32,
            _pad: 0,
        };
        launch_whole(ctx, Kernel::Pool2d(p), &bufs, [gx, gy, 1])
    }
}
