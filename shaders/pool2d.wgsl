// Pooling over planes of h × w (max, average, adaptive average) and the gradients, one
// invocation per output element (forward) or input element (backward). The loops are
// PyTorch's CPU loops (src/ops/pool.rs): windows in row-major order, the maximum replaced on
// `>` or NaN, float32 sums in window order, adaptive windows [⌊o·I/O⌋, ⌈(o+1)·I/O⌉) divided by
// their height then their width; a gradient gathers its windows in output order. The same
// bits as the CPU.

struct Params {
    op: u32,
    count: u32,
    row_width: u32,
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    include_pad: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<u32>;

// [start, end) of window o along one dimension, and the count the divisor uses.
fn window(o: u32, size: u32, out: u32, k: u32, s: u32, pad: u32) -> vec3<u32> {
    if p.op == POOL_ADAPTIVE || p.op == POOL_ADAPTIVE_BACKWARD {
        let start = o * size / out;
        let end = ((o + 1u) * size + out - 1u) / out;
        return vec3<u32>(start, end, end - start);
    }
    let lo = i32(o * s) - i32(pad);
    let hi_padded = min(lo + i32(k), i32(size + pad));
    let a = max(lo, 0);
    let b = max(min(lo + i32(k), i32(size)), a);
    return vec3<u32>(u32(a), u32(b), u32(hi_padded - lo));
}

fn win_h(o: u32) -> vec3<u32> {
    return window(o, p.h, p.oh, p.kh, p.sh, p.ph);
}

fn win_w(o: u32) -> vec3<u32> {
    return window(o, p.w, p.ow, p.kw, p.sw, p.pw);
}

// The maximum of window (oy, ox) of the plane at `base`, and its flat index in the plane.
fn max_of(base: u32, oy: u32, ox: u32) -> vec2<u32> {
    let wy = win_h(oy);
    let wx = win_w(ox);
    var best = f32_bits(0xff800000u);
    var at = wy.x * p.w + wx.x;
    for (var yy = wy.x; yy < wy.y; yy++) {
        for (var xx = wx.x; xx < wx.y; xx++) {
            let v = x[base + yy * p.w + xx];
            // A NaN by its bits (compilers may fold `v != v` away).
            let nan = (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
            if v > best || nan {
                best = v;
                at = yy * p.w + xx;
            }
        }
    }
    return vec2<u32>(bitcast<u32>(best), at);
}

fn mean_of(base: u32, oy: u32, ox: u32) -> f32 {
    let wy = win_h(oy);
    let wx = win_w(ox);
    if wy.x >= wy.y || wx.x >= wx.y {
        return 0.0;
    }
    var sum = 0.0;
    for (var yy = wy.x; yy < wy.y; yy++) {
        for (var xx = wx.x; xx < wx.y; xx++) {
            sum += x[base + yy * p.w + xx];
        }
    }
    if p.op == POOL_ADAPTIVE {
        return sum / f32(wy.z) / f32(wx.z);
    }
    let div = select((wy.y - wy.x) * (wx.y - wx.x), wy.z * wx.z, p.include_pad == 1u);
    return sum / f32(div);
}

// The output rows (or columns) whose windows may hold input row i: [lo, hi).
fn holders(i: u32, out: u32, k: u32, s: u32, pad: u32) -> vec2<u32> {
    if p.op == POOL_ADAPTIVE_BACKWARD {
        return vec2<u32>(0u, out);
    }
    let hi = (i + pad) / s;
    let lo = (u32(max(i32(i + pad + 1u) - i32(k), 0)) + s - 1u) / s;
    return vec2<u32>(lo, min(hi + 1u, out));
}

fn backward(plane: u32, iy: u32, ix: u32) -> f32 {
    let hy = holders(iy, p.oh, p.kh, p.sh, p.ph);
    let hx = holders(ix, p.ow, p.kw, p.sw, p.pw);
    let xbase = plane * p.h * p.w;
    let gbase = plane * p.oh * p.ow;
    var sum = 0.0;
    for (var oy = hy.x; oy < hy.y; oy++) {
        let wy = win_h(oy);
        if iy < wy.x || iy >= wy.y {
            continue;
        }
        for (var ox = hx.x; ox < hx.y; ox++) {
            let wx = win_w(ox);
            if ix < wx.x || ix >= wx.y {
                continue;
            }
            let gv = g[gbase + oy * p.ow + ox];
            switch p.op {
                case POOL_MAX_BACKWARD: {
                    if max_of(xbase, oy, ox).y == iy * p.w + ix {
                        sum += gv;
                    }
                }
                case POOL_AVG_BACKWARD: {
                    let div = select((wy.y - wy.x) * (wx.y - wx.x), wy.z * wx.z,
                        p.include_pad == 1u);
                    sum += gv / f32(div);
                }
                default: {
                    sum += gv / f32(wy.z) / f32(wx.z);
                }
            }
        }
    }
    return sum;
}

@compute @workgroup_size(256)
fn pool2d(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    switch p.op {
        case POOL_MAX_BACKWARD, POOL_AVG_BACKWARD, POOL_ADAPTIVE_BACKWARD: {
            let ip = p.h * p.w;
            let at = i % ip;
            y[i] = bitcast<u32>(backward(i / ip, at / p.w, at % p.w));
        }
        default: {
            let op = p.oh * p.ow;
            let plane = i / op;
            let at = i % op;
            let base = plane * p.h * p.w;
            if p.op == POOL_MAX {
                y[i] = max_of(base, at / p.ow, at % p.ow).x;
            } else if p.op == POOL_MAX_INDEX {
                y[2u * i] = max_of(base, at / p.ow, at % p.ow).y;
                y[2u * i + 1u] = 0u;
            } else {
                y[i] = bitcast<u32>(mean_of(base, at / p.ow, at % p.ow));
            }
        }
    }
}
