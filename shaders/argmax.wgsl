// Index of the largest element of each row of `a` (the first one on ties; NaN counts as
// the largest, as torch.argmax), written as int64 (low, high) u32 words. One invocation a row.

struct Params {
    count: u32,  // rows
    row_width: u32,
    a: u32,  // row width
    b: u32,  // unused
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

// NaN tested on the bits: shader compilers may assume `v != v` is false.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(256)
fn argmax(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.y * p.row_width + gid.x;
    if r >= p.count {
        return;
    }
    let base = r * p.a;
    var best = x[base];
    var at = 0u;
    var best_nan = is_nan(best);
    for (var i = 1u; i < p.a; i++) {
        let v = x[base + i];
        if !best_nan && (v > best || is_nan(v)) {
            best = v;
            at = i;
            best_nan = is_nan(v);
        }
    }
    y[2u * r] = at;
    y[2u * r + 1u] = 0u;
}
