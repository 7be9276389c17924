// The mean of n values as one scalar: one 64-invocation workgroup, 64 strided partial sums
// then a tree (the CPU path adds in the same order), divided by `divisor` (n, or, when the n
// values are the partial sums of a long vector, its length: see `pieces` in
// src/ops/common.rs).

struct Params {
    n: u32,
    divisor: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn mean(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    var s = 0.0;
    for (var i = t; i < p.n; i += 64u) {
        s += x[i];
    }
    part[t] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if t < k {
            part[t] = part[t] + part[t + k];
        }
        workgroupBarrier();
    }
    if t == 0u {
        y[0] = part[0] / f32(p.divisor);
    }
}
