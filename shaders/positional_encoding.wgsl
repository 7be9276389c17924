// Sinusoidal positional-encoding table, PyTorch's float32 formula:
//   theta = f32(f32(pos) * div[k]),  pe[pos, 2k] = sin(theta),  pe[pos, 2k+1] = cos(theta)
// `div` comes from the host (correctly rounded exp). GPU sin/cos are only specified inside
// [-pi, pi], so this kernel reduces theta itself, exactly, and evaluates its own polynomials.
// One invocation writes one element of a chunk of the flattened [max_len, d_model] table.

struct Params {
    d_model: u32,
    start: u32,     // flat table index of this chunk's first element
    count: u32,     // elements in this chunk
    out_base: u32,  // where `start` lands inside the bound output range
    row_width: u32, // invocations per dispatch row (workgroups in x * 256)
    zero: u32,      // always 0, but unknown to the compiler: see `opaque`
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> div_term: array<f32>;
@group(0) @binding(2) var<storage, read_write> pe: array<f32>;

// Returns x unchanged, through an operation the compiler cannot see through. It keeps the
// pos * div multiply rounded to f32 (never fused into what follows) and keeps the two-sum
// steps below from being "simplified" algebraically.
fn opaque(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) ^ p.zero);
}

// Knuth's two-sum: s + e == a + b exactly.
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    let bb = opaque(s - a);
    let e = (a - opaque(s - bb)) + (b - bb);
    return vec2<f32>(s, e);
}

// pi/2 split into five 6-bit pieces and a remainder: k * C1..C5 is exact for k < 2^18.
const C1: f32 = 1.5625;
const C2: f32 = 0.008056640625;
const C3: f32 = 0.00023651123046875;
const C4: f32 = 3.159046173095703e-06;
const C5: f32 = 1.5832483768463135e-08;
const C6: f32 = 6.07710062827671e-11;
const TWO_OVER_PI: f32 = 0.6366197466850281;

// sin and cos of theta >= 0, theta < 2^18 * pi/2.
fn sincos(theta: f32) -> vec2<f32> {
    let k = round(theta * TWO_OVER_PI);
    // Cody-Waite reduction carried in two floats: hi + lo == theta - k * pi/2 to ~2^-36.
    var hi = theta - k * C1; // exact (Sterbenz)
    var t = two_sum(hi, -(k * C2));
    hi = t.x;
    var lo = t.y;
    t = two_sum(hi, -(k * C3));
    hi = t.x;
    lo += t.y;
    t = two_sum(hi, -(k * C4));
    hi = t.x;
    lo += t.y;
    t = two_sum(hi, -(k * C5));
    hi = t.x;
    lo += t.y;
    lo -= k * C6;
    let r = opaque(hi + lo);
    let rl = lo - opaque(r - hi);

    // Minimax polynomials on [-pi/4, pi/4] (Cephes sinf/cosf).
    let z = r * r;
    let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
    let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z
        - 0.5 * z + 1.0;
    // First-order correction for the low part of the reduced angle.
    let sr = s + rl * c;
    let cr = c - rl * s;

    let q = u32(i32(k)) & 3u;
    switch q {
        case 0u: { return vec2<f32>(sr, cr); }
        case 1u: { return vec2<f32>(cr, -sr); }
        case 2u: { return vec2<f32>(-sr, -cr); }
        default: { return vec2<f32>(-cr, sr); }
    }
}

@compute @workgroup_size(256)
fn positional_encoding(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.y * p.row_width + gid.x;
    if local >= p.count {
        return;
    }
    let i = p.start + local;
    let pos = i / p.d_model;
    let col = i - pos * p.d_model;
    let theta = opaque(f32(pos) * div_term[col >> 1u]);
    let sc = sincos(theta);
    pe[p.out_base + local] = select(sc.y, sc.x, (col & 1u) == 0u);
}
