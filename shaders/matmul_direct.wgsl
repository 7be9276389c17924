// The direct kernel for any strides (shaders/include/matmul_direct_common.wgsl holds the
// params, the other bindings and the store): each invocation computes 8 rows of one column
// of C, one scalar load of Y and 8 of X per 8 multiply-adds. Used for the products the vec4
// kernels cannot read (a K or a width not a multiple of 4, odd strides); see
// src/gpu/tuning.rs.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;

@compute @workgroup_size(64)
fn matmul_direct(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let off = batch_offsets(wid.z);
    let x_off = off.x;
    let y_off = off.y;
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
    let c_off = off.z;
    store(c_off, i0 + 0u, j, acc0);
    store(c_off, i0 + 1u, j, acc1);
    store(c_off, i0 + 2u, j, acc2);
    store(c_off, i0 + 3u, j, acc3);
    store(c_off, i0 + 4u, j, acc4);
    store(c_off, i0 + 5u, j, acc5);
    store(c_off, i0 + 6u, j, acc6);
    store(c_off, i0 + 7u, j, acc7);
}
