// The sum of each row of x [rows, width] (or of the squares, or the maximum), one 64-invocation
// workgroup per row: 64 strided partial results, then a tree (the CPU path goes in the same
// order). Reduces gradients over broadcast dimensions (a bias's gradient), gives squared norms,
// and the reductions over dimensions (sum, amax). The maximum propagates NaN, as PyTorch's.
// With ROW_SUM_COLUMNS in `op`, x is stored [width, rows] and "row" r is its column r (the
// sum over leading dimensions, a bias's gradient, read in place rather than transposed by a
// copy first); the order of additions is the same.

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

// max that keeps a NaN (WGSL's max may drop it); decided on the bits, which compilers keep.
fn max_nan(a: f32, b: f32) -> f32 {
    let nan_a = (bitcast<u32>(a) & 0x7fffffffu) > 0x7f800000u;
    let nan_b = (bitcast<u32>(b) & 0x7fffffffu) > 0x7f800000u;
    return select(select(max(a, b), b, nan_b), a, nan_a);
}

@compute @workgroup_size(64)
fn row_sum(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * p.groups_x + wid.x;
    if row >= p.rows {
        return;
    }
    let t = lid.x;
    let columns = (p.op & ROW_SUM_COLUMNS) != 0u;
    let kind = p.op & ~ROW_SUM_COLUMNS;
    // Element i of the row is x[base + i * step].
    var base = row * p.width;
    var step = 1u;
    if columns {
        base = row;
        step = p.rows;
    }
    let is_max = kind == ROW_SUM_MAX;
    var s = select(0.0, f32_bits(0xff800000u), is_max);
    for (var i = t; i < p.width; i += 64u) {
        let v = x[base + i * step];
        if kind == ROW_SUM_SQUARES {
            s += v * v;
        } else if is_max {
            s = max_nan(s, v);
        } else {
            s += v;
        }
    }
    part[t] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if t < k {
            if is_max {
                part[t] = max_nan(part[t], part[t + k]);
            } else {
                part[t] = part[t] + part[t + k];
            }
        }
        workgroupBarrier();
    }
    if t == 0u {
        y[row] = part[0];
    }
}
