// Softmax over the last dimension, one 64-invocation workgroup per row: the row's maximum is
// subtracted before exp (as PyTorch), partial maxima and sums are combined by a tree in
// workgroup memory. With `short_rows` (chosen in src/gpu/tuning.rs) each invocation takes a whole row
// instead, 64 rows a workgroup, with no barrier: the same 64 strided partials and tree
// (tree_sum64), so the same bits.

struct Params {
    rows: u32,
    width: u32,
    groups_x: u32,
    short_rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 64>;

fn reduce_max(t: u32) -> f32 {
    for (var s = 32u; s > 0u; s >>= 1u) {
        if t < s {
            part[t] = max(part[t], part[t + s]);
        }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(t: u32) -> f32 {
    for (var s = 32u; s > 0u; s >>= 1u) {
        if t < s {
            part[t] = part[t] + part[t + s];
        }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

fn softmax_row(row: u32) {
    let base = row * p.width;
    var m = f32_bits(0xff7fffffu);
    for (var i = 0u; i < p.width; i++) {
        m = max(m, x[base + i]);
    }
    var part: array<f32, 64>;
    for (var t = 0u; t < 64u; t++) {
        var s = 0.0;
        for (var i = t; i < p.width; i += 64u) {
            s += exp(x[base + i] - m);
        }
        part[t] = s;
    }
    let inv = 1.0 / tree_sum64(&part);
    for (var i = 0u; i < p.width; i++) {
        y[base + i] = exp(x[base + i] - m) * inv;
    }
}

@compute @workgroup_size(64)
fn softmax(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if p.short_rows != 0u {
        let r = (wid.y * p.groups_x + wid.x) * 64u + lid.x;
        if r < p.rows {
            softmax_row(r);
        }
        return;
    }
    let row = wid.y * p.groups_x + wid.x;
    // Whole workgroups leave together, so the barriers below stay uniform.
    if row >= p.rows {
        return;
    }
    let t = lid.x;
    let base = row * p.width;
    // -FLT_MAX (from its bits: see f32_bits in src/gpu/codes.rs).
    var m = f32_bits(0xff7fffffu);
    for (var i = t; i < p.width; i += 64u) {
        m = max(m, x[base + i]);
    }
    part[t] = m;
    workgroupBarrier();
    m = reduce_max(t);
    var s = 0.0;
    for (var i = t; i < p.width; i += 64u) {
        s += exp(x[base + i] - m);
    }
    part[t] = s;
    workgroupBarrier();
    s = reduce_sum(t);
    let inv = 1.0 / s;
    for (var i = t; i < p.width; i += 64u) {
        y[base + i] = exp(x[base + i] - m) * inv;
    }
}
