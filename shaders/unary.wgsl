// Elementwise y = f(x), one invocation per element. Every f is exactly rounded (or a select),
// so the GPU gives the CPU path's bits:
//   op 0: relu      y = x < 0 ? 0 : x   (NaN stays NaN, as torch.relu)
//   op 1: scale     y = x * alpha
//   op 2: dropout   y = keep ? x * alpha : 0, keep = u >= threshold for u the 24-bit uniform
//                   of a counter-based hash of (seed, offset + i): the stream of `wgnn::Generator`.
//   op 3: uniform   y = x + u * 2^-24: the stream as floats in [0, 1). The product is exact, so
//                   a compiler that fuses it with the add changes nothing (scaling to other
//                   bounds is a separate op: a fused multiply-add could round differently).

struct Params {
    count: u32,
    row_width: u32,
    op: u32,
    alpha: f32,
    seed_lo: u32,
    seed_hi: u32,
    offset_lo: u32,
    offset_hi: u32,
    threshold: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// Chris Wellons' lowbias32 integer hash.
fn mix32(v: u32) -> u32 {
    var h = v;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

// The 24-bit uniform integer of element `i` (mirrors `Generator::uniform24` on the host).
fn uniform24(i: u32) -> u32 {
    let lo = p.offset_lo + i;
    let carry = select(0u, 1u, lo < i);
    let hi = p.offset_hi + carry;
    var h = mix32(lo ^ p.seed_lo);
    h = mix32(h ^ hi ^ 0x9e3779b9u);
    h = mix32(h ^ p.seed_hi);
    return h >> 8u;
}

@compute @workgroup_size(256)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    let v = x[i];
    switch p.op {
        case 0u: {
            y[i] = select(v, 0.0, v < 0.0);
        }
        case 1u: {
            y[i] = v * p.alpha;
        }
        case 2u: {
            y[i] = select(0.0, v * p.alpha, uniform24(i) >= p.threshold);
        }
        default: {
            y[i] = v + f32(uniform24(i)) * 5.9604645e-8;
        }
    }
}
