// y = (x - mean[c]) * rsqrt(var[c] + eps) * weight[c] + bias[c] for x [n, channels, inner]
// (affine: BATCH_NORM_WEIGHT), then relu(y) with BATCH_NORM_RELU;
// mean and var are read at offsets into their buffers (the batch statistics [2, channels], or
// the running buffers).

struct Params {
    count: u32,
    row_width: u32,
    channels: u32,
    inner: u32,
    mean_base: u32,
    var_base: u32,
    affine: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> var_: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> b: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn batch_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    let c = (i / p.inner) % p.channels;
    var v = (x[i] - mean[p.mean_base + c]) * inverseSqrt(var_[p.var_base + c] + p.eps);
    if (p.affine & BATCH_NORM_WEIGHT) != 0u {
        v = v * w[c] + b[c];
    }
    if (p.affine & BATCH_NORM_RELU) != 0u {
        v = select(v, 0.0, v < 0.0);
    }
    y[i] = v;
}
