// conv2d as an implicit GEMM with 8 × 16 register blocks: 8 neighbouring pixels of one output
// row × 16 output channels of one group per invocation (8 when a group has 8 left), the weights
// pre-transposed to [groups, C/g·KH·KW, O/g] so the channels of a tap are four vec4 loads:
// every tap takes 8 input and 4 weight loads for 128 multiply-adds (conv2d.wgsl: 8 for 16),
// and at stride 1 one input load per tap past a row's first, which is what a CPU rasteriser
// pays for (src/gpu/tuning.rs). Measured on lavapipe, alternating runs at batch 128: 8
// channels 16.6 / 18.5 / 19.0 GF/s on the ResNet's three 3 × 3 layers, 16 channels 17.2-18.3 /
// 20.7-21.2 / 21.8-23.1. For O/g a multiple of 8. src_a = x [N, C, H, W], src_b = wᵀ as vec4s,
// src_bias = bias [O] (flags 1), dst = y [N, O, OH, OW].

@group(0) @binding(2) var<storage, read> src_b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> src_bias: array<f32>;

@compute @workgroup_size(256)
fn conv2d_t8(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = gid.y * p.row_width + gid.x;
    if id >= p.blocks {
        return;
    }
    let blk = block_of(id, p.oh, p.ow, 8u, p.og, 16u);
    let n = blk.n;
    let oy = blk.y;
    let ox0 = blk.x0;
    let grp = blk.grp;
    let j0 = blk.c0;
    let og4 = p.og / 4u;
    let wbase = grp * p.kk * og4 + j0 / 4u;
    // Channels j0 + 8 … j0 + 15 (vec4s 2 and 3 of a tap) exist unless the group has only 8
    // left: then they repeat channels j0 … j0 + 7 and are not written.
    let cd = select(2u, 0u, j0 + 16u > p.og);
    let s = i32(p.sw);
    // lo_q / hi_q / e_q / f_q: channels j0 … j0+3 / +4 … +7 / +8 … +11 / +12 … +15 of pixel
    // ox0 + q (named, not an array: a CPU rasteriser keeps a dynamically indexed array in
    // memory).
    var lo0 = vec4<f32>(0.0);
    var hi0 = vec4<f32>(0.0);
    var e0 = vec4<f32>(0.0);
    var f0 = vec4<f32>(0.0);
    var lo1 = vec4<f32>(0.0);
    var hi1 = vec4<f32>(0.0);
    var e1 = vec4<f32>(0.0);
    var f1 = vec4<f32>(0.0);
    var lo2 = vec4<f32>(0.0);
    var hi2 = vec4<f32>(0.0);
    var e2 = vec4<f32>(0.0);
    var f2 = vec4<f32>(0.0);
    var lo3 = vec4<f32>(0.0);
    var hi3 = vec4<f32>(0.0);
    var e3 = vec4<f32>(0.0);
    var f3 = vec4<f32>(0.0);
    var lo4 = vec4<f32>(0.0);
    var hi4 = vec4<f32>(0.0);
    var e4 = vec4<f32>(0.0);
    var f4 = vec4<f32>(0.0);
    var lo5 = vec4<f32>(0.0);
    var hi5 = vec4<f32>(0.0);
    var e5 = vec4<f32>(0.0);
    var f5 = vec4<f32>(0.0);
    var lo6 = vec4<f32>(0.0);
    var hi6 = vec4<f32>(0.0);
    var e6 = vec4<f32>(0.0);
    var f6 = vec4<f32>(0.0);
    var lo7 = vec4<f32>(0.0);
    var hi7 = vec4<f32>(0.0);
    var e7 = vec4<f32>(0.0);
    var f7 = vec4<f32>(0.0);
    if p.sw == 1u && p.dw == 1u {
        // Stride 1, dilation 1: tap j + 1 of pixel q reads what tap j of pixel q + 1 read, so
        // the 8 values slide by one and each further tap loads one: per input row
        // 8 + KW - 1 input loads and 2·KW weight loads for 64·KW multiply-adds.
        let xb = i32(ox0) - i32(p.pw);
        for (var c = 0u; c < p.cg; c++) {
            let plane = (n * p.c + grp * p.cg + c) * p.h;
            for (var i = 0u; i < p.kh; i++) {
                let y = i32(oy * p.sh + i * p.dh) - i32(p.ph);
                if y < 0 || y >= i32(p.h) {
                    continue;
                }
                let row = (plane + u32(y)) * p.w;
                let kb = wbase + (c * p.kh + i) * p.kw * og4;
                var v0 = padded_a(row, xb + 0, p.w);
                var v1 = padded_a(row, xb + 1, p.w);
                var v2 = padded_a(row, xb + 2, p.w);
                var v3 = padded_a(row, xb + 3, p.w);
                var v4 = padded_a(row, xb + 4, p.w);
                var v5 = padded_a(row, xb + 5, p.w);
                var v6 = padded_a(row, xb + 6, p.w);
                var v7 = padded_a(row, xb + 7, p.w);
                for (var j = 0u; j < p.kw; j++) {
                    let wa = src_b[kb + j * og4];
                    let wb = src_b[kb + j * og4 + 1u];
                    let wc = src_b[kb + j * og4 + cd];
                    let wd = src_b[kb + j * og4 + cd + 1u];
                    lo0 += v0 * wa;
                    hi0 += v0 * wb;
                    e0 += v0 * wc;
                    f0 += v0 * wd;
                    lo1 += v1 * wa;
                    hi1 += v1 * wb;
                    e1 += v1 * wc;
                    f1 += v1 * wd;
                    lo2 += v2 * wa;
                    hi2 += v2 * wb;
                    e2 += v2 * wc;
                    f2 += v2 * wd;
                    lo3 += v3 * wa;
                    hi3 += v3 * wb;
                    e3 += v3 * wc;
                    f3 += v3 * wd;
                    lo4 += v4 * wa;
                    hi4 += v4 * wb;
                    e4 += v4 * wc;
                    f4 += v4 * wd;
                    lo5 += v5 * wa;
                    hi5 += v5 * wb;
                    e5 += v5 * wc;
                    f5 += v5 * wd;
                    lo6 += v6 * wa;
                    hi6 += v6 * wb;
                    e6 += v6 * wc;
                    f6 += v6 * wd;
                    lo7 += v7 * wa;
                    hi7 += v7 * wb;
                    e7 += v7 * wc;
                    f7 += v7 * wd;
                    v0 = v1;
                    v1 = v2;
                    v2 = v3;
                    v3 = v4;
                    v4 = v5;
                    v5 = v6;
                    v6 = v7;
                    v7 = padded_a(row, xb + i32(j) + 8, p.w);
                }
            }
        }
    } else {
        // Tap columns outermost: each pixel's column and whether it is inside the input depend on
        // the tap column alone, so they are worked out once per tap column, not per load.
        for (var j = 0u; j < p.kw; j++) {
            let xb = i32(ox0 * p.sw + j * p.dw) - i32(p.pw);
            let x0 = xb + 0 * s;
            let ok0 = x0 >= 0 && x0 < i32(p.w);
            let at0 = u32(select(0, x0, ok0));
            let x1 = xb + 1 * s;
            let ok1 = x1 >= 0 && x1 < i32(p.w);
            let at1 = u32(select(0, x1, ok1));
            let x2 = xb + 2 * s;
            let ok2 = x2 >= 0 && x2 < i32(p.w);
            let at2 = u32(select(0, x2, ok2));
            let x3 = xb + 3 * s;
            let ok3 = x3 >= 0 && x3 < i32(p.w);
            let at3 = u32(select(0, x3, ok3));
            let x4 = xb + 4 * s;
            let ok4 = x4 >= 0 && x4 < i32(p.w);
            let at4 = u32(select(0, x4, ok4));
            let x5 = xb + 5 * s;
            let ok5 = x5 >= 0 && x5 < i32(p.w);
            let at5 = u32(select(0, x5, ok5));
            let x6 = xb + 6 * s;
            let ok6 = x6 >= 0 && x6 < i32(p.w);
            let at6 = u32(select(0, x6, ok6));
            let x7 = xb + 7 * s;
            let ok7 = x7 >= 0 && x7 < i32(p.w);
            let at7 = u32(select(0, x7, ok7));
            for (var c = 0u; c < p.cg; c++) {
                let plane = (n * p.c + grp * p.cg + c) * p.h;
                for (var i = 0u; i < p.kh; i++) {
                    let y = i32(oy * p.sh + i * p.dh) - i32(p.ph);
                    if y < 0 || y >= i32(p.h) {
                        continue;
                    }
                    let row = (plane + u32(y)) * p.w;
                    let wk = wbase + ((c * p.kh + i) * p.kw + j) * og4;
                    let wa = src_b[wk];
                    let wb = src_b[wk + 1u];
                    let wc = src_b[wk + cd];
                    let wd = src_b[wk + cd + 1u];
                    let v0 = select(0.0, src_a[row + at0], ok0);
                    let v1 = select(0.0, src_a[row + at1], ok1);
                    let v2 = select(0.0, src_a[row + at2], ok2);
                    let v3 = select(0.0, src_a[row + at3], ok3);
                    let v4 = select(0.0, src_a[row + at4], ok4);
                    let v5 = select(0.0, src_a[row + at5], ok5);
                    let v6 = select(0.0, src_a[row + at6], ok6);
                    let v7 = select(0.0, src_a[row + at7], ok7);
                    lo0 += v0 * wa;
                    hi0 += v0 * wb;
                    e0 += v0 * wc;
                    f0 += v0 * wd;
                    lo1 += v1 * wa;
                    hi1 += v1 * wb;
                    e1 += v1 * wc;
                    f1 += v1 * wd;
                    lo2 += v2 * wa;
                    hi2 += v2 * wb;
                    e2 += v2 * wc;
                    f2 += v2 * wd;
                    lo3 += v3 * wa;
                    hi3 += v3 * wb;
                    e3 += v3 * wc;
                    f3 += v3 * wd;
                    lo4 += v4 * wa;
                    hi4 += v4 * wb;
                    e4 += v4 * wc;
                    f4 += v4 * wd;
                    lo5 += v5 * wa;
                    hi5 += v5 * wb;
                    e5 += v5 * wc;
                    f5 += v5 * wd;
                    lo6 += v6 * wa;
                    hi6 += v6 * wb;
                    e6 += v6 * wc;
                    f6 += v6 * wd;
                    lo7 += v7 * wa;
                    hi7 += v7 * wb;
                    e7 += v7 * wc;
                    f7 += v7 * wd;
                }
            }
        }
    }
    let o0 = grp * p.og + j0;
    let es = array<vec4<f32>, 8>(e0, e1, e2, e3, e4, e5, e6, e7);
    let fs = array<vec4<f32>, 8>(f0, f1, f2, f3, f4, f5, f6, f7);
    let los = array<vec4<f32>, 8>(lo0, lo1, lo2, lo3, lo4, lo5, lo6, lo7);
    let his = array<vec4<f32>, 8>(hi0, hi1, hi2, hi3, hi4, hi5, hi6, hi7);
    for (var q = 0u; q < 8u; q++) {
        if ox0 + q >= p.ow {
            break;
        }
        let vals = array<vec4<f32>, 4>(los[q], his[q], es[q], fs[q]);
        for (var r = 0u; r < min(16u, p.og - j0); r++) {
            var v = vals[r / 4u][r % 4u];
            if p.flags == 1u {
                v += src_bias[o0 + r];
            }
            dst[((n * p.o + o0 + r) * p.oh + oy) * p.ow + ox0 + q] = v;
        }
    }
}
