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
