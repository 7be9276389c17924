// conv2d's gradient with respect to its input, as an implicit GEMM over the output channels
// and kernel taps: dx[n, c, y, x] = Σ_{o, i, j} g[n, o, (y + ph - i·dh) / sh, (x + pw - j·dw) / sw]
// · w[o, c, i, j], over the taps whose division is exact and lands inside the output. Each
// invocation holds 4 neighbouring input columns × 4 input channels of one group.
// src_a = g [N, O, OH, OW], src_b = w [O, C/g, KH, KW], dst = dx [N, C, H, W].

@group(0) @binding(2) var<storage, read> src_b: array<f32>;
@group(0) @binding(3) var<storage, read> src_unused: array<f32>;

// g at output row `grow`, for input column x at tap column j (0 where no output reads it).
fn tap(grow: u32, x: u32, j: u32) -> f32 {
    let t = i32(x + p.pw) - i32(j * p.dw);
    let s = i32(p.sw);
    let ok = t >= 0 && t % s == 0 && t / s < i32(p.ow);
    let v = src_a[grow + u32(select(0, t / s, ok))];
    return select(0.0, v, ok);
}

@compute @workgroup_size(256)
fn conv2d_grad_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = gid.y * p.row_width + gid.x;
    if id >= p.blocks {
        return;
    }
    let blk = block_of(id, p.h, p.w, 4u, p.cg, 4u);
    let n = blk.n;
    let y = blk.y;
    let x0 = blk.x0;
    let grp = blk.grp;
    let c0 = blk.c0;
    let taps = p.kh * p.kw;
    let k0 = min(c0, p.cg - 1u) * taps;
    let k1 = min(c0 + 1u, p.cg - 1u) * taps;
    let k2 = min(c0 + 2u, p.cg - 1u) * taps;
    let k3 = min(c0 + 3u, p.cg - 1u) * taps;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var jo = 0u; jo < p.og; jo++) {
        let o = grp * p.og + jo;
        let gplane = (n * p.o + o) * p.oh;
        let wbase = o * p.kk;
        for (var i = 0u; i < p.kh; i++) {
            let ty = i32(y + p.ph) - i32(i * p.dh);
            let sh = i32(p.sh);
            if ty < 0 || ty % sh != 0 || ty / sh >= i32(p.oh) {
                continue;
            }
            let grow = (gplane + u32(ty / sh)) * p.ow;
            for (var j = 0u; j < p.kw; j++) {
                let v0 = tap(grow, x0, j);
                let v1 = tap(grow, x0 + 1u, j);
                let v2 = tap(grow, x0 + 2u, j);
                let v3 = tap(grow, x0 + 3u, j);
                let k = wbase + i * p.kw + j;
                let b = vec4<f32>(src_b[k + k0], src_b[k + k1], src_b[k + k2], src_b[k + k3]);
                acc0 += v0 * b;
                acc1 += v1 * b;
                acc2 += v2 * b;
                acc3 += v3 * b;
            }
        }
    }
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < 4u; r++) {
        if c0 + r >= p.cg {
            break;
        }
        let base = ((n * p.c + grp * p.cg + c0 + r) * p.h + y) * p.w;
        for (var q = 0u; q < 4u; q++) {
            if x0 + q < p.w {
                dst[base + x0 + q] = accs[q][r];
            }
        }
    }
}
