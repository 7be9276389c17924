// C[z] = alpha * X[z] · Y[z] (+ bias) for X contiguous along K (X[i, k..k+4] one aligned
// vec4) and Y contiguous along its columns (Y[k, j..j+4] one aligned vec4): a dense A times a
// dense B. Without workgroup memory: each invocation computes an 8 × 4 block of C (rows
// i0..i0+7, columns j..j+3), 64 invocations an 8 × 256 block; every four values of K take 12
// vec4 loads for 128 multiply-adds (see matmul_k4.wgsl for why loads are what counts).
// Offsets, strides, K and the column count are counted in vec4 where they index a vec4 array
// (the host checks they divide by 4). With `lanes_on_rows` the 64 invocations take 64
// consecutive row blocks of one vec4 of columns instead (a 512 × 4 block): for a C only a
// few columns wide.

struct Params {
    rows: u32,    // rows of C (i)
    cols: u32,    // columns of C (j), a multiple of 4
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
    lanes_on_rows: u32,
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
fn matmul_n4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let z = wid.z + p.z0;
    let z1 = z / p.nb2;
    let z2 = z - z1 * p.nb2;
    let x_off = p.x_base + z1 * p.x_bs1 + z2 * p.x_bs2;
    let y_off = p.y_base + z1 * p.y_bs1 + z2 * p.y_bs2;
    // This invocation's vec4 of columns (4 jq .. 4 jq + 3).
    var jq = wid.x * 64u + lid.x;
    var i0 = wid.y * 8u;
    if p.lanes_on_rows != 0u {
        jq = wid.x;
        i0 = (wid.y * 64u + lid.x) * 8u;
    }
    let yc = y_off + min(jq, p.cols / 4u - 1u);
    let lasti = p.rows - 1u;
    let x0 = x_off + min(i0, lasti) * p.x_rs;
    let x1 = x_off + min(i0 + 1u, lasti) * p.x_rs;
    let x2 = x_off + min(i0 + 2u, lasti) * p.x_rs;
    let x3 = x_off + min(i0 + 3u, lasti) * p.x_rs;
    let x4 = x_off + min(i0 + 4u, lasti) * p.x_rs;
    let x5 = x_off + min(i0 + 5u, lasti) * p.x_rs;
    let x6 = x_off + min(i0 + 6u, lasti) * p.x_rs;
    let x7 = x_off + min(i0 + 7u, lasti) * p.x_rs;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let row = yc + 4u * k * p.y_rs;
        let b0 = y[row];
        let b1 = y[row + p.y_rs];
        let b2 = y[row + 2u * p.y_rs];
        let b3 = y[row + 3u * p.y_rs];
        let a0 = x[x0 + k];
        let a1 = x[x1 + k];
        let a2 = x[x2 + k];
        let a3 = x[x3 + k];
        let a4 = x[x4 + k];
        let a5 = x[x5 + k];
        let a6 = x[x6 + k];
        let a7 = x[x7 + k];
        acc0 += a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
        acc1 += a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
        acc2 += a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
        acc3 += a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
        acc4 += a4.x * b0 + a4.y * b1 + a4.z * b2 + a4.w * b3;
        acc5 += a5.x * b0 + a5.y * b1 + a5.z * b2 + a5.w * b3;
        acc6 += a6.x * b0 + a6.y * b1 + a6.z * b2 + a6.w * b3;
        acc7 += a7.x * b0 + a7.y * b1 + a7.z * b2 + a7.w * b3;
    }
    if 4u * jq >= p.cols {
        return;
    }
    let c_off = z1 * p.c_bs1 + z2 * p.c_bs2;
    for (var c = 0u; c < 4u; c++) {
        let j = 4u * jq + c;
        store(c_off, i0, j, acc0[c]);
        store(c_off, i0 + 1u, j, acc1[c]);
        store(c_off, i0 + 2u, j, acc2[c]);
        store(c_off, i0 + 3u, j, acc3[c]);
        store(c_off, i0 + 4u, j, acc4[c]);
        store(c_off, i0 + 5u, j, acc5[c]);
        store(c_off, i0 + 6u, j, acc6[c]);
        store(c_off, i0 + 7u, j, acc7[c]);
    }
}
