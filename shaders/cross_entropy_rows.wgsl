// Per-row cross entropy of logits [rows, width] against int64 targets (low, high u32 words),
// one 64-invocation workgroup per row, as PyTorch's log_softmax + nll_loss:
// loss = -((x[t] - max) - log(Σ exp(x - max))). A target outside [0, width) gives NaN (the
// host checks CPU inputs; see `ops::cross_entropy`).

struct Params {
    rows: u32,
    width: u32,
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> target_: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 64>;

fn reduce(t: u32, is_max: bool) -> f32 {
    for (var s = 32u; s > 0u; s >>= 1u) {
        if t < s {
            if is_max {
                part[t] = max(part[t], part[t + s]);
            } else {
                part[t] = part[t] + part[t + s];
            }
        }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn cross_entropy_rows(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * p.groups_x + wid.x;
    if row >= p.rows {
        return;
    }
    let t = lid.x;
    let base = row * p.width;
    var m = -3.40282347e38;
    for (var i = t; i < p.width; i += 64u) {
        m = max(m, x[base + i]);
    }
    part[t] = m;
    workgroupBarrier();
    m = reduce(t, true);
    var s = 0.0;
    for (var i = t; i < p.width; i += 64u) {
        s += exp(x[base + i] - m);
    }
    part[t] = s;
    workgroupBarrier();
    s = reduce(t, false);
    if t == 0u {
        let lo = target_[2u * row];
        let ok = target_[2u * row + 1u] == 0u && lo < p.width;
        let lsm = (x[base + min(lo, p.width - 1u)] - m) - log(s);
        y[row] = select(bitcast<f32>(0x7fc00000u), -lsm, ok);
    }
}
