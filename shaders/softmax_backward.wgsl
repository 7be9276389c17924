// The gradient of softmax over the last dimension, one 64-invocation workgroup per row:
// dx = y * (g - Σ g·y), y the softmax output (as PyTorch's softmax_backward_data). With
// `short_rows` (src/gpu/tuning.rs) each invocation takes a whole row, adding in the same order
// (tree_sum64).

struct Params {
    rows: u32,
    width: u32,
    groups_x: u32,
    short_rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

var<workgroup> part: array<f32, 64>;

fn softmax_backward_row(row: u32) {
    let base = row * p.width;
    var part: array<f32, 64>;
    for (var t = 0u; t < 64u; t++) {
        var s = 0.0;
        for (var i = t; i < p.width; i += 64u) {
            s += g[base + i] * y[base + i];
        }
        part[t] = s;
    }
    let dot = tree_sum64(&part);
    for (var i = 0u; i < p.width; i++) {
        dx[base + i] = y[base + i] * (g[base + i] - dot);
    }
}

@compute @workgroup_size(64)
fn softmax_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if p.short_rows != 0u {
        let r = (wid.y * p.groups_x + wid.x) * 64u + lid.x;
        if r < p.rows {
            softmax_backward_row(r);
        }
        return;
    }
    let row = wid.y * p.groups_x + wid.x;
    if row >= p.rows {
        return;
    }
    let t = lid.x;
    let base = row * p.width;
    var s = 0.0;
    for (var i = t; i < p.width; i += 64u) {
        s += g[base + i] * y[base + i];
    }
    part[t] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if t < k {
            part[t] = part[t] + part[t + k];
        }
        workgroupBarrier();
    }
    let dot = part[0];
    for (var i = t; i < p.width; i += 64u) {
        dx[base + i] = y[base + i] * (g[base + i] - dot);
    }
}
