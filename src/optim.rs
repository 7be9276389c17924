//! Learning-rate schedules (optimizers come with training).

/// The tutorial's `CosineWarmupScheduler(optimizer, warmup, max_iters)`, stepped once per batch:
/// the factor is `0.5 · (1 + cos(π · step / max_iters))`, multiplied by `step / warmup` while
/// `step ≤ warmup`; the learning rate of step `k + 1` is `base_lr · factor(k)` (so the first
/// step has learning rate 0, as in the tutorial).
///
/// ```
/// use wgnn::optim::CosineWarmupScheduler;
/// let s = CosineWarmupScheduler::new(50, 3900);
/// assert_eq!(s.lr_factor(0), 0.0);
/// assert!((s.lr(5e-4, 50) - 5e-4 * 0.5 * (1.0 + (std::f64::consts::PI * 50.0 / 3900.0).cos())).abs() < 1e-18);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineWarmupScheduler {
    /// Steps of linear warm-up.
    pub warmup: usize,
    /// Steps of the whole cosine.
    pub max_iters: usize,
}

impl CosineWarmupScheduler {
    /// The schedule.
    pub fn new(warmup: usize, max_iters: usize) -> Self {
        CosineWarmupScheduler { warmup, max_iters }
    }
    /// `get_lr_factor(epoch)`, in f64 as the tutorial's numpy computes it.
    pub fn lr_factor(&self, epoch: usize) -> f64 {
        let e = epoch as f64;
        let mut f = 0.5 * (1.0 + (std::f64::consts::PI * e / self.max_iters.max(1) as f64).cos());
        if epoch <= self.warmup {
            f *= e * 1.0 / self.warmup.max(1) as f64;
        }
        f
    }
    /// The learning rate at `epoch` (the scheduler's `last_epoch`) for `base_lr`.
    pub fn lr(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * self.lr_factor(epoch)
    }
}
