// y = x + 1 for int64 values stored as (low, high) u32 words (BatchNorm's num_batches_tracked,
// counted on the device).

struct Params {
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

@compute @workgroup_size(256)
fn add_scalar_i64(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i >= p.count {
        return;
    }
    let lo = x[2u * i] + 1u;
    y[2u * i] = lo;
    y[2u * i + 1u] = x[2u * i + 1u] + select(0u, 1u, lo == 0u);
}
