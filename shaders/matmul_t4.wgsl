// C[z] = alpha * X[z] · Y[z] (+ bias) for X contiguous along its rows (X[i..i+4, k] one
// aligned vec4: Aᵀ of a row-major A, as in a weight's gradient gᵀ·x) and Y along its columns
// (Y[k, j..j+4] one aligned vec4): each invocation accumulates the outer product of those
// two vec4s for every k, a 4 × 4 block of C from 2 loads per 16 multiply-adds, with no
// workgroup memory (see matmul_k4.wgsl for why loads are what counts). Its 64 invocations are
// `lanes_j` across column vec4s and 64 / lanes_j across row vec4s, chosen to fit C's width.
// Offsets and strides that index a vec4 array are counted in vec4 (the host checks they
// divide by 4).

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
    lanes_j: u32, // invocations across column vec4s (a power of two up to 64)
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
fn matmul_t4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let z = wid.z + p.z0;
    let z1 = z / p.nb2;
    let z2 = z - z1 * p.nb2;
    let x_off = p.x_base + z1 * p.x_bs1 + z2 * p.x_bs2;
    let y_off = p.y_base + z1 * p.y_bs1 + z2 * p.y_bs2;
    let lj = p.lanes_j;
    let jq = wid.x * lj + lid.x % lj;
    let iq = wid.y * (64u / lj) + lid.x / lj;
    // Out-of-range blocks compute on valid ones and are not written.
    let xi = x_off + min(iq, p.rows / 4u - 1u);
    let yj = y_off + min(jq, p.cols / 4u - 1u);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let a = x[xi + k * p.x_cs];
        let b = y[yj + k * p.y_rs];
        acc0 += a.x * b;
        acc1 += a.y * b;
        acc2 += a.z * b;
        acc3 += a.w * b;
    }
    if 4u * iq >= p.rows || 4u * jq >= p.cols {
        return;
    }
    let c_off = z1 * p.c_bs1 + z2 * p.c_bs2;
    let i0 = 4u * iq;
    for (var c = 0u; c < 4u; c++) {
        let j = 4u * jq + c;
        store(c_off, i0, j, acc0[c]);
        store(c_off, i0 + 1u, j, acc1[c]);
        store(c_off, i0 + 2u, j, acc2[c]);
        store(c_off, i0 + 3u, j, acc3[c]);
    }
}
