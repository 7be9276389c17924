// y[b, i] = x[b, i] + t[i]: the positional case x[batch, seq, d] + pe[:, :seq], where the first
// seq rows of the table are a prefix of its buffer (no copy, no slice kernel). vec4 version
// (d % 4 == 0): every index and count is in units of vec4. Dispatch: x over elements of a row, y over batch items; no division.

struct Params {
    count: u32,    // elements of each batch row in this chunk
    row_stride: u32, // elements between consecutive batch items
    xy_base: u32,  // first element of the chunk inside the bound x and y ranges
    t_base: u32,   // first element of the chunk inside the bound table range
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> t: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(256)
fn broadcast_add_prefix_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i >= p.count {
        return;
    }
    let j = p.xy_base + gid.y * p.row_stride + i;
    y[j] = x[j] + t[p.t_base + i];
}
