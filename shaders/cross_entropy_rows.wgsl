// Cross entropy of logits [rows, width] against int64 targets (low, high u32 words), one
// 64-invocation workgroup per row, as PyTorch's log_softmax + nll_loss. Both directions share
// the row's maximum m and log Σ exp(x - m):
//   op 0 (forward):  out[row] = -((x[t] - m) - log Σ exp(x - m)); a target outside [0, width)
//                    gives NaN (the host checks CPU inputs; see `ops::cross_entropy`).
//   op 1 (backward of the mean): out[row, i] = exp(log_softmax(x)_i) · w - [i = t] · w with
//                    w = g[0] / rows, g the loss's gradient (nll_loss + log_softmax backward).
// With CROSS_ENTROPY_SHORT_ROWS in `op` each invocation takes a whole row, 64 rows a
// workgroup, with no barrier: the same 64 strided partials and tree (tree_sum64), so the
// same bits.

struct Params {
    rows: u32,
    width: u32,
    groups_x: u32,
    op: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> target_: array<u32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

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

// Both directions for one row, in one invocation.
fn ce_row(row: u32, op: u32) {
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
    let s = tree_sum64(&part);
    let lo = target_[2u * row];
    if op == CROSS_ENTROPY_LOSS {
        let ok = target_[2u * row + 1u] == 0u && lo < p.width;
        let lsm = (x[base + min(lo, p.width - 1u)] - m) - log(s);
        out[row] = select(f32_bits(0x7fc00000u), -lsm, ok);
        return;
    }
    let ls = log(s);
    let w = g[0] / f32(p.rows);
    for (var i = 0u; i < p.width; i++) {
        let v = exp((x[base + i] - m) - ls) * w;
        out[base + i] = select(v, v - w, i == lo);
    }
}

@compute @workgroup_size(64)
fn cross_entropy_rows(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let op = p.op & ~CROSS_ENTROPY_SHORT_ROWS;
    if (p.op & CROSS_ENTROPY_SHORT_ROWS) != 0u {
        let r = (wid.y * p.groups_x + wid.x) * 64u + lid.x;
        if r < p.rows {
            ce_row(r, op);
        }
        return;
    }
    let row = wid.y * p.groups_x + wid.x;
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
    m = reduce(t, true);
    var s = 0.0;
    for (var i = t; i < p.width; i += 64u) {
        s += exp(x[base + i] - m);
    }
    part[t] = s;
    workgroupBarrier();
    s = reduce(t, false);
    let lo = target_[2u * row];
    if op == CROSS_ENTROPY_LOSS {
        if t == 0u {
            let ok = target_[2u * row + 1u] == 0u && lo < p.width;
            let lsm = (x[base + min(lo, p.width - 1u)] - m) - log(s);
            out[row] = select(f32_bits(0x7fc00000u), -lsm, ok);
        }
        return;
    }
    let ls = log(s);
    let w = g[0] / f32(p.rows);
    for (var i = t; i < p.width; i += 64u) {
        let v = exp((x[base + i] - m) - ls) * w;
        out[base + i] = select(v, v - w, i == lo);
    }
}
