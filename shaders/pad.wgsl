// The gradient of narrow: y [outer, full, inner] is x [outer, len, inner] placed at
// start..start+len of the middle dimension, zeros elsewhere. Moves bits: CPU and GPU agree.

struct Params {
    count: u32,
    row_width: u32,
    inner: u32,
    full: u32,
    start: u32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn pad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    let c = i % p.inner;
    let j = (i / p.inner) % p.full;
    let o = i / (p.inner * p.full);
    if j >= p.start && j < p.start + p.len {
        y[i] = x[(o * p.len + (j - p.start)) * p.inner + c];
    } else {
        y[i] = 0.0;
    }
}
