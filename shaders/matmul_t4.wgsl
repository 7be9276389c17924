// The direct kernel for X contiguous along its rows (X[i..i+4, k] one aligned vec4: Aᵀ of a
// row-major A, as in a weight's gradient gᵀ·x) and Y along its columns (Y[k, j..j+4] one
// aligned vec4): each invocation accumulates the outer product of those two vec4s for every k,
// a 4 × 4 block of C from 2 loads per 16 multiply-adds (see matmul_k4.wgsl for why loads are
// what counts). Its 64 invocations are `lanes` across column vec4s and 64 / lanes across row
// vec4s, chosen to fit C's width. Params, the other bindings and the store:
// shaders/include/matmul_direct_common.wgsl.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> y: array<vec4<f32>>;

@compute @workgroup_size(64)
fn matmul_t4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let off = batch_offsets(wid.z);
    let x_off = off.x;
    let y_off = off.y;
    let lj = p.lanes;
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
    let c_off = off.z;
    let i0 = 4u * iq;
    for (var c = 0u; c < 4u; c++) {
        let j = 4u * jq + c;
        store(c_off, i0, j, acc0[c]);
        store(c_off, i0 + 1u, j, acc1[c]);
        store(c_off, i0 + 2u, j, acc2[c]);
        store(c_off, i0 + 3u, j, acc3[c]);
    }
}
