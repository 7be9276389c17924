// Sinusoidal positional-encoding table, PyTorch's float32 formula:
//   theta = f32(f32(pos) * div[k]),  pe[pos, 2k] = sin(theta),  pe[pos, 2k+1] = cos(theta)
// `div` comes from the host (correctly rounded exp). GPU sin/cos are only specified inside
// [-pi, pi], so this kernel reduces theta itself, exactly, and evaluates its own polynomials
// in float-float arithmetic, so each entry is the correctly rounded value in all but rare cases.
// One invocation computes one (position, k) pair and writes pe[pos, 2k] and pe[pos, 2k+1];
// a dispatch covers a chunk of whole rows of the [max_len, d_model] table.

struct Params {
    d_model: u32,
    pairs: u32,     // ceil(d_model / 2): invocations per table row
    count: u32,     // invocations in this chunk (rows * pairs)
    row0: u32,      // position of the chunk's first row
    out_base: u32,  // where row0 starts inside the bound output range
    row_width: u32, // invocations per dispatch row (workgroups in x * 256)
    zero: u32,      // always 0, but unknown to the compiler: see `opaque`
    _pad: u32,
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

// Float-float arithmetic: a value is hi + lo with |lo| <= ulp(hi) / 2, about 44 bits. Every
// product below is exact (Dekker's split), so whether the compiler fuses a multiply and an add
// into an FMA does not change any result: the table comes out the same on every GPU.

// Knuth's two-sum: s + e == a + b exactly.
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    let bb = opaque(s - a);
    let e = (a - opaque(s - bb)) + (b - bb);
    return vec2<f32>(s, e);
}

// Two-sum when |a| >= |b|.
fn fast_two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    return vec2<f32>(s, b - opaque(s - a));
}

// Dekker's two-product without FMA: p + e == a * b exactly.
fn two_prod(a: f32, b: f32) -> vec2<f32> {
    let p = opaque(a * b);
    let ca = opaque(4097.0 * a);
    let ah = ca - opaque(ca - a);
    let al = a - ah;
    let cb = opaque(4097.0 * b);
    let bh = cb - opaque(cb - b);
    let bl = b - bh;
    let e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
    return vec2<f32>(p, e);
}

fn ff_mul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let p = two_prod(a.x, b.x);
    return fast_two_sum(p.x, p.y + (a.x * b.y + a.y * b.x));
}

fn ff_add(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let s = two_sum(a.x, b.x);
    return fast_two_sum(s.x, s.y + (a.y + b.y));
}

// pi/2 split into five 6-bit pieces and a remainder: k * C1..C5 is exact for k < 2^18.
const C1: f32 = 1.5625;
const C2: f32 = 0.008056640625;
const C3: f32 = 0.00023651123046875;
const C4: f32 = 3.159046173095703e-06;
const C5: f32 = 1.5832483768463135e-08;
const C6: f32 = 6.07710062827671e-11;
const TWO_OVER_PI: f32 = 0.6366197466850281;

// Taylor coefficients (-1)^n / (2n+1)! and (-1)^n / (2n)! as float-float pairs; on
// |r| <= pi/4 the truncation error is below 1e-13.
const SIN_C = array<vec2<f32>, 7>(
    vec2<f32>(1.0, 0.0),
    vec2<f32>(-0.1666666716337204, 4.967053879312289e-09),
    vec2<f32>(0.008333333767950535, -4.34617203337595e-10),
    vec2<f32>(-0.00019841270113829523, 2.725596874933456e-12),
    vec2<f32>(2.7557318844628753e-06, 3.793571224297229e-14),
    vec2<f32>(-2.5052107943679403e-08, -4.4176230446483665e-16),
    vec2<f32>(1.6059044372074283e-10, -5.352526511562726e-18),
);
const COS_C = array<vec2<f32>, 8>(
    vec2<f32>(1.0, 0.0),
    vec2<f32>(-0.5, 0.0),
    vec2<f32>(0.0416666679084301, -1.2417634698280722e-09),
    vec2<f32>(-0.0013888889225199819, 3.3631094437103215e-11),
    vec2<f32>(2.4801587642286904e-05, -3.40699609366682e-13),
    vec2<f32>(-2.755731998149713e-07, 7.575112209051195e-15),
    vec2<f32>(2.0876755879584152e-09, 1.1082839147459852e-16),
    vec2<f32>(-1.147074536050896e-11, -2.372207689231238e-19),
);

// sin and cos of theta >= 0, theta < 2^18 * pi/2, each rounded once from ~44 bits.
fn sincos(theta: f32) -> vec2<f32> {
    let k = round(theta * TWO_OVER_PI);
    // Cody-Waite reduction carried in float-float: hi + lo == theta - k * pi/2 to ~2^-36.
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
    let r = fast_two_sum(hi, lo);

    let z = ff_mul(r, r);
    var ps = SIN_C[6];
    for (var i = 5; i >= 0; i--) {
        ps = ff_add(ff_mul(ps, z), SIN_C[i]);
    }
    let s2 = ff_mul(ps, r);
    var pc = COS_C[7];
    for (var i = 6; i >= 0; i--) {
        pc = ff_add(ff_mul(pc, z), COS_C[i]);
    }
    let sr = s2.x + s2.y;
    let cr = pc.x + pc.y;

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
    let r = local / p.pairs;
    let k = local - r * p.pairs;
    let theta = opaque(f32(p.row0 + r) * div_term[k]);
    let sc = sincos(theta);
    let o = p.out_base + r * p.d_model + 2u * k;
    pe[o] = sc.x;
    // Odd d_model: the last column is a sin with no cos beside it.
    if 2u * k + 1u < p.d_model {
        pe[o + 1u] = sc.y;
    }
}
