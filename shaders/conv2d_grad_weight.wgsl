// conv2d's gradient with respect to its weight, as an implicit GEMM over the output pixels:
// dw[o, k] = Σ_{n, oy, ox} g[n, o, oy, ox] · X̃[(n, oy, ox), k], k = (c, i, j), X̃ the input
// read through the convolution's index map. Each invocation holds 4 output channels × 4
// consecutive k of one group, summed over one slice of the batch (`splits` slices write
// partial sums [splits, O, C/g·KH·KW], which the host sums). src_a = x [N, C, H, W],
// src_b = g [N, O, OH, OW], dst = the partial sums.

@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read> src_unused: array<f32>;

@compute @workgroup_size(256)
fn conv2d_grad_weight(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = gid.y * p.row_width + gid.x;
    if id >= p.blocks {
        return;
    }
    let kb = (p.kk + 3u) / 4u;
    let ogb = (p.og + 3u) / 4u;
    let k0 = (id % kb) * 4u;
    let t = id / kb;
    let ob = t % (p.groups * ogb);
    let split = t / (p.groups * ogb);
    let grp = ob / ogb;
    let j0 = (ob % ogb) * 4u;
    let taps = p.kh * p.kw;
    // The four k's input channel (within the group), tap row and tap column.
    var kc: array<u32, 4>;
    var ki: array<u32, 4>;
    var kj: array<u32, 4>;
    for (var q = 0u; q < 4u; q++) {
        let k = min(k0 + q, p.kk - 1u);
        kc[q] = grp * p.cg + k / taps;
        ki[q] = (k % taps) / p.kw;
        kj[q] = k % p.kw;
    }
    let go0 = grp * p.og + min(j0, p.og - 1u);
    let go1 = grp * p.og + min(j0 + 1u, p.og - 1u);
    let go2 = grp * p.og + min(j0 + 2u, p.og - 1u);
    let go3 = grp * p.og + min(j0 + 3u, p.og - 1u);
    let plane = p.oh * p.ow;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let n_end = min((split + 1u) * p.per_split, p.n);
    for (var n = split * p.per_split; n < n_end; n++) {
        let g0 = (n * p.o + go0) * plane;
        let g1 = (n * p.o + go1) * plane;
        let g2 = (n * p.o + go2) * plane;
        let g3 = (n * p.o + go3) * plane;
        for (var oy = 0u; oy < p.oh; oy++) {
            // Each k's input row (or -1 outside the input).
            var rows: array<i32, 4>;
            for (var q = 0u; q < 4u; q++) {
                let y = i32(oy * p.sh + ki[q] * p.dh) - i32(p.ph);
                rows[q] = select(-1, i32((n * p.c + kc[q]) * p.h) + y, y >= 0 && y < i32(p.h));
            }
            for (var ox = 0u; ox < p.ow; ox++) {
                let at = oy * p.ow + ox;
                let gv = vec4<f32>(src_b[g0 + at], src_b[g1 + at], src_b[g2 + at], src_b[g3 + at]);
                var xv: array<f32, 4>;
                for (var q = 0u; q < 4u; q++) {
                    let x = i32(ox * p.sw + kj[q] * p.dw) - i32(p.pw);
                    let ok = rows[q] >= 0;
                    let row = u32(select(0, rows[q], ok)) * p.w;
                    xv[q] = select(0.0, padded_a(row, x, p.w), ok);
                }
                acc0 += xv[0] * gv;
                acc1 += xv[1] * gv;
                acc2 += xv[2] * gv;
                acc3 += xv[3] * gv;
            }
        }
    }
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < 4u; r++) {
        if j0 + r >= p.og {
            break;
        }
        let base = (split * p.o + grp * p.og + j0 + r) * p.kk;
        for (var q = 0u; q < 4u; q++) {
            if k0 + q < p.kk {
                dst[base + k0 + q] = accs[q][r];
            }
        }
    }
}
