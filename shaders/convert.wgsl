// Conversions between float32, float16 and bfloat16 storage, bit for bit as the `half` crate
// on the CPU: round to nearest even, overflow to ±inf, subnormals kept, NaN stays NaN with its
// quiet bit set and the top of its payload kept. Done on the bits in integer arithmetic only,
// so no GPU rounding mode, flush of subnormals or NaN canonicalisation can change a result,
// and no adapter feature (SHADER_F16) is needed. 16-bit values are packed two to a u32 word,
// element 2k in the low half (little-endian, as the host's bytes). One invocation per output
// word: a word of a 16-bit output is written whole by one invocation, so no two race.

struct Params {
    // Output words.
    count: u32,
    row_width: u32,
    // Elements.
    n: u32,
    // FMT_F32, FMT_F16 or FMT_BF16.
    src: u32,
    dst: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

fn f16_to_f32(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let e = h & 0x7c00u;
    let m = h & 0x3ffu;
    if (h & 0x7fffu) == 0u {
        return sign;
    }
    if e == 0x7c00u {
        if m == 0u {
            return sign | 0x7f800000u;
        }
        return sign | 0x7fc00000u | (m << 13u);
    }
    if e == 0u {
        // A subnormal: normalised by its leading zeros within the 10-bit mantissa.
        let z = countLeadingZeros(m) - 22u;
        return sign | ((112u - z) << 23u) | ((m << (14u + z)) & 0x7fffffu);
    }
    return sign | (((e >> 10u) + 112u) << 23u) | (m << 13u);
}

fn f32_to_f16(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let e = b & 0x7f800000u;
    let m = b & 0x7fffffu;
    if e == 0x7f800000u {
        var quiet = 0u;
        if m != 0u {
            quiet = 0x200u;
        }
        return sign | 0x7c00u | quiet | (m >> 13u);
    }
    let he = i32(e >> 23u) - 112;
    if he >= 31 {
        return sign | 0x7c00u;
    }
    if he <= 0 {
        if 14 - he > 24 {
            return sign;
        }
        let mm = m | 0x800000u;
        let sh = u32(14 - he);
        var hm = mm >> sh;
        let round = 1u << (sh - 1u);
        if (mm & round) != 0u && (mm & (3u * round - 1u)) != 0u {
            hm += 1u;
        }
        return sign | hm;
    }
    let v = sign | (u32(he) << 10u) | (m >> 13u);
    if (m & 0x1000u) != 0u && (m & 0x2fffu) != 0u {
        return v + 1u;
    }
    return v;
}

fn bf16_to_f32(h: u32) -> u32 {
    if (h & 0x7fffu) > 0x7f80u {
        return (h | 0x40u) << 16u;
    }
    return h << 16u;
}

fn f32_to_bf16(b: u32) -> u32 {
    if (b & 0x7fffffffu) > 0x7f800000u {
        return ((b >> 16u) | 0x40u) & 0xffffu;
    }
    let r = b >> 16u;
    if (b & 0x8000u) != 0u && (b & 0x17fffu) != 0u {
        return r + 1u;
    }
    return r;
}

// The float32 bits of input element i.
fn load(i: u32) -> u32 {
    if p.src == FMT_F32 {
        return x[i];
    }
    let h = (x[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu;
    if p.src == FMT_F16 {
        return f16_to_f32(h);
    }
    return bf16_to_f32(h);
}

fn narrow(b: u32) -> u32 {
    if p.dst == FMT_F16 {
        return f32_to_f16(b);
    }
    return f32_to_bf16(b);
}

@compute @workgroup_size(256)
fn convert(@builtin(global_invocation_id) gid: vec3<u32>) {
    let w = gid.y * p.row_width + gid.x;
    if w >= p.count {
        return;
    }
    if p.dst == FMT_F32 {
        y[w] = load(w);
        return;
    }
    let e = 2u * w;
    var v = narrow(load(e));
    if e + 1u < p.n {
        v |= narrow(load(e + 1u)) << 16u;
    }
    y[w] = v;
}
