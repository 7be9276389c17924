// LayerNorm over the last `width` elements, one 64-invocation workgroup per row: mean, then the
// biased variance of (x - mean) (two passes, as PyTorch's CPU kernel), rstd = rsqrt(var + eps),
// x̂ = (x - mean) · rstd. Bits of `affine`: 0 weight, 1 bias, 2 backward.
//   forward:  y = x̂ · weight + bias                     (binding 4 holds the bias)
//   backward: with h = g · weight (g when no weight),    (binding 4 holds g, the gradient of y)
//             dx = rstd · ((h - mean(h)) - x̂ · mean(h · x̂))
// With LAYER_NORM_RESIDUAL, x is x + r (the residual add before the norm, one rounding as
// the add op's, never written out: add_layer_norm).
// With `short_rows` (src/gpu/tuning.rs) each invocation takes a whole row, 64 rows a
// workgroup, with no barrier, adding in the same order as the workgroup path (tree_sum64).

struct Params {
    rows: u32,
    width: u32,
    groups_x: u32,
    affine: u32,
    eps: f32,
    short_rows: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x_in: array<f32>;
@group(0) @binding(2) var<storage, read> r: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// Element i of the normalised input.
fn xv(i: u32) -> f32 {
    if (p.affine & LAYER_NORM_RESIDUAL) != 0u {
        return x_in[i] + r[i];
    }
    return x_in[i];
}

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

// The backward's h at element i of the row at `base`.
fn h(i: u32, base: u32) -> f32 {
    if (p.affine & LAYER_NORM_WEIGHT) != 0u {
        return b[base + i] * w[i];
    }
    return b[base + i];
}

fn layer_norm_row(row: u32) {
    let base = row * p.width;
    let n = f32(p.width);
    var part: array<f32, 64>;
    for (var t = 0u; t < 64u; t++) {
        var s = 0.0;
        for (var i = t; i < p.width; i += 64u) {
            s += xv(base + i);
        }
        part[t] = s;
    }
    let mean = tree_sum64(&part) / n;
    for (var t = 0u; t < 64u; t++) {
        var q = 0.0;
        for (var i = t; i < p.width; i += 64u) {
            let d = xv(base + i) - mean;
            q += d * d;
        }
        part[t] = q;
    }
    let rstd = inverseSqrt(tree_sum64(&part) / n + p.eps);
    if (p.affine & LAYER_NORM_BACKWARD) == 0u {
        for (var i = 0u; i < p.width; i++) {
            var v = (xv(base + i) - mean) * rstd;
            if (p.affine & LAYER_NORM_WEIGHT) != 0u {
                v = v * w[i];
            }
            if (p.affine & LAYER_NORM_BIAS) != 0u {
                v = v + b[i];
            }
            y[base + i] = v;
        }
        return;
    }
    var part2: array<f32, 64>;
    for (var t = 0u; t < 64u; t++) {
        var sh = 0.0;
        var shx = 0.0;
        for (var i = t; i < p.width; i += 64u) {
            let hv = h(i, base);
            sh += hv;
            shx += hv * ((xv(base + i) - mean) * rstd);
        }
        part[t] = sh;
        part2[t] = shx;
    }
    let mh = tree_sum64(&part) / n;
    let mhx = tree_sum64(&part2) / n;
    for (var i = 0u; i < p.width; i++) {
        let xh = (xv(base + i) - mean) * rstd;
        y[base + i] = rstd * ((h(i, base) - mh) - xh * mhx);
    }
}

@compute @workgroup_size(64)
fn layer_norm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if p.short_rows != 0u {
        let r = (wid.y * p.groups_x + wid.x) * 64u + lid.x;
        if r < p.rows {
            layer_norm_row(r);
        }
        return;
    }
    let row = wid.y * p.groups_x + wid.x;
    if row >= p.rows {
        return;
    }
    let t = lid.x;
    let base = row * p.width;
    let n = f32(p.width);
    var s = 0.0;
    for (var i = t; i < p.width; i += 64u) {
        s += xv(base + i);
    }
    part[t] = s;
    workgroupBarrier();
    let mean = reduce_sum(t) / n;
    var q = 0.0;
    for (var i = t; i < p.width; i += 64u) {
        let d = xv(base + i) - mean;
        q += d * d;
    }
    part[t] = q;
    workgroupBarrier();
    let rstd = inverseSqrt(reduce_sum(t) / n + p.eps);
    if (p.affine & LAYER_NORM_BACKWARD) == 0u {
        for (var i = t; i < p.width; i += 64u) {
            var v = (xv(base + i) - mean) * rstd;
            if (p.affine & LAYER_NORM_WEIGHT) != 0u {
                v = v * w[i];
            }
            if (p.affine & LAYER_NORM_BIAS) != 0u {
                v = v + b[i];
            }
            y[base + i] = v;
        }
        return;
    }
    var sh = 0.0;
    var shx = 0.0;
    for (var i = t; i < p.width; i += 64u) {
        let hv = h(i, base);
        sh += hv;
        shx += hv * ((xv(base + i) - mean) * rstd);
    }
    part[t] = sh;
    workgroupBarrier();
    let mh = reduce_sum(t) / n;
    part[t] = shx;
    workgroupBarrier();
    let mhx = reduce_sum(t) / n;
    for (var i = t; i < p.width; i += 64u) {
        let xh = (xv(base + i) - mean) * rstd;
        y[base + i] = rstd * ((h(i, base) - mh) - xh * mhx);
    }
}
