//! Scaled dot-product attention as the UvA DL tutorial 6 (and most ports) write it:
//! `softmax(q · kᵀ / √d_k, masked_fill(mask == 0, -9e15)) · v`.

use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

/// The value the tutorial writes into masked attention logits (`-9e15`, as float32).
pub const MASK_FILL: f32 = -9e15;

/// The tutorial's `expand_mask`: a `[S, S]` mask becomes `[1, 1, S, S]`, a `[B, S, S]` mask
/// `[B, 1, S, S]`, a 4-D mask stays; a view (no copy).
pub fn expand_mask(mask: &Tensor) -> Result<Tensor> {
    let s = mask.shape();
    let shape: Vec<usize> = match s.len() {
        2 => [&[1, 1], s].concat(),
        3 => vec![s[0], 1, s[1], s[2]],
        4 => s.to_vec(),
        _ => {
            return Err(Error::shape(
                "expand_mask",
                format!("mask must be [S, S], [B, S, S] or [B, H, S, S], got {s:?}"),
            ))
        }
    };
    mask.reshape(&shape)
}

/// `scaled_dot_product(q, k, v, mask)` of the tutorial: returns `(values, attention)` with
/// `attention = softmax(q · kᵀ / √d_k)` over the last dimension, masked where `mask == 0`.
/// `q`, `k`: `[…, S, d_k]`, `v`: `[…, S, d_v]`; the mask broadcasts to `[…, S, S]`.
///
/// `1 / √d_k` is applied as one multiplication by its float32 value inside the matrix product
/// (PyTorch divides afterwards): a difference of at most one rounding per logit.
pub fn scaled_dot_product(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let attention = attention_weights(q, k, mask)?;
    if attention.shape().len() == 4 && v.shape().len() == 4 {
        // [B, H, S, D], written by the product in [B, S, H, D] order and viewed back: the
        // caller's `values.permute([0, 2, 1, 3]).reshape([B, S, H·D])` (merging the heads, as
        // the tutorial does) is then a view, not a copy. The same bits as `matmul`.
        let merged = ops::matmul_permuted(&attention, v, &[0, 2, 1, 3])?;
        return Ok((ops::permute(&merged, &[0, 2, 1, 3])?, attention));
    }
    let values = ops::matmul(&attention, v)?;
    Ok((values, attention))
}

/// The first half of [`scaled_dot_product`]: `softmax(q · kᵀ / √d_k)`, masked where
/// `mask == 0`. For a caller that applies the weights itself (the tutorial's
/// `MultiheadAttention` writes `attention · v` straight into its merged-heads layout with
/// [`ops::matmul_permuted`]).
pub fn attention_weights(q: &Tensor, k: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let d_k = *q
        .shape()
        .last()
        .ok_or_else(|| Error::shape("attention_weights", "q needs at least one dimension"))?;
    let alpha = (1.0 / (d_k as f64).sqrt()) as f32;
    let mut logits = ops::matmul_nt(q, k, alpha)?;
    if let Some(m) = mask {
        logits = ops::masked_fill(&logits, m, MASK_FILL)?;
    }
    ops::softmax(&logits)
}

/// `softmax(q · kᵀ / √d_k) · v` without the weights (PyTorch's
/// `F.scaled_dot_product_attention`, with the tutorial's mask convention: `mask == 0` masks,
/// and the mask broadcasts to `[B, H, S, S]`). `q`, `k`, `v`: `[B, H, S, D]`.
///
/// Where nothing is recorded for autograd and `q`, `k`, `v` are the three chunks of one packed
/// projection laid out per head — `qkv.reshape([B, S, H, 3·D]).permute([0, 2, 1, 3]).chunk(3,
/// -1)`, as the tutorial's `MultiheadAttention` writes it — it runs as one kernel
/// ([`ops::fused_attention`]) and returns a view of its merged-heads output, so the caller's
/// `permute([0, 2, 1, 3]).reshape([B, S, H·D])` copies nothing. Otherwise, the unfused ops of
/// [`scaled_dot_product`] (which record the backward).
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    if let Some(values) = packed_attention(q, k, v, mask)? {
        return Ok(values);
    }
    Ok(scaled_dot_product(q, k, v, mask)?.0)
}

/// The fused kernel, when `q`, `k`, `v` are the per-head chunks of one dense packed projection.
fn packed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let records = crate::autograd::is_grad_enabled()
        && [Some(q), Some(k), Some(v), mask]
            .into_iter()
            .flatten()
            .any(Tensor::requires_grad);
    let &[b, h, s, d] = q.shape() else {
        return Ok(None);
    };
    let e = h * d;
    let packed = [s * 3 * e, 3 * d, 3 * e, 1];
    let fits = !records
        && k.shape() == q.shape()
        && v.shape() == q.shape()
        && q.storage_offset() == 0
        && k.storage_offset() == d
        && v.storage_offset() == 2 * d
        && [q, k, v]
            .iter()
            .all(|t| t.strides() == packed && t.shares_storage(q))
        && q.storage_numel() == b * s * 3 * e
        && q.dtype() == k.dtype()
        && q.dtype() == v.dtype();
    if !fits || b * s * d == 0 {
        return Ok(None);
    }
    let qkv = q.view_of(
        vec![b, s, 3 * e],
        crate::ops::contiguous_strides(&[b, s, 3 * e]),
        0,
    );
    let values = ops::fused_attention(&qkv, h, mask)?;
    Ok(Some(ops::permute(
        &values.reshape([b, s, h, d])?,
        &[0, 2, 1, 3],
    )?))
}
