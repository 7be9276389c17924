// The direct kernel for operands both contiguous along K (X[i, k..k+4] and Y[k..k+4, j]
// each one aligned vec4: x·Wᵀ of a linear layer, q·kᵀ): each invocation computes a 4 × 4
// block of C (rows i0..i0+3, columns j, j+64, j+128, j+192), 64 invocations a 4 × 256 block;
// every four values of K take 8 vec4 loads for 64 multiply-adds. CPU rasterisers (Mesa 22's
// lavapipe) load storage and workgroup memory one invocation at a time whatever the address,
// so what a kernel pays there is its load instructions, whatever their width; GPUs like wide
// loads too. Params, the other bindings and the store: shaders/include/matmul_direct_common.wgsl.

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> y: array<vec4<f32>>;

@compute @workgroup_size(64)
fn matmul_k4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let off = batch_offsets(wid.z);
    let x_off = off.x;
    let y_off = off.y;
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
    let c_off = off.z;
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
