// y[i, d] = weight[idx[i], d] for int64 indices read as (low, high) u32 words. An index outside
// [0, rows) gives zeros (the host checks CPU inputs; see `ops::embedding`).

struct Params {
    count: u32,
    row_width: u32,
    a: u32,  // embedding dim
    b: u32,  // rows of the weight
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn embedding(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.y * p.row_width + gid.x;
    if o >= p.count {
        return;
    }
    let i = o / p.a;
    let d = o - i * p.a;
    let lo = idx[2u * i];
    let ok = idx[2u * i + 1u] == 0u && lo < p.b;
    y[o] = select(0.0, weight[min(lo, p.b - 1u) * p.a + d], ok);
}
