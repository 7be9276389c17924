//! Scaled dot-product attention as one op over the tutorial's packed projection: `qkv`
//! `[B, S, 3·E]` (per head h, columns `h·3D ..` hold q, k and v of D = E / H each: the layout
//! the tutorial's `reshape(B, S, H, 3D)`, `permute(0, 2, 1, 3)` and `chunk(3)` read) to the
//! values `[B, S, E]` with the heads merged (what its `permute(0, 2, 1, 3)` and `reshape`
//! write), without writing the scores or the weights anywhere.
//!
//! On the GPU one kernel (`attention.wgsl`) walks each query row's keys once with an online
//! softmax; on the CPU each (batch, head) runs its scores, softmax and weighted sum while its
//! `[S, S]` scores are in cache, the two products on the GEMM crate. Where a gradient is
//! recorded, the weights are asked for, the mask is not float32, or (GPU) D is not a multiple
//! of 4 up to 128 or the sequence is longer than the kernel pays for on the adapter
//! (`gpu::tuning::fuse_attention`), it runs as the unfused ops ([`composed`]), which record
//! their backward.
//!
//! Numbers: the online softmax rescales as it goes, so the GPU kernel is not bit-identical to
//! the unfused ops; both are within 2e-6 × max|y| of each other and of PyTorch (tested in
//! `tests/fused.rs`).

use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::gpu::kernels::{AttentionParams, Kernel};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::nn::MASK_FILL;
use crate::ops::common::{elementwise_grid, launch_whole, row_grid, sum64};
use crate::ops::op::{check_float, run, Op};
use crate::tensor::{HostBytes, Tensor};

/// Widest head the GPU kernel holds in its registers (its `array<vec4<f32>, 32>`).
const MAX_GPU_HEAD: usize = 128;

struct Attention {
    batch: usize,
    seq: usize,
    heads: usize,
    head_dim: usize,
    alpha: f32,
    /// The mask's strides over (b, h, i, j), 0 where it broadcasts.
    mask: Option<[usize; 4]>,
    out: Vec<usize>,
}

/// `scaled_dot_product` of the tutorial's `MultiheadAttention` on its packed projection:
/// `qkv` `[B, S, 3·E]` → values `[B, S, E]`, heads merged, `1/√D` applied inside the product
/// as the unfused [`crate::nn::attention_weights`] does. `mask` broadcasts to `[B, H, S, S]`
/// (the tutorial's `expand_mask` output; 0 masks). One kernel where it can; the unfused ops
/// where a gradient is recorded (see the module's text).
pub fn fused_attention(qkv: &Tensor, num_heads: usize, mask: Option<&Tensor>) -> Result<Tensor> {
    let name = "fused_attention";
    check_float(name, qkv, "qkv")?;
    let (batch, seq, width) = match qkv.shape() {
        [b, s, w] => (*b, *s, *w),
        s => {
            return Err(Error::shape(
                name,
                format!("qkv must be [batch, seq_len, 3 * embed_dim], got {s:?}"),
            ))
        }
    };
    if num_heads == 0 || !width.is_multiple_of(3 * num_heads) {
        return Err(Error::shape(
            name,
            format!("qkv's last dimension {width} is not 3 × a multiple of {num_heads} heads"),
        ));
    }
    let head_dim = width / 3 / num_heads;
    let mask = mask
        .map(|m| -> Result<Tensor> {
            let m = crate::nn::expand_mask(m)?;
            let s = m.shape();
            let fits = |have: usize, want: usize| have == want || have == 1;
            if !(fits(s[0], batch) && fits(s[1], num_heads) && fits(s[2], seq) && fits(s[3], seq)) {
                return Err(Error::shape(
                    name,
                    format!(
                        "mask {s:?} does not broadcast to [{batch}, {num_heads}, {seq}, {seq}]"
                    ),
                ));
            }
            Ok(m)
        })
        .transpose()?;
    let records = crate::autograd::is_grad_enabled() && qkv.requires_grad();
    let gpu_fits = head_dim.is_multiple_of(4)
        && head_dim <= MAX_GPU_HEAD
        && qkv
            .device()
            .as_gpu()
            .is_none_or(|g| crate::gpu::tuning::fuse_attention(&g.0, seq));
    let mask_fits = mask.as_ref().is_none_or(|m| m.dtype() == crate::DType::F32);
    if records || !mask_fits || (!qkv.device().is_cpu() && !gpu_fits) {
        return composed(qkv, num_heads, mask.as_ref());
    }
    let strides = mask.as_ref().map(|m| {
        let s = m.shape();
        let dense = crate::ops::contiguous_strides(s);
        let mut st = [0usize; 4];
        for d in 0..4 {
            st[d] = if s[d] == 1 { 0 } else { dense[d] };
        }
        st
    });
    let op = Attention {
        batch,
        seq,
        heads: num_heads,
        head_dim,
        alpha: (1.0 / (head_dim as f64).sqrt()) as f32,
        mask: strides,
        out: vec![batch, seq, num_heads * head_dim],
    };
    match &mask {
        Some(m) => run(&op, &[qkv, m], None),
        None => run(&op, &[qkv], None),
    }
}

/// The same as the unfused ops the tutorial writes: views for the heads, the attention
/// weights, and `attention · v` written in merged-heads order. Records the backward.
pub(crate) fn composed(qkv: &Tensor, num_heads: usize, mask: Option<&Tensor>) -> Result<Tensor> {
    Ok(composed_with_weights(qkv, num_heads, mask)?.0)
}

/// [`composed`], and the attention weights `[B, H, S, S]` (the tutorial's
/// `MultiheadAttention.forward(..., return_attention=True)`).
pub(crate) fn composed_with_weights(
    qkv: &Tensor,
    num_heads: usize,
    mask: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (batch, seq, width) = match qkv.shape() {
        [b, s, w] => (*b, *s, *w),
        s => {
            return Err(Error::shape(
                "attention",
                format!("qkv must be [batch, seq_len, 3 * embed_dim], got {s:?}"),
            ))
        }
    };
    let head_dim = width / 3 / num_heads.max(1);
    let mask = mask.map(crate::nn::expand_mask).transpose()?;
    // Separate Q, K, V: [B, S, H, 3·D] viewed as [B, H, S, 3·D], chunked.
    let qkv = qkv.reshape([batch, seq, num_heads, 3 * head_dim])?;
    let qkv = crate::ops::permute(&qkv, &[0, 2, 1, 3])?;
    let qkv = crate::ops::chunk(&qkv, 3, 3)?;
    // attention · v written straight in [B, S, H, D] order: the tutorial's permute(0, 2, 1, 3)
    // is then dense and the reshape that merges the heads a view (no copy kernel).
    let attention = crate::nn::attention_weights(&qkv[0], &qkv[1], mask.as_ref())?;
    let values = crate::ops::matmul_permuted(&attention, &qkv[2], &[0, 2, 1, 3])?;
    Ok((
        values.reshape([batch, seq, num_heads * head_dim])?,
        attention,
    ))
}

/// A raw pointer the CPU path's (batch, head) tasks write their disjoint rows through.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: each task writes only its own (batch, head)'s rows, disjoint from every other's.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

impl Op for Attention {
    fn name(&self) -> &'static str {
        "fused_attention"
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn is_operand(&self, i: usize) -> bool {
        i == 0
    }
    fn flops(&self) -> u64 {
        4 * (self.batch * self.heads * self.seq * self.seq * self.head_dim) as u64
    }

    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()> {
        let qkv = inputs[0].as_f32();
        let mask = inputs.get(1).map(|m| m.as_f32());
        let (s, h, d) = (self.seq, self.heads, self.head_dim);
        let (row, e) = (3 * h * d, h * d);
        let o = out.as_f32_mut();
        if qkv.len() < self.batch * s * row || o.len() < self.batch * s * e {
            return Err(Error::internal(
                "fused_attention: buffers smaller than the plan",
            ));
        }
        let ptr = OutPtr(o.as_mut_ptr());
        let work = |bh: usize| {
            let (b, hh) = (bh / h, bh % h);
            let base = b * s * row + hh * 3 * d;
            let mut scores = vec![0f32; s * s];
            // SAFETY: q and k rows lie inside qkv (checked above: b < batch, hh < h, the
            // head's 3·D columns inside a row of 3·E); scores is S × S.
            unsafe {
                gemm::gemm(
                    s,
                    s,
                    d,
                    scores.as_mut_ptr(),
                    1,
                    s as isize,
                    false,
                    qkv.as_ptr().add(base),
                    1,
                    row as isize,
                    qkv.as_ptr().add(base + d),
                    row as isize,
                    1,
                    0.0,
                    self.alpha,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (i, r) in scores.chunks_mut(s).enumerate() {
                if let (Some(m), Some(st)) = (mask, self.mask) {
                    let mrow = b * st[0] + hh * st[1] + i * st[2];
                    for (j, v) in r.iter_mut().enumerate() {
                        if m[mrow + j * st[3]] == 0.0 {
                            *v = MASK_FILL;
                        }
                    }
                }
                let mx = r.iter().fold(-f32::MAX, |a, &v| a.max(v));
                let sum = sum64(s, |j| (r[j] - mx).exp());
                let inv = 1.0 / sum;
                for v in r.iter_mut() {
                    *v = (*v - mx).exp() * inv;
                }
            }
            // SAFETY: this (b, hh) writes rows b·S .. b·S + S of out, columns hh·D .. hh·D + D
            // (row stride E): inside out (checked above) and disjoint from every other task's.
            unsafe {
                gemm::gemm(
                    s,
                    d,
                    s,
                    ptr.get().add(b * s * e + hh * d),
                    1,
                    e as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    s as isize,
                    qkv.as_ptr().add(base + 2 * d),
                    1,
                    row as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        };
        let pairs = self.batch * h;
        if crate::ops::threads::cores() > 1 && pairs > 1 && pairs * s * s * d >= 1 << 16 {
            (0..pairs).into_par_iter().for_each(work);
        } else {
            (0..pairs).for_each(work);
        }
        Ok(())
    }

    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()> {
        let rows = (self.batch * self.heads * self.seq) as u64;
        elementwise_grid(
            ctx,
            self.name(),
            &[inputs[0], out],
            rows * self.head_dim as u64,
        )?;
        let (gx, gy) = row_grid(ctx, self.name(), rows.div_ceil(64))?;
        let st = self.mask.unwrap_or([0; 4]);
        let u = |v: usize| v as u32;
        launch_whole(
            ctx,
            Kernel::Attention(AttentionParams {
                batch: u(self.batch),
                seq: u(self.seq),
                heads: u(self.heads),
                d4: u(self.head_dim / 4),
                alpha: self.alpha,
                has_mask: self.mask.is_some() as u32,
                m_bs: u(st[0]),
                m_hs: u(st[1]),
                m_is: u(st[2]),
                m_js: u(st[3]),
                groups_x: gx,
                fill: MASK_FILL,
            }),
            &[inputs[0], inputs.get(1).copied().unwrap_or(inputs[0]), out],
            [gx, gy, 1],
        )
    }
}
