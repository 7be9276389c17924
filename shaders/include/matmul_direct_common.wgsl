// Shared by the direct matrix-product kernels (matmul_direct, matmul_k4, matmul_n4,
// matmul_t4), appended to each by the kernel table (src/gpu/kernels.rs): their params, the
// bias and output bindings, the batch offsets and the store of one element of C.
//
// Each computes C[z] = alpha * X[z] · Y[z] (+ bias, ReLU) without workgroup memory or
// barriers, from register blocks; the host maps A and B onto X and Y either way round (C = A·B,
// or Cᵀ = Bᵀ·Aᵀ), through strides: no copy. Strides and offsets are in the element type of the
// array they index (vec4 where a kernel reads vec4s; the host checks they divide by 4).

struct Params {
    rows: u32,    // rows of C (i)
    cols: u32,    // columns of C (j)
    k: u32,       // the reduced length, in vec4 where the kernel reads K as vec4s
    nb2: u32,     // size of the inner batch level
    x_rs: u32,    // X[i, k] = x[x_base + z1*x_bs1 + z2*x_bs2 + i*x_rs + k*x_cs]
    x_cs: u32,
    x_bs1: u32,
    x_bs2: u32,
    y_rs: u32,    // Y[k, j] = y[y_base + z1*y_bs1 + z2*y_bs2 + k*y_rs + j*y_cs]
    y_cs: u32,
    y_bs1: u32,
    y_bs2: u32,
    x_base: u32,
    y_base: u32,
    z0: u32,      // first batch index of this dispatch
    bias: u32,    // 0: none, 1: bias[j], 2: bias[i]; | 4: ReLU after it (linear_relu)
    alpha: f32,
    c_rs: u32,    // C[z, i, j] = c[z1*c_bs1 + z2*c_bs2 + i*c_rs + j*c_cs]
    c_cs: u32,
    c_bs1: u32,
    c_bs2: u32,
    lanes: u32,   // matmul_n4: non-zero puts the invocations across rows; matmul_t4: how many
                  // invocations go across column vec4s; unused by the others
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// (X's, Y's and C's offsets) of batch entry wz + z0.
fn batch_offsets(wz: u32) -> vec3<u32> {
    let z = wz + p.z0;
    let z1 = z / p.nb2;
    let z2 = z - z1 * p.nb2;
    return vec3<u32>(
        p.x_base + z1 * p.x_bs1 + z2 * p.x_bs2,
        p.y_base + z1 * p.y_bs1 + z2 * p.y_bs2,
        z1 * p.c_bs1 + z2 * p.c_bs2,
    );
}

// C[i, j] = alpha * v (+ bias, ReLU), rows past C skipped.
fn store(c_off: u32, i: u32, j: u32, v: f32) {
    if i >= p.rows {
        return;
    }
    var b = 0.0;
    let kind = p.bias & 3u;
    if kind == 1u {
        b = bias[j];
    } else if kind == 2u {
        b = bias[i];
    }
    var o = p.alpha * v + b;
    if (p.bias & 4u) != 0u {
        o = select(o, 0.0, o < 0.0); // ReLU (NaN stays NaN, as torch.relu)
    }
    c[c_off + i * p.c_rs + j * p.c_cs] = o;
}
