// One running statistic of BatchNorm in train mode, on the device:
//   new = (1 - f) * running + f * stat,   f = momentum, or 1 / num_batches_tracked when
//   `cumulative` (momentum=None; the counter is read after this step's increment).
// `stat` is stats[stat_base + c]; for the variance the host sets `unbias` = n / (n - 1).

struct Params {
    channels: u32,
    stat_base: u32,
    cumulative: u32,
    momentum: f32,
    unbias: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> running: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> counter: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn batch_norm_running(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.channels {
        return;
    }
    var f = p.momentum;
    if p.cumulative != 0u {
        f = 1.0 / (f32(counter[1]) * 4294967296.0 + f32(counter[0]));
    }
    let s = stats[p.stat_base + c] * p.unbias;
    y[c] = (1.0 - f) * running[c] + f * s;
}
