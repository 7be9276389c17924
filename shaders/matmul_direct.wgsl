// C[z] = alpha * X[z] · Y[z] (+ bias) without workgroup memory or barriers: each invocation
// computes 8 rows of one column of C. The column j varies across a workgroup's 64
// invocations (Y is read at a different address by each: coalesced on a GPU), the rows i
// are the same for all of them (X is read at one address by the whole workgroup: a broadcast,
// which CPU rasterisers such as lavapipe load once for all their SIMD lanes). Used where the
// tiled kernel (matmul.wgsl) wastes most of its 16 × 256 block or its barriers dominate:
// small K, N or M (see src/gpu/tuning.rs). The host maps A and B onto X and Y either way round
// (C = A·B, or Cᵀ = Bᵀ·Aᵀ when A's rows are the long side), through strides: no copy.

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
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
fn matmul_direct(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let z = wid.z + p.z0;
    let z1 = z / p.nb2;
    let z2 = z - z1 * p.nb2;
    let x_off = p.x_base + z1 * p.x_bs1 + z2 * p.x_bs2;
    let y_off = p.y_base + z1 * p.y_bs1 + z2 * p.y_bs2;
    let j = wid.x * 64u + lid.x;
    let i0 = wid.y * 8u;
    // Out-of-range columns and rows compute on valid ones and are not written.
    let yc = y_off + min(j, p.cols - 1u) * p.y_cs;
    let last = p.rows - 1u;
    let x0 = x_off + min(i0 + 0u, last) * p.x_rs;
    let x1 = x_off + min(i0 + 1u, last) * p.x_rs;
    let x2 = x_off + min(i0 + 2u, last) * p.x_rs;
    let x3 = x_off + min(i0 + 3u, last) * p.x_rs;
    let x4 = x_off + min(i0 + 4u, last) * p.x_rs;
    let x5 = x_off + min(i0 + 5u, last) * p.x_rs;
    let x6 = x_off + min(i0 + 6u, last) * p.x_rs;
    let x7 = x_off + min(i0 + 7u, last) * p.x_rs;
    var acc0 = 0.0;
    var acc1 = 0.0;
    var acc2 = 0.0;
    var acc3 = 0.0;
    var acc4 = 0.0;
    var acc5 = 0.0;
    var acc6 = 0.0;
    var acc7 = 0.0;
    for (var k = 0u; k < p.k; k++) {
        let yv = y[yc + k * p.y_rs];
        let xk = k * p.x_cs;
        acc0 += x[x0 + xk] * yv;
        acc1 += x[x1 + xk] * yv;
        acc2 += x[x2 + xk] * yv;
        acc3 += x[x3 + xk] * yv;
        acc4 += x[x4 + xk] * yv;
        acc5 += x[x5 + xk] * yv;
        acc6 += x[x6 + xk] * yv;
        acc7 += x[x7 + xk] * yv;
    }
    if j >= p.cols {
        return;
    }
    let c_off = z1 * p.c_bs1 + z2 * p.c_bs2;
    store(c_off, i0 + 0u, j, acc0);
    store(c_off, i0 + 1u, j, acc1);
    store(c_off, i0 + 2u, j, acc2);
    store(c_off, i0 + 3u, j, acc3);
    store(c_off, i0 + 4u, j, acc4);
    store(c_off, i0 + 5u, j, acc5);
    store(c_off, i0 + 6u, j, acc6);
    store(c_off, i0 + 7u, j, acc7);
}
