// The direct kernel for X contiguous along K (X[i, k..k+4] one aligned vec4) and Y along its
// columns (Y[k, j..j+4] one aligned vec4): a dense A times a dense B. Each invocation computes
// an 8 × 4 block of C (rows i0..i0+7, columns j..j+3), 64 invocations an 8 × 256 block (with
// `lanes` non-zero, 64 consecutive row blocks of one column vec4: a 512 × 4 block, for a C a
// few columns wide); every four values of K take 12 vec4 loads for 128 multiply-adds (see
// matmul_k4.wgsl for why loads are what counts). Params, the other bindings and the store:
// shaders/include/matmul_direct_common.wgsl.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> y: array<vec4<f32>>;

@compute @workgroup_size(64)
fn matmul_n4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let off = batch_offsets(wid.z);
    let x_off = off.x;
    let y_off = off.y;
    // This invocation's vec4 of columns (4 jq .. 4 jq + 3).
    var jq = wid.x * 64u + lid.x;
    var i0 = wid.y * 8u;
    if p.lanes != 0u {
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
    let c_off = off.z;
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
