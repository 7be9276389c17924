// The sum of each row of x [rows, width] (op 1: of the squares), one 64-invocation workgroup
// per row: 64 strided partial sums, then a tree (the CPU path adds in the same order). Reduces
// gradients over broadcast dimensions (a bias's gradient) and gives squared norms.

struct Params {
    rows: u32,
    width: u32,
    groups_x: u32,
    op: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn row_sum(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * p.groups_x + wid.x;
    if row >= p.rows {
        return;
    }
    let t = lid.x;
    let base = row * p.width;
    var s = 0.0;
    for (var i = t; i < p.width; i += 64u) {
        let v = x[base + i];
        if p.op == ROW_SUM_SQUARES {
            s += v * v;
        } else {
            s += v;
        }
    }
    part[t] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if t < k {
            part[t] = part[t] + part[t + k];
        }
        workgroupBarrier();
    }
    if t == 0u {
        y[row] = part[0];
    }
}
