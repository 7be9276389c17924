// Elementwise y = f(a, b) over two tensors of one shape, one invocation per element. Every f is
// exactly rounded or a select, so the GPU gives the CPU path's bits:
//   op 0: mul            y = a * b
//   op 1: relu_backward  y = b > 0 ? a : 0        (a: the gradient, b: relu's input)
//   op 2: add            y = a + b
//   sub, div             y = a - b, a / b (WGSL's division is within 2.5 ulp: bounded)
//   op 3: clip           y = a * c, c = min(alpha / (sqrt(b[0]) + 1e-6), 1) with b[0] the
//                        squared total norm (clip_grad_norm_). sqrt is not exactly rounded on
//                        every GPU, so this one is bounded, not bit-identical (c is exactly 1
//                        whenever the norm is below alpha, the usual case).

struct Params {
    count: u32,
    row_width: u32,
    op: u32,
    alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    switch p.op {
        case BINARY_MUL: {
            y[i] = a[i] * b[i];
        }
        case BINARY_RELU_BACKWARD: {
            y[i] = select(0.0, a[i], b[i] > 0.0);
        }
        case BINARY_ADD: {
            y[i] = a[i] + b[i];
        }
        case BINARY_ADD_RELU: {
            let v = a[i] + b[i];
            y[i] = select(v, 0.0, v < 0.0);
        }
        case BINARY_SUB: {
            y[i] = a[i] - b[i];
        }
        case BINARY_DIV: {
            y[i] = a[i] / b[i];
        }
        case BINARY_EQUAL: {
            y[i] = select(0.0, 1.0, a[i] == b[i]);
        }
        default: {
            let c = min(p.alpha / (sqrt(b[0]) + 1e-6), 1.0);
            y[i] = a[i] * c;
        }
    }
}
