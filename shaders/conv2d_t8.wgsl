// conv2d as an implicit GEMM with 8 × 8 register blocks: 8 neighbouring pixels of one output
// row × 8 output channels of one group per invocation, the weights pre-transposed to
// [groups, C/g·KH·KW, O/g] so the 8 channels of a tap are two vec4 loads: every tap takes 8
// input and 2 weight loads for 64 multiply-adds (conv2d.wgsl: 8 for 16), and at stride 1 one
// input load per tap past a row's first, which is what a CPU
// rasteriser pays for (src/gpu/tuning.rs). For O/g a multiple of 8. src_a = x [N, C, H, W],
// src_b = wᵀ as vec4s, src_bias = bias [O] (flags 1), dst = y [N, O, OH, OW].

@group(0) @binding(2) var<storage, read> src_b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> src_bias: array<f32>;

@compute @workgroup_size(256)
fn conv2d_t8(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = gid.y * p.row_width + gid.x;
    if id >= p.blocks {
        return;
    }
    let blk = block_of(id, p.oh, p.ow, 8u, p.og, 8u);
    let n = blk.n;
    let oy = blk.y;
    let ox0 = blk.x0;
    let grp = blk.grp;
    let j0 = blk.c0;
    let og4 = p.og / 4u;
    let wbase = grp * p.kk * og4 + j0 / 4u;
    let s = i32(p.sw);
    // lo_q / hi_q: channels j0..j0+3 / j0+4..j0+7 of pixel ox0 + q (named, not an array: a
    // CPU rasteriser keeps a dynamically indexed array in memory).
    var lo0 = vec4<f32>(0.0);
    var hi0 = vec4<f32>(0.0);
    var lo1 = vec4<f32>(0.0);
    var hi1 = vec4<f32>(0.0);
    var lo2 = vec4<f32>(0.0);
    var hi2 = vec4<f32>(0.0);
    var lo3 = vec4<f32>(0.0);
    var hi3 = vec4<f32>(0.0);
    var lo4 = vec4<f32>(0.0);
    var hi4 = vec4<f32>(0.0);
    var lo5 = vec4<f32>(0.0);
    var hi5 = vec4<f32>(0.0);
    var lo6 = vec4<f32>(0.0);
    var hi6 = vec4<f32>(0.0);
    var lo7 = vec4<f32>(0.0);
    var hi7 = vec4<f32>(0.0);
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
                    lo0 += v0 * wa;
                    hi0 += v0 * wb;
                    lo1 += v1 * wa;
                    hi1 += v1 * wb;
                    lo2 += v2 * wa;
                    hi2 += v2 * wb;
                    lo3 += v3 * wa;
                    hi3 += v3 * wb;
                    lo4 += v4 * wa;
                    hi4 += v4 * wb;
                    lo5 += v5 * wa;
                    hi5 += v5 * wb;
                    lo6 += v6 * wa;
                    hi6 += v6 * wb;
                    lo7 += v7 * wa;
                    hi7 += v7 * wb;
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
                    lo1 += v1 * wa;
                    hi1 += v1 * wb;
                    lo2 += v2 * wa;
                    hi2 += v2 * wb;
                    lo3 += v3 * wa;
                    hi3 += v3 * wb;
                    lo4 += v4 * wa;
                    hi4 += v4 * wb;
                    lo5 += v5 * wa;
                    hi5 += v5 * wb;
                    lo6 += v6 * wa;
                    hi6 += v6 * wb;
                    lo7 += v7 * wa;
                    hi7 += v7 * wb;
                }
            }
        }
    }
    var bias_lo = vec4<f32>(0.0);
    var bias_hi = vec4<f32>(0.0);
    let o0 = grp * p.og + j0;
    if p.flags == 1u {
        bias_lo = vec4<f32>(src_bias[o0], src_bias[o0 + 1u], src_bias[o0 + 2u], src_bias[o0 + 3u]);
        bias_hi = vec4<f32>(src_bias[o0 + 4u], src_bias[o0 + 5u], src_bias[o0 + 6u],
            src_bias[o0 + 7u]);
    }
    let los = array<vec4<f32>, 8>(lo0, lo1, lo2, lo3, lo4, lo5, lo6, lo7);
    let his = array<vec4<f32>, 8>(hi0, hi1, hi2, hi3, hi4, hi5, hi6, hi7);
    for (var q = 0u; q < 8u; q++) {
        if ox0 + q >= p.ow {
            break;
        }
        let a = los[q] + bias_lo;
        let b = his[q] + bias_hi;
        for (var r = 0u; r < 4u; r++) {
            dst[((n * p.o + o0 + r) * p.oh + oy) * p.ow + ox0 + q] = a[r];
            dst[((n * p.o + o0 + 4u + r) * p.oh + oy) * p.ow + ox0 + q] = b[r];
        }
    }
}
