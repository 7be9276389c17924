// y = mask == 0 ? value : x, with the mask broadcast to x's shape (rank ≤ 8, stride 0 on
// broadcast dimensions): the tutorial's `masked_fill(mask == 0, -9e15)`. The mask is read as
// words: float32 (0.0 and -0.0 are zero) or, with `bytes` set, one byte an element (bool, uint8).

struct Params {
    count: u32,
    row_width: u32,
    value: f32,
    bytes: u32,
    shape: array<vec4<u32>, 2>,
    mask_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn masked_fill(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    var o = i;
    var mi = 0u;
    for (var d = 7i; d >= 0i; d--) {
        let v = u32(d) >> 2u;
        let c = u32(d) & 3u;
        let n = p.shape[v][c];
        let q = o / n;
        mi += (o - q * n) * p.mask_strides[v][c];
        o = q;
    }
    var zero: bool;
    if p.bytes != 0u {
        zero = ((mask[mi / 4u] >> (8u * (mi % 4u))) & 0xffu) == 0u;
    } else {
        zero = (mask[mi] & 0x7fffffffu) == 0u;
    }
    y[i] = select(x[i], p.value, zero);
}
