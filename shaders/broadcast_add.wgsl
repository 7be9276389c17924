// y = x + b with PyTorch broadcasting, rank <= 8 (shapes padded with leading 1s). A size-1 (or
// missing) dimension of an input has stride 0. One invocation per output element of a chunk.

struct Params {
    count: u32,     // output elements in this chunk
    start: u32,     // flat output index of the chunk's first element
    y_base: u32,    // where `start` lands inside the bound output range
    row_width: u32, // invocations per dispatch row
    shape: array<vec4<u32>, 2>,
    x_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn broadcast_add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.y * p.row_width + gid.x;
    if local >= p.count {
        return;
    }
    var o = p.start + local;
    var xi = 0u;
    var bi = 0u;
    for (var d = 7i; d >= 0i; d--) {
        let v = u32(d) >> 2u;
        let c = u32(d) & 3u;
        let n = p.shape[v][c];
        let q = o / n;
        let coord = o - q * n;
        o = q;
        xi += coord * p.x_strides[v][c];
        bi += coord * p.b_strides[v][c];
    }
    y[p.y_base + local] = x[xi] + b[bi];
}
