// C[z] = alpha * A[z] · B[z] (+ bias[n]) for a batch of matrices, tiled through workgroup
// memory: a workgroup of 64 invocations computes a 16 × 256 block of C. The block's 16 rows of
// A are staged in workgroup memory, 32 values of K at a time, and read there at indices that
// are the same for every invocation (a broadcast: cheap on GPUs and on CPU rasterisers such
// as lavapipe, which vectorise across invocations); each invocation owns four columns and
// streams B. A and B are read through strides, so a transposed operand (x·Wᵀ, q·kᵀ)
// or a broadcast batch (stride 0) needs no copy; C is written [batch, M, N] through its own
// row and batch strides (contiguous, or in the order of a permutation: matmul_permuted).
// The batch index z is split in two levels, z = z1 * nb2 + z2, each with its own strides.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    nb2: u32,     // size of the inner batch level
    a_rs: u32,    // A[m, k] = a[a_base + z1*a_bs1 + z2*a_bs2 + m*a_rs + k*a_cs]
    a_cs: u32,
    a_bs1: u32,
    a_bs2: u32,
    b_rs: u32,    // B[k, n] = b[b_base + z1*b_bs1 + z2*b_bs2 + k*b_rs + n*b_cs]
    b_cs: u32,
    b_bs1: u32,
    b_bs2: u32,
    a_base: u32,
    b_base: u32,
    z0: u32,      // first batch index of this dispatch
    has_bias: u32,  // bit 0: add bias[n]; bit 1: ReLU after it (linear_relu's epilogue)
    alpha: f32,
    c_rs: u32,    // C[z, m, n] = c[z1*c_bs1 + z2*c_bs2 + m*c_rs + n]
    c_bs1: u32,
    c_bs2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const TM: u32 = 16u;
const TK: u32 = 32u;

// [k][row / 4] of the A block: one vec4 holds four rows of one k.
var<workgroup> a_tile: array<vec4<f32>, 128>;

fn load_a(off: u32, gm: u32, gk: u32) -> f32 {
    if gm < p.m && gk < p.k {
        return a[off + gm * p.a_rs + gk * p.a_cs];
    }
    return 0.0;
}

// Rows row .. row + 3 of column n: alpha * acc (+ bias[n]).
fn write4(c_off: u32, row: u32, n: u32, v: vec4<f32>) {
    if n >= p.n {
        return;
    }
    var bn = 0.0;
    if (p.has_bias & 1u) != 0u {
        bn = bias[n];
    }
    for (var r = 0u; r < 4u; r++) {
        if row + r < p.m {
            var o = p.alpha * v[r] + bn;
            if (p.has_bias & 2u) != 0u {
                o = select(o, 0.0, o < 0.0); // ReLU (NaN stays NaN, as torch.relu)
            }
            c[c_off + (row + r) * p.c_rs + n] = o;
        }
    }
}

@compute @workgroup_size(64)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let z = wid.z + p.z0;
    let z1 = z / p.nb2;
    let z2 = z - z1 * p.nb2;
    let a_off = p.a_base + z1 * p.a_bs1 + z2 * p.a_bs2;
    let b_off = p.b_base + z1 * p.b_bs1 + z2 * p.b_bs2;
    let row0 = wid.y * TM;
    let t = lid.x;
    // This invocation's columns; out-of-range ones compute on a valid column and are not
    // written.
    let n0 = wid.x * 256u + t + 0u;
    let c0 = min(n0, p.n - 1u) * p.b_cs;
    let n1 = wid.x * 256u + t + 64u;
    let c1 = min(n1, p.n - 1u) * p.b_cs;
    let n2 = wid.x * 256u + t + 128u;
    let c2 = min(n2, p.n - 1u) * p.b_cs;
    let n3 = wid.x * 256u + t + 192u;
    let c3 = min(n3, p.n - 1u) * p.b_cs;
    var acc0_0 = vec4<f32>(0.0);
    var acc0_1 = vec4<f32>(0.0);
    var acc0_2 = vec4<f32>(0.0);
    var acc0_3 = vec4<f32>(0.0);
    var acc1_0 = vec4<f32>(0.0);
    var acc1_1 = vec4<f32>(0.0);
    var acc1_2 = vec4<f32>(0.0);
    var acc1_3 = vec4<f32>(0.0);
    var acc2_0 = vec4<f32>(0.0);
    var acc2_1 = vec4<f32>(0.0);
    var acc2_2 = vec4<f32>(0.0);
    var acc2_3 = vec4<f32>(0.0);
    var acc3_0 = vec4<f32>(0.0);
    var acc3_1 = vec4<f32>(0.0);
    var acc3_2 = vec4<f32>(0.0);
    var acc3_3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // 128 vec4 (32 k × 4 row groups), 2 per invocation.
        for (var e = t; e < 128u; e += 64u) {
            let kk = e / 4u;
            let gm = row0 + (e % 4u) * 4u;
            let gk = k0 + kk;
            a_tile[e] = vec4<f32>(
                load_a(a_off, gm, gk),
                load_a(a_off, gm + 1u, gk),
                load_a(a_off, gm + 2u, gk),
                load_a(a_off, gm + 3u, gk),
            );
        }
        workgroupBarrier();
        // A constant trip count (the tile is zero past K, and B's row is clamped there).
        let klast = p.k - 1u;
        for (var kk = 0u; kk < TK; kk++) {
            let brow = b_off + min(k0 + kk, klast) * p.b_rs;
            let b0 = b[brow + c0];
            let b1 = b[brow + c1];
            let b2 = b[brow + c2];
            let b3 = b[brow + c3];
            let a0 = a_tile[kk * 4u + 0u];
            let a1 = a_tile[kk * 4u + 1u];
            let a2 = a_tile[kk * 4u + 2u];
            let a3 = a_tile[kk * 4u + 3u];
            acc0_0 += a0 * b0;
            acc0_1 += a1 * b0;
            acc0_2 += a2 * b0;
            acc0_3 += a3 * b0;
            acc1_0 += a0 * b1;
            acc1_1 += a1 * b1;
            acc1_2 += a2 * b1;
            acc1_3 += a3 * b1;
            acc2_0 += a0 * b2;
            acc2_1 += a1 * b2;
            acc2_2 += a2 * b2;
            acc2_3 += a3 * b2;
            acc3_0 += a0 * b3;
            acc3_1 += a1 * b3;
            acc3_2 += a2 * b3;
            acc3_3 += a3 * b3;
        }
        workgroupBarrier();
    }

    let c_off = z1 * p.c_bs1 + z2 * p.c_bs2;
    write4(c_off, row0 + 0u, n0, acc0_0);
    write4(c_off, row0 + 4u, n0, acc0_1);
    write4(c_off, row0 + 8u, n0, acc0_2);
    write4(c_off, row0 + 12u, n0, acc0_3);
    write4(c_off, row0 + 0u, n1, acc1_0);
    write4(c_off, row0 + 4u, n1, acc1_1);
    write4(c_off, row0 + 8u, n1, acc1_2);
    write4(c_off, row0 + 12u, n1, acc1_3);
    write4(c_off, row0 + 0u, n2, acc2_0);
    write4(c_off, row0 + 4u, n2, acc2_1);
    write4(c_off, row0 + 8u, n2, acc2_2);
    write4(c_off, row0 + 12u, n2, acc2_3);
    write4(c_off, row0 + 0u, n3, acc3_0);
    write4(c_off, row0 + 4u, n3, acc3_1);
    write4(c_off, row0 + 8u, n3, acc3_2);
    write4(c_off, row0 + 12u, n3, acc3_3);
}
