// Per-channel mean and biased variance of x [n, channels, inner] over n and inner, one
// 64-invocation workgroup per channel (two passes: mean, then the mean of squared deviations).
// Writes stats[c] = mean, stats[channels + c] = variance.

struct Params {
    n: u32,
    channels: u32,
    inner: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;

var<workgroup> part: array<f32, 64>;

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

@compute @workgroup_size(64)
fn batch_norm_stats(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let c = wid.x;
    let t = lid.x;
    let total = p.n * p.inner;
    let count = f32(total);
    var s = 0.0;
    for (var j = t; j < total; j += 64u) {
        let b = j / p.inner;
        s += x[(b * p.channels + c) * p.inner + (j - b * p.inner)];
    }
    part[t] = s;
    workgroupBarrier();
    let mean = reduce_sum(t) / count;
    var q = 0.0;
    for (var j = t; j < total; j += 64u) {
        let b = j / p.inner;
        let d = x[(b * p.channels + c) * p.inner + (j - b * p.inner)] - mean;
        q += d * d;
    }
    part[t] = q;
    workgroupBarrier();
    let var_ = reduce_sum(t) / count;
    if t == 0u {
        stats[c] = mean;
        stats[p.channels + c] = var_;
    }
}
