// C[z] = alpha * X[z] · Y[z] (+ bias) for operands both contiguous along K (X[i, k..k+4]
// and Y[k..k+4, j] each one aligned vec4: x·Wᵀ of a linear layer, q·kᵀ), without workgroup
// memory: each invocation computes a 4 × 4 block of C (rows i0..i0+3, columns j, j+64,
// j+128, j+192), 64 invocations a 4 × 256 block. Every load is a vec4, every four values of
// K take 8 loads for 64 multiply-adds: CPU rasterisers (lavapipe) pay per load instruction,
// whatever its width, and GPUs like wide loads too. Offsets, strides and K are counted in
// vec4 (the host checks they divide by 4). The host maps A and B onto X and Y either way
// round (C = A·B, or Cᵀ = Bᵀ·Aᵀ), through strides: no copy. See src/gpu/tuning.rs.

struct Params {
    rows: u32,    // rows of C (i)
    cols: u32,    // columns of C (j)
    k: u32,
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
    bias: u32,    // 0: none, 1: bias[j], 2: bias[i]; | 4: ReLU after it
    alpha: f32,
    c_rs: u32,    // C[z, i, j] = c[z1*c_bs1 + z2*c_bs2 + i*c_rs + j*c_cs]
    c_cs: u32,
    c_bs1: u32,
    c_bs2: u32,
    _unused: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

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

@compute @workgroup_size(64)
fn matmul_k4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let z = wid.z + p.z0;
    let z1 = z / p.nb2;
    let z2 = z - z1 * p.nb2;
    let x_off = p.x_base + z1 * p.x_bs1 + z2 * p.x_bs2;
    let y_off = p.y_base + z1 * p.y_bs1 + z2 * p.y_bs2;
    let j0 = wid.x * 256u + lid.x;
    let i0 = wid.y * 4u;
    // Out-of-range columns and rows compute on valid ones and are not written.
    let lastj = p.cols - 1u;
    let y0 = y_off + min(j0, lastj) * p.y_cs;
    let y1 = y_off + min(j0 + 64u, lastj) * p.y_cs;
    let y2 = y_off + min(j0 + 128u, lastj) * p.y_cs;
    let y3 = y_off + min(j0 + 192u, lastj) * p.y_cs;
    let lasti = p.rows - 1u;
    let x0 = x_off + min(i0, lasti) * p.x_rs;
    let x1 = x_off + min(i0 + 1u, lasti) * p.x_rs;
    let x2 = x_off + min(i0 + 2u, lasti) * p.x_rs;
    let x3 = x_off + min(i0 + 3u, lasti) * p.x_rs;
    // acc_r[c]: row i0 + r, column j0 + 64 c.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let b0 = y[y0 + k];
        let b1 = y[y1 + k];
        let b2 = y[y2 + k];
        let b3 = y[y3 + k];
        let a0 = x[x0 + k];
        let a1 = x[x1 + k];
        let a2 = x[x2 + k];
        let a3 = x[x3 + k];
        acc0 += vec4<f32>(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
        acc1 += vec4<f32>(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
        acc2 += vec4<f32>(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
        acc3 += vec4<f32>(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
    }
    let c_off = z1 * p.c_bs1 + z2 * p.c_bs2;
    for (var c = 0u; c < 4u; c++) {
        let j = j0 + 64u * c;
        if j < p.cols {
            store(c_off, i0, j, acc0[c]);
            store(c_off, i0 + 1u, j, acc1[c]);
            store(c_off, i0 + 2u, j, acc2[c]);
            store(c_off, i0 + 3u, j, acc3[c]);
        }
    }
}
