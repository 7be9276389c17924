// Sinusoidal positional-encoding table, PyTorch's float32 formula:
//   theta = f32(f32(pos) * div[k]),  pe[pos, 2k] = sin(theta),  pe[pos, 2k+1] = cos(theta)
// `div` comes from the host (correctly rounded exp). GPU sin/cos are only specified inside
// [-pi, pi], so this kernel reduces theta itself, exactly, and evaluates its own polynomials
// in float-float arithmetic (about 44 bits). Rounding that to f32 gives the correctly rounded
// value unless the exact value lies within the float-float error of a midpoint between two
// f32s (about 1 entry in 30,000): such a pair is appended to `hard`, and the host writes its
// correctly rounded values (Ziv's strategy; the bound below is checked by tests/kernel_model.rs).
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
    capacity: u32,  // entries `hard` has room for after its counter
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> div_term: array<f32>;
@group(0) @binding(2) var<storage, read_write> pe: array<f32>;
// hard[0]: how many pairs need the host; hard[1..]: their indices pos * pairs + k.
@group(0) @binding(3) var<storage, read_write> hard: array<atomic<u32>>;

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

// pi/2 split into seven 6-bit pieces and an f32 remainder: k * C1..C7 is exact for k < 2^18,
// and k * C8 is off by at most 2^-24 of itself, so the reduced angle is good to ~2^-48 for
// every k (a single f32 remainder after five pieces left an error growing with k).
const C1: f32 = 1.5625;
const C2: f32 = 0.008056640625;
const C3: f32 = 0.00023651123046875;
const C4: f32 = 3.159046173095703e-06;
const C5: f32 = 1.5832483768463135e-08;
const C6: f32 = 6.002665031701326e-11;
const C7: f32 = 7.389644451905042e-13;
const C8: f32 = 5.390302953474238e-15;
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

// Whether rounding v.x + v.y to f32 may differ from rounding a value within `err` of it: true
// when v lies within err of the midpoint between its f32 rounding and the neighbour on its side.
fn uncertain(v: vec2<f32>, err: f32) -> bool {
    let c = opaque(v.x + v.y);
    let d = (v.x - c) + v.y; // v - c: v.x - c is exact (Sterbenz)
    let a = abs(c);
    if a == 0.0 {
        return false; // only at theta = 0, where the value is exact
    }
    let up = bitcast<f32>(bitcast<u32>(a) + 1u) - a;
    let down = a - bitcast<f32>(bitcast<u32>(a) - 1u);
    let gap = select(down, up, (d >= 0.0) == (c >= 0.0));
    return abs(abs(d) - 0.5 * gap) <= err;
}

// Error of the float-float sin/cos before its f32 rounding: 2^-41 of the value plus 2^-50,
// eight times the largest error tests/kernel_model.rs measures (2^-44.6 relative where
// |value| > 0.01, 2^-53.1 absolute below), with and without FMA contraction.
const REL_ERR: f32 = 4.547473508864641e-13;
const ABS_ERR: f32 = 8.881784197001252e-16;

struct SinCos {
    s: vec2<f32>, // sin(theta), before its final rounding
    c: vec2<f32>,
    hard: bool,   // true when either may round the wrong way
}

// sin and cos of theta >= 0, theta < 2^18 * pi/2, each from ~44 bits.
fn sincos(theta: f32) -> SinCos {
    let k = round(theta * TWO_OVER_PI);
    // Cody-Waite reduction carried in float-float: hi + lo == theta - k * pi/2 to ~2^-48.
    var hi = theta - k * C1; // exact (Sterbenz)
    var lo = 0.0;
    let pieces = array<f32, 6>(C2, C3, C4, C5, C6, C7);
    for (var i = 0; i < 6; i++) {
        let t = two_sum(hi, -(k * pieces[i]));
        hi = t.x;
        lo += t.y;
    }
    lo -= k * C8;
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
    let hard = uncertain(s2, ABS_ERR + REL_ERR * abs(s2.x))
        || uncertain(pc, ABS_ERR + REL_ERR * abs(pc.x));
    let q = u32(i32(k)) & 3u;
    switch q {
        case 0u: { return SinCos(s2, pc, hard); }
        case 1u: { return SinCos(pc, -s2, hard); }
        case 2u: { return SinCos(-s2, -pc, hard); }
        default: { return SinCos(-pc, s2, hard); }
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
    pe[o] = sc.s.x + sc.s.y;
    // Odd d_model: the last column is a sin with no cos beside it.
    if 2u * k + 1u < p.d_model {
        pe[o + 1u] = sc.c.x + sc.c.y;
    }
    if sc.hard {
        let slot = atomicAdd(&hard[0], 1u);
        if slot < p.capacity {
            atomicStore(&hard[slot + 1u], (p.row0 + r) * p.pairs + k);
        }
    }
}
