//! The positional table's reference, shared by the native tests (`tests/positional.rs`) and
//! the browser tests (`web/tests/browser.rs`), so both check the same numbers.

/// The widths the GPU table is checked at (odd ones, powers of two and their neighbours).
pub const GPU_DIMS: [usize; 14] = [
    1, 2, 3, 63, 64, 100, 257, 512, 768, 999, 1000, 1023, 1024, 1500,
];

/// The reference, written here independently of the library: f32 scale, f32 multiply,
/// exp/sin/cos in f64 rounded once to f32.
pub fn reference(max_len: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let scale = (-(10000f64.ln()) / d as f64) as f32;
    let div: Vec<f32> = (0..d.div_ceil(2))
        .map(|k| (((2 * k) as f32 * scale) as f64).exp() as f32)
        .collect();
    let mut pe = vec![0f32; max_len * d];
    for pos in 0..max_len {
        for col in 0..d {
            let theta = (pos as f32 * div[col / 2]) as f64;
            pe[pos * d + col] = if col % 2 == 0 {
                theta.sin()
            } else {
                theta.cos()
            } as f32;
        }
    }
    (pe, div)
}
