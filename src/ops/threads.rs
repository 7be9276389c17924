//! Splitting CPU work over the machine's cores on rayon's global pool (the one the `gemm` crate
//! drives the matrix products with), instead of spawning threads per op.

use rayon::prelude::*;

/// The threads of rayon's pool (`RAYON_NUM_THREADS`, else the machine's cores). In a browser
/// (wasm32 without threads) one: everything runs on the calling thread and rayon's pool, which
/// could not start there, is never touched.
pub(crate) fn cores() -> usize {
    if cfg!(target_arch = "wasm32") {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Number of pieces for `n` units of work: one below 64 Ki units, else one per core, each at
/// least 32 Ki units (smaller pieces cost more to hand out than they save).
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
    out.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i * chunk, c));
}

/// Calls `f(row, out_row)` for every row of `width` elements of `out`, rows split over cores.
pub(crate) fn par_rows(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if width == 0 {
        return;
    }
    let rows = out.len() / width;
    let w = workers(out.len()).min(rows.max(1));
    let per = rows.div_ceil(w.max(1)).max(1);
    let run = |ci: usize, chunk: &mut [f32]| {
        for (j, r) in chunk.chunks_mut(width).enumerate() {
            f(ci * per + j, r);
        }
    };
    if w <= 1 {
        run(0, out);
        return;
    }
    out.par_chunks_mut(per * width)
        .enumerate()
        .for_each(|(ci, chunk)| run(ci, chunk));
}
