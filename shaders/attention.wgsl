// Scaled dot-product attention in one pass, for the tutorial's packed projection: qkv is
// [B, S, H, 3·D] (per head: q, k, v of D each, as the tutorial's reshape/permute/chunk reads
// them) and the output [B, S, H, D] (the heads merged, as the tutorial's permute/reshape
// writes them). One invocation per (b, h, query row i), 64 a workgroup: it walks the keys once
// with an online softmax (running maximum m, running sum l, the weighted sum of v rescaled by
// exp(m_old - m_new) when the maximum grows), so neither the scores nor the weights are
// written anywhere. Scores are alpha · (q · k) and, where the mask is 0, MASK_FILL, as the
// unfused ops compute them. D ≤ 128 and a multiple of 4 (vec4 loads; the host checks).

struct Params {
    batch: u32,
    seq: u32,
    heads: u32,
    d4: u32,        // D / 4
    alpha: f32,
    has_mask: u32,
    m_bs: u32,      // mask[b, h, i, j] = mask[b*m_bs + h*m_hs + i*m_is + j*m_js]
    m_hs: u32,
    m_is: u32,
    m_js: u32,
    groups_x: u32,
    fill: f32,      // the value of masked scores (-9e15)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn attention(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = (wid.y * p.groups_x + wid.x) * 64u + lid.x;
    if g >= p.batch * p.heads * p.seq {
        return;
    }
    // g = ((b * H) + h) * S + i
    let i = g % p.seq;
    let h = (g / p.seq) % p.heads;
    let b = g / (p.seq * p.heads);
    let d4 = p.d4;
    let row = 3u * p.heads * d4;            // vec4s per token of qkv
    let head = h * 3u * d4;
    let qb = (b * p.seq + i) * row + head;
    var q: array<vec4<f32>, 32>;
    var acc: array<vec4<f32>, 32>;
    for (var d = 0u; d < d4; d++) {
        q[d] = qkv[qb + d];
        acc[d] = vec4<f32>(0.0);
    }
    var m = f32_bits(0xff7fffffu); // -FLT_MAX
    var l = 0.0;
    let mrow = b * p.m_bs + h * p.m_hs + i * p.m_is;
    for (var j = 0u; j < p.seq; j++) {
        let kb = (b * p.seq + j) * row + head + d4;
        var s4 = vec4<f32>(0.0);
        for (var d = 0u; d < d4; d++) {
            s4 += q[d] * qkv[kb + d];
        }
        var s = p.alpha * ((s4.x + s4.y) + (s4.z + s4.w));
        if p.has_mask != 0u && mask[mrow + j * p.m_js] == 0.0 {
            s = p.fill;
        }
        let m_new = max(m, s);
        let corr = exp(m - m_new);
        let w = exp(s - m_new);
        l = l * corr + w;
        let vb = kb + d4;
        for (var d = 0u; d < d4; d++) {
            acc[d] = acc[d] * corr + w * qkv[vb + d];
        }
        m = m_new;
    }
    let inv = 1.0 / l;
    let ob = ((b * p.seq + i) * p.heads + h) * d4;
    for (var d = 0u; d < d4; d++) {
        out[ob + d] = acc[d] * inv;
    }
}
