// y = m != 0 ? a : b over three tensors of one shape (torch.where, the condition as a 0/1 float
// mask): a select, so the CPU and every GPU give the same bits (signed zeros, infinities and
// NaNs pass through untouched).

struct Params {
    count: u32,
    row_width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<u32>;
@group(0) @binding(3) var<storage, read> b: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<u32>;

@compute @workgroup_size(256)
fn where_select(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.row_width + gid.x;
    if i >= p.count {
        return;
    }
    y[i] = select(b[i], a[i], m[i] != 0.0);
}
