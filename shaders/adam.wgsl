// One part of PyTorch's Adam update (single-tensor path), elementwise over a parameter p, its
// gradient g and the moments m, v. With g' = g + weight_decay · p:
//   op 0: m' = m + (1 - β1) · (g' - m)                 (exp_avg.lerp_(g', 1 - β1))
//   op 1: v' = v · β2 + ((1 - β2) · g') · g'           (mul_(β2).addcmul_(g', g', 1 - β2))
//   op 2: p' = p + (-step_size) · (m / (sqrt(v) / bc2_sqrt + eps)), m and v the new moments
//   op 3: SGD momentum buffer b' = b · μ + g'          (buf.mul_(μ).add_(g')), b in m
//   op 4: SGD step with momentum p' = p + (-lr) · b    (b the new buffer, in m)
//   op 5: SGD step without momentum p' = p + (-lr) · g'
// The host launches 0, 1, 2 (Adam), 3, 4 or 5 (SGD) and keeps the new tensors.

struct Params {
    count: u32,
    row_width: u32,
    op: u32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    weight_decay: f32,
    neg_step: f32,
    bc2_sqrt: f32,
    eps: f32,
    momentum: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> m: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    var g = grad[i];
    if p.weight_decay != 0.0 {
        g = g + param[i] * p.weight_decay;
    }
    switch p.op {
        case UPDATE_ADAM_EXP_AVG: {
            y[i] = m[i] + p.one_minus_beta1 * (g - m[i]);
        }
        case UPDATE_ADAM_EXP_AVG_SQ: {
            y[i] = v[i] * p.beta2 + (p.one_minus_beta2 * g) * g;
        }
        case UPDATE_ADAM_PARAM: {
            let denom = sqrt(v[i]) / p.bc2_sqrt + p.eps;
            y[i] = param[i] + p.neg_step * (m[i] / denom);
        }
        case UPDATE_SGD_BUFFER: {
            y[i] = m[i] * p.momentum + g;
        }
        case UPDATE_SGD_PARAM_MOMENTUM: {
            y[i] = param[i] + p.neg_step * m[i];
        }
        default: {
            y[i] = param[i] + p.neg_step * g;
        }
    }
}
