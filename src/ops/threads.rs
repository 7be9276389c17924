//! Splitting CPU work over the machine's cores with scoped threads.

/// The machine's cores, asked once (`available_parallelism` reads cgroup files on Linux: too
/// slow for every op of a model's forward).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |p| p.get()))
}

/// Number of worker threads for `n` units of work (one thread below 64 Ki units).
pub(crate) fn workers(n: usize) -> usize {
    if n < 1 << 16 {
        return 1;
    }
    cores().min(n >> 15).max(1)
}

/// Calls `f(start, chunk)` on disjoint, contiguous chunks of `out` in parallel.
pub(crate) fn par_chunks<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    let n = out.len();
    let w = workers(n);
    if w <= 1 {
        f(0, out);
        return;
    }
    let chunk = n.div_ceil(w);
    std::thread::scope(|s| {
        for (i, c) in out.chunks_mut(chunk).enumerate() {
            let f = &f;
            s.spawn(move || f(i * chunk, c));
        }
    });
}
