//! The reverse task of tutorial 6 (`ReverseDataset(10, 16)`, `train_reverse(...)`): its
//! hyper-parameters and the accuracy line the examples and the web page print. Not part of
//! the notebook's classes (the notebook's reverse-task code is not either, in
//! `count_lines.py`).

use crate::tutorial6::Hparams;

impl Hparams {
    /// `train_reverse(input_dim=10, model_dim=32, num_heads=1, num_classes=10, num_layers=1,
    /// dropout=0.0, lr=5e-4, warmup=50)`, `max_iters` for 10 epochs of 390 batches.
    pub fn reverse_task() -> Self {
        Hparams {
            input_dim: 10,
            model_dim: 32,
            num_classes: 10,
            num_heads: 1,
            num_layers: 1,
            lr: 5e-4,
            warmup: 50,
            max_iters: 3900,
            dropout: 0.0,
            input_dropout: 0.0,
        }
    }
}

/// The reverse task's accuracy line for predictions `preds` of sequences `x` of length `seq`
/// (the label of position `i` is the input at `seq - 1 - i`): `accuracy: C/T tokens (P%), F/N
/// sequences fully reversed`.
pub fn reversal_accuracy(x: &[i64], preds: &[i64], seq: usize) -> String {
    let n = x.len().checked_div(seq).unwrap_or(0);
    let (mut correct, mut full) = (0, 0);
    for s in 0..n {
        let ok =
            (0..seq).filter(|&i| preds.get(s * seq + i) == Some(&x[s * seq + seq - 1 - i])).count();
        correct += ok;
        full += (ok == seq) as usize;
    }
    let total = n * seq;
    format!(
        "accuracy: {correct}/{total} tokens ({:.2}%), {full}/{n} sequences fully reversed",
        100.0 * correct as f64 / total.max(1) as f64
    )
}
