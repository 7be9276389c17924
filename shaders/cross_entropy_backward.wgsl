// The gradient of the mean cross entropy with respect to the logits [rows, width], one
// 64-invocation workgroup per row, as PyTorch's nll_loss + log_softmax backward:
// dx = exp(log_softmax(x)) · w - [i = target] · w with w = g / rows, g the loss's gradient.

struct Params {
    rows: u32,
    width: u32,
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> target_: array<u32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

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
fn cross_entropy_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
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
    let ls = log(s);
    let w = g[0] / f32(p.rows);
    let tgt = target_[2u * row];
    for (var i = t; i < p.width; i += 64u) {
        let v = exp((x[base + i] - m) - ls) * w;
        dx[base + i] = select(v, v - w, i == tgt);
    }
}
