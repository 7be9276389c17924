// y[i, c] = (idx[i] == c) ? 1 : 0 for int64 indices read as (low, high) u32 words. An index
// outside [0, a) gives a row of zeros (the host checks CPU inputs; see `ops::one_hot`).

struct Params {
    count: u32,
    row_width: u32,
    a: u32,  // classes
    b: u32,  // unused
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn one_hot(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.y * p.row_width + gid.x;
    if o >= p.count {
        return;
    }
    let i = o / p.a;
    let c = o - i * p.a;
    let hit = idx[2u * i + 1u] == 0u && idx[2u * i] == c;
    y[o] = select(0.0, 1.0, hit);
}
