// What the convolution kernels (conv2d, conv2d_t8, conv2d_grad_input, conv2d_grad_weight)
// share: their params, the input and output bindings, and the zero-padded read. Appended to each by the kernel table.

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    o: u32,
    kh: u32,
    kw: u32,
    oh: u32,
    ow: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    groups: u32,
    // Input channels per group, output channels per group, cg * kh * kw.
    cg: u32,
    og: u32,
    kk: u32,
    // conv2d: 1 when binding 3 is a bias.
    flags: u32,
    // conv2d_grad_weight: partial sums over `splits` slices of `per_split` images.
    splits: u32,
    per_split: u32,
    // Invocations with work (4 × 4 blocks), and invocations per row of the grid.
    blocks: u32,
    row_width: u32,
}

// Bindings 2 (src_b) and 3 are each kernel's own: conv2d_t8 reads its weights as vec4s.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src_a: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// src_a[row + x] where 0 ≤ x < width, else 0 (a padding zero).
fn padded_a(row: u32, x: i32, width: u32) -> f32 {
    let ok = x >= 0 && x < i32(width);
    let v = src_a[row + u32(select(0, x, ok))];
    return select(0.0, v, ok);
}

// Where block `id` of a kernel over images' rows works: pixel blocks of `px` neighbouring
// columns of a row (`rows` × `cols` per image), times blocks of `ch` channels of each group
// (`per_group` channels per group), the channel blocks fastest.
struct Block {
    n: u32,
    y: u32,
    x0: u32,
    grp: u32,
    c0: u32,
}

fn block_of(id: u32, rows: u32, cols: u32, px: u32, per_group: u32, ch: u32) -> Block {
    let cgb = (per_group + ch - 1u) / ch;
    let cb = id % (p.groups * cgb);
    let pb = id / (p.groups * cgb);
    let xb = (cols + px - 1u) / px;
    let t = pb / xb;
    return Block(t / rows, t % rows, (pb % xb) * px, cb / cgb, (cb % cgb) * ch);
}
