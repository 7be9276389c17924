// conv2d as an implicit GEMM: C[pixel, channel] = Σ_k X̃[pixel, k] · W[channel, k], with X̃ the
// input read through the convolution's index map (k = (c, i, j), zero outside the input), so
// no unfolded copy of the input exists. Each invocation holds a 4 × 4 block: 4 neighbouring
// pixels of one output row × 4 output channels of one group; every kernel tap takes 4 input
// and 4 weight loads for 16 multiply-adds. src_a = x [N, C, H, W], src_b = w [O, C/g, KH, KW],
// src_bias = bias [O] (when flags is 1), dst = y [N, O, OH, OW].

@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read> src_bias: array<f32>;

@compute @workgroup_size(256)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = gid.y * p.row_width + gid.x;
    if id >= p.blocks {
        return;
    }
    let blk = block_of(id, p.oh, p.ow, 4u, p.og, 4u);
    let n = blk.n;
    let oy = blk.y;
    let ox0 = blk.x0;
    let grp = blk.grp;
    let j0 = blk.c0;
    // Channels past the group's last compute on the last one and are not written.
    let o0 = grp * p.og + min(j0, p.og - 1u);
    let o1 = grp * p.og + min(j0 + 1u, p.og - 1u);
    let o2 = grp * p.og + min(j0 + 2u, p.og - 1u);
    let o3 = grp * p.og + min(j0 + 3u, p.og - 1u);
    let w0 = o0 * p.kk;
    let w1 = o1 * p.kk;
    let w2 = o2 * p.kk;
    let w3 = o3 * p.kk;
    let s = i32(p.sw);
    // acc_q: pixel ox0 + q, channels o0..o3.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = 0u; c < p.cg; c++) {
        let plane = (n * p.c + grp * p.cg + c) * p.h;
        for (var i = 0u; i < p.kh; i++) {
            let y = i32(oy * p.sh + i * p.dh) - i32(p.ph);
            if y < 0 || y >= i32(p.h) {
                continue;
            }
            let row = (plane + u32(y)) * p.w;
            let kbase = (c * p.kh + i) * p.kw;
            for (var j = 0u; j < p.kw; j++) {
                let x0 = i32(ox0 * p.sw + j * p.dw) - i32(p.pw);
                let v0 = padded_a(row, x0, p.w);
                let v1 = padded_a(row, x0 + s, p.w);
                let v2 = padded_a(row, x0 + 2 * s, p.w);
                let v3 = padded_a(row, x0 + 3 * s, p.w);
                let k = kbase + j;
                let b = vec4<f32>(src_b[w0 + k], src_b[w1 + k], src_b[w2 + k], src_b[w3 + k]);
                acc0 += v0 * b;
                acc1 += v1 * b;
                acc2 += v2 * b;
                acc3 += v3 * b;
            }
        }
    }
    var bias = vec4<f32>(0.0);
    if p.flags == 1u {
        bias = vec4<f32>(src_bias[o0], src_bias[o1], src_bias[o2], src_bias[o3]);
    }
    let accs = array<vec4<f32>, 4>(acc0 + bias, acc1 + bias, acc2 + bias, acc3 + bias);
    for (var r = 0u; r < 4u; r++) {
        if j0 + r >= p.og {
            break;
        }
        let base = ((n * p.o + grp * p.og + j0 + r) * p.oh + oy) * p.ow;
        for (var q = 0u; q < 4u; q++) {
            if ox0 + q < p.ow {
                dst[base + ox0 + q] = accs[q][r];
            }
        }
    }
}
