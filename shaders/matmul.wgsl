// C[z] = alpha * A[z] · B[z] (+ bias[n]) for a batch of matrices, tiled through workgroup
// memory: a 16×16 workgroup computes a 64×64 block of C, each invocation a 4×4 block, stepping
// over K 16 at a time. A and B are read through strides, so a transposed operand (x·Wᵀ, q·kᵀ)
// or a broadcast batch (stride 0) needs no copy; C is written contiguous [batch, M, N].
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
    has_bias: u32,
    alpha: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// [k][m / 4] and [k][n / 4]: one vec4 is four rows (A) or four columns (B) of one k.
var<workgroup> as_: array<vec4<f32>, 256>;
var<workgroup> bs_: array<vec4<f32>, 256>;

fn load_a(off: u32, gm: u32, gk: u32) -> f32 {
    if gm < p.m && gk < p.k {
        return a[off + gm * p.a_rs + gk * p.a_cs];
    }
    return 0.0;
}

fn load_b(off: u32, gk: u32, gn: u32) -> f32 {
    if gk < p.k && gn < p.n {
        return b[off + gk * p.b_rs + gn * p.b_cs];
    }
    return 0.0;
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let z = wid.z + p.z0;
    let z1 = z / p.nb2;
    let z2 = z - z1 * p.nb2;
    let a_off = p.a_base + z1 * p.a_bs1 + z2 * p.a_bs2;
    let b_off = p.b_base + z1 * p.b_bs1 + z2 * p.b_bs2;
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let tid = lid.y * 16u + lid.x;
    // Which way to walk the tiles when loading: along the operand's contiguous dimension.
    let a_k_major = p.a_cs == 1u;
    let b_k_major = p.b_rs == 1u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        // 256 invocations load 16×64 values of each operand as 256 vec4s.
        if a_k_major {
            // invocation -> (k = tid % 16, rows 4*(tid / 16) .. +3): consecutive k per row.
            let kk = tid % 16u;
            let mq = tid / 16u;
            let gm = row0 + mq * 4u;
            as_[kk * 16u + mq] = vec4<f32>(
                load_a(a_off, gm, k0 + kk),
                load_a(a_off, gm + 1u, k0 + kk),
                load_a(a_off, gm + 2u, k0 + kk),
                load_a(a_off, gm + 3u, k0 + kk),
            );
        } else {
            let kk = tid / 16u;
            let mq = tid % 16u;
            let gm = row0 + mq * 4u;
            as_[kk * 16u + mq] = vec4<f32>(
                load_a(a_off, gm, k0 + kk),
                load_a(a_off, gm + 1u, k0 + kk),
                load_a(a_off, gm + 2u, k0 + kk),
                load_a(a_off, gm + 3u, k0 + kk),
            );
        }
        if b_k_major {
            let kk = tid % 16u;
            let nq = tid / 16u;
            let gn = col0 + nq * 4u;
            bs_[kk * 16u + nq] = vec4<f32>(
                load_b(b_off, k0 + kk, gn),
                load_b(b_off, k0 + kk, gn + 1u),
                load_b(b_off, k0 + kk, gn + 2u),
                load_b(b_off, k0 + kk, gn + 3u),
            );
        } else {
            let kk = tid / 16u;
            let nq = tid % 16u;
            let gn = col0 + nq * 4u;
            bs_[kk * 16u + nq] = vec4<f32>(
                load_b(b_off, k0 + kk, gn),
                load_b(b_off, k0 + kk, gn + 1u),
                load_b(b_off, k0 + kk, gn + 2u),
                load_b(b_off, k0 + kk, gn + 3u),
            );
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let av = as_[kk * 16u + lid.y];
            let bv = bs_[kk * 16u + lid.x];
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }

    let c_off = z * p.m * p.n;
    let gm = row0 + lid.y * 4u;
    let gn = col0 + lid.x * 4u;
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < 4u; r++) {
        let row = gm + r;
        if row >= p.m {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = gn + j;
            if col < p.n {
                var v = p.alpha * rows[r][j];
                if p.has_bias != 0u {
                    v += bias[col];
                }
                c[c_off + row * p.n + col] = v;
            }
        }
    }
}
