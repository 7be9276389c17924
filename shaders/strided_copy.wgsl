// Gather: y[i] = x[base + Σ coord_d(i) * stride_d] over a rank ≤ 8 shape (padded with leading
// 1s): a view (permuted, narrowed, expanded with stride 0) made contiguous. Scatter:
// y[base + Σ coord_d(i) * stride_d] = x[i]: one input of `cat` placed into its slice. Works on
// 32-bit words, so any 4-byte dtype copies as is and 8-byte dtypes as two words (the host adds
// an innermost dimension of 2); 2-byte dtypes (float16, bfloat16) gather with COPY_GATHER16,
// one invocation per output word of two elements, so no two invocations write one word.

struct Params {
    count: u32,
    row_width: u32,
    base: u32,
    mode: u32,
    shape: array<vec4<u32>, 2>,
    strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

// The storage index of element i of the view: base + Σ coord_d(i) · stride_d.
fn offset_of(i: u32) -> u32 {
    var o = i;
    var at = p.base;
    for (var d = 7i; d >= 0i; d--) {
        let v = u32(d) >> 2u;
        let c = u32(d) & 3u;
        let n = p.shape[v][c];
        let q = o / n;
        at += (o - q * n) * p.strides[v][c];
        o = q;
    }
    return at;
}

// The 16-bit element e of the view (storage packed two to a word, low half first).
fn half_at(e: u32) -> u32 {
    let at = offset_of(e);
    return (x[at >> 1u] >> ((at & 1u) * 16u)) & 0xffffu;
}

@compute @workgroup_size(256)
fn strided_copy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    if p.mode == COPY_GATHER16 {
        // i is an output word: elements 2i and 2i + 1 (when the view has it).
        var n = 1u;
        for (var d = 0u; d < 8u; d++) {
            n *= p.shape[d >> 2u][d & 3u];
        }
        let e = 2u * i;
        var v = half_at(e);
        if e + 1u < n {
            v |= half_at(e + 1u) << 16u;
        }
        y[i] = v;
    } else if p.mode == COPY_SCATTER {
        y[offset_of(i)] = x[i];
    } else {
        y[i] = x[offset_of(i)];
    }
}
