// Elementwise y = f(x), one invocation per element. relu, scale, dropout, uniform, neg and clamp
// are exactly rounded (or a select), so the GPU gives the CPU path's bits; the math functions
// (exp, log, sqrt, rsqrt, pow, tanh, sigmoid, gelu, silu and the derivatives) use WGSL's
// builtins, which are not exactly rounded: bounded against the CPU (tests/math_ops.rs).
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
    beta: f32,
    _pad0: u32,
    _pad1: u32,
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

const NAN_BITS: u32 = 0x7fc00000u;
const NEG_INF_BITS: u32 = 0xff800000u;

// erfc(z) from Numerical Recipes' Chebyshev fit (fractional error below 1.2e-7), computed on
// |z| so that the small tail keeps its relative accuracy (gelu of a negative x needs it).
fn erfc_(z: f32) -> f32 {
    let a = abs(z);
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(-a * a + poly);
    return select(2.0 - r, r, z >= 0.0);
}

// tanh without the builtin's cancellation near 0 (some drivers compute (e^2x - 1)/(e^2x + 1)):
// a Taylor polynomial below 0.3 (error under 2e-9 relative), 1 - 2/(e^2|x| + 1) above, and ±1
// past 9, where the value rounds to ±1 in f32.
fn tanh_(x: f32) -> f32 {
    let a = abs(x);
    if a < 0.3 {
        let x2 = x * x;
        return x * (1.0 + x2 * (-0.33333333 + x2 * (0.13333333 + x2 * (-0.053968254
            + x2 * (0.021869488 + x2 * -0.0088632355)))));
    }
    if a > 9.0 {
        return sign(x);
    }
    let e = exp(-2.0 * a);
    return sign(x) * ((1.0 - e) / (1.0 + e));
}

fn sigmoid_(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// x^e: PyTorch's for a negative base and an integer exponent (WGSL's pow is undefined for
// x < 0), 1 for e = 0, 0 for a zero base and e > 0.
fn pow_(x: f32, e: f32) -> f32 {
    if e == 0.0 {
        return 1.0;
    }
    if x == 0.0 {
        return select(f32_bits(0x7f800000u), 0.0, e > 0.0);
    }
    let m = pow(abs(x), e);
    if x > 0.0 {
        return m;
    }
    if fract(e) != 0.0 {
        return f32_bits(NAN_BITS);
    }
    let odd = fract(e * 0.5) != 0.0;
    return select(m, -m, odd);
}

// exp(x) - 1 without the cancellation near 0: a Taylor polynomial below 0.01 (error under
// 1e-10 relative), the builtin above.
fn expm1_(x: f32) -> f32 {
    if abs(x) < 0.01 {
        return x * (1.0 + x * (0.5 + x * (0.16666667 + x * 0.041666667)));
    }
    return exp(x) - 1.0;
}

// log(1 + e) for e ≥ 0, accurate when e is tiny: log(u) · e / (u - 1) with u = 1 + e
// corrects the rounding of u (Goldberg's trick).
fn log1p_(e: f32) -> f32 {
    let u = 1.0 + e;
    if u == 1.0 {
        return e;
    }
    return log(u) * (e / (u - 1.0));
}

const SQRT1_2: f32 = 0.70710678;
const GELU_C: f32 = 0.79788456; // sqrt(2 / pi)
const INV_SQRT_2PI: f32 = 0.39894228;

fn math(v: f32) -> f32 {
    switch p.op {
        case UNARY_NEG: { return -v; }
        case UNARY_EXP: { return exp(v); }
        case UNARY_LOG: {
            if v == 0.0 { return f32_bits(NEG_INF_BITS); }
            return select(log(v), f32_bits(NAN_BITS), v < 0.0);
        }
        case UNARY_SQRT: { return select(sqrt(v), f32_bits(NAN_BITS), v < 0.0); }
        case UNARY_RSQRT: {
            if v == 0.0 { return f32_bits(0x7f800000u); }
            return select(inverseSqrt(v), f32_bits(NAN_BITS), v < 0.0);
        }
        case UNARY_POW: { return pow_(v, p.alpha); }
        case UNARY_TANH: { return tanh_(v); }
        case UNARY_SIGMOID: { return sigmoid_(v); }
        // x·Φ(x) = x · erfc(-x/√2) / 2, accurate in the tail.
        case UNARY_GELU: { return 0.5 * v * erfc_(-v * SQRT1_2); }
        // 0.5·x·(1 + tanh(u)) = x · sigmoid(2u), without the cancellation of 1 + tanh(u).
        case UNARY_GELU_TANH: {
            return v * sigmoid_(2.0 * GELU_C * (v + 0.044715 * v * v * v));
        }
        case UNARY_SILU: { return v * sigmoid_(v); }
        case UNARY_CLAMP: {
            return select(min(max(v, p.alpha), p.beta), v, v != v);
        }
        case UNARY_GELU_GRAD: {
            return 0.5 * erfc_(-v * SQRT1_2) + v * INV_SQRT_2PI * exp(-0.5 * v * v);
        }
        case UNARY_GELU_TANH_GRAD: {
            // With s = sigmoid(2u): 1 + tanh(u) = 2s and 1 - tanh(u)² = 4s(1 - s).
            let s = sigmoid_(2.0 * GELU_C * (v + 0.044715 * v * v * v));
            let du = GELU_C * (1.0 + 3.0 * 0.044715 * v * v);
            return s + 2.0 * v * s * (1.0 - s) * du;
        }
        case UNARY_SILU_GRAD: {
            let s = sigmoid_(v);
            return s * (1.0 + v * (1.0 - s));
        }
        case UNARY_ELU: { return select(p.alpha * expm1_(v), v, v > 0.0); }
        case UNARY_ELU_GRAD: { return select(p.alpha * exp(v), 1.0, v > 0.0); }
        case UNARY_LEAKY_RELU: { return select(v * p.alpha, v, v > 0.0); }
        case UNARY_LEAKY_RELU_GRAD: { return select(p.alpha, 1.0, v > 0.0); }
        case UNARY_SOFTPLUS: {
            let z = v * p.alpha;
            if z > p.beta { return v; }
            return log1p_(exp(z)) / p.alpha;
        }
        case UNARY_SOFTPLUS_GRAD: {
            let z = v * p.alpha;
            if z > p.beta { return 1.0; }
            let e = exp(z);
            return e / (e + 1.0);
        }
        case UNARY_HARDTANH_GRAD: {
            return select(1.0, 0.0, v <= p.alpha || v >= p.beta);
        }
        default: {
            return select(0.0, 1.0, v >= p.alpha && v <= p.beta);
        }
    }
}

@compute @workgroup_size(256)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    let v = x[i];
    switch p.op {
        case UNARY_RELU: {
            y[i] = select(v, 0.0, v < 0.0);
        }
        case UNARY_SCALE: {
            y[i] = v * p.alpha;
        }
        case UNARY_DROPOUT: {
            y[i] = select(0.0, v * p.alpha, uniform24(i) >= p.threshold);
        }
        case UNARY_UNIFORM: {
            y[i] = v + f32(uniform24(i)) * 5.9604645e-8;
        }
        default: {
            y[i] = math(v);
        }
    }
}
