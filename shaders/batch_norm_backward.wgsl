// BatchNorm's gradient with respect to x [n, channels, inner], elementwise. With
// rstd = rsqrt(var[c] + eps) and x̂ = (x - mean[c]) · rstd as forward computes them, w[c] the
// weight (1 without one) and sums = [Σ g·x̂ ; Σ g] per channel over m = n · inner values:
//   batch statistics (training):  dx = w · rstd · ((g - Σg / m) - x̂ · (Σg·x̂ / m))
//   given statistics (eval):      dx = w · rstd · g

struct Params {
    count: u32,
    row_width: u32,
    channels: u32,
    inner: u32,
    mean_base: u32,
    var_base: u32,
    affine: u32,   // bit 0: weight, bit 1: batch statistics
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> var_: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read> sums: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn batch_norm_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    let c = (i / p.inner) % p.channels;
    let rstd = inverseSqrt(var_[p.var_base + c] + p.eps);
    var scale = rstd;
    if (p.affine & BATCH_NORM_WEIGHT) != 0u {
        scale = w[c] * rstd;
    }
    var v = g[i];
    if (p.affine & BATCH_NORM_BATCH_STATS) != 0u {
        let m = f32(p.count / p.channels);
        let xh = (x[i] - mean[p.mean_base + c]) * rstd;
        v = (v - sums[p.channels + c] / m) - xh * (sums[c] / m);
    }
    dx[i] = scale * v;
}
