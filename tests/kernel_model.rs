//! A host model of `shaders/positional_encoding.wgsl`, run twice: once with every multiply and
//! add rounded separately (what lavapipe does) and once with every `a * b + c` the shader
//! contains fused into one FMA (what NVIDIA and AMD compilers may do). Both must give the
//! reference table bit for bit: the float-float design claims its results do not depend on
//! contraction, and this checks the claim where CI has no such GPU. If the shader's arithmetic
//! changes, change this model with it.

// The constants are copied verbatim from the shader, digits and all.
#![allow(clippy::excessive_precision)]

use std::hint::black_box as opaque;

const C: [f32; 6] = [
    1.5625,
    0.008056640625,
    0.00023651123046875,
    3.159046173095703e-06,
    1.5832483768463135e-08,
    6.07710062827671e-11,
];
const TWO_OVER_PI: f32 = 0.6366197466850281;
const SIN_C: [(f32, f32); 7] = [
    (1.0, 0.0),
    (-0.1666666716337204, 4.967053879312289e-09),
    (0.008333333767950535, -4.34617203337595e-10),
    (-0.00019841270113829523, 2.725596874933456e-12),
    (2.7557318844628753e-06, 3.793571224297229e-14),
    (-2.5052107943679403e-08, -4.4176230446483665e-16),
    (1.6059044372074283e-10, -5.352526511562726e-18),
];
const COS_C: [(f32, f32); 8] = [
    (1.0, 0.0),
    (-0.5, 0.0),
    (0.0416666679084301, -1.2417634698280722e-09),
    (-0.0013888889225199819, 3.3631094437103215e-11),
    (2.4801587642286904e-05, -3.40699609366682e-13),
    (-2.755731998149713e-07, 7.575112209051195e-15),
    (2.0876755879584152e-09, 1.1082839147459852e-16),
    (-1.147074536050896e-11, -2.372207689231238e-19),
];

/// `a * b + c`, fused or not.
#[derive(Clone, Copy)]
struct Arith {
    fused: bool,
}

impl Arith {
    fn mad(self, a: f32, b: f32, c: f32) -> f32 {
        if self.fused {
            a.mul_add(b, c)
        } else {
            opaque(a * b) + c
        }
    }
    fn two_sum(self, a: f32, b: f32) -> (f32, f32) {
        let s = opaque(a + b);
        let bb = opaque(s - a);
        (s, (a - opaque(s - bb)) + (b - bb))
    }
    fn fast_two_sum(self, a: f32, b: f32) -> (f32, f32) {
        let s = opaque(a + b);
        (s, b - opaque(s - a))
    }
    fn two_prod(self, a: f32, b: f32) -> (f32, f32) {
        let p = opaque(a * b);
        let ca = opaque(4097.0 * a);
        let ah = ca - opaque(ca - a);
        let al = a - ah;
        let cb = opaque(4097.0 * b);
        let bh = cb - opaque(cb - b);
        let bl = b - bh;
        // ((ah*bh - p) + ah*bl + al*bh) + al*bl, each product a candidate for fusion.
        let e = self.mad(ah, bh, -p);
        let e = self.mad(ah, bl, e);
        let e = self.mad(al, bh, e);
        (p, self.mad(al, bl, e))
    }
    fn mul(self, a: (f32, f32), b: (f32, f32)) -> (f32, f32) {
        let (p, e) = self.two_prod(a.0, b.0);
        let cross = self.mad(a.0, b.1, opaque(a.1 * b.0));
        self.fast_two_sum(p, e + cross)
    }
    fn add(self, a: (f32, f32), b: (f32, f32)) -> (f32, f32) {
        let (s, e) = self.two_sum(a.0, b.0);
        self.fast_two_sum(s, e + (a.1 + b.1))
    }
    fn sincos(self, theta: f32) -> (f32, f32) {
        let k = (theta * TWO_OVER_PI).round_ties_even();
        let mut hi = self.mad(-k, C[0], theta);
        let mut lo = 0.0;
        for c in &C[1..5] {
            let (h, l) = self.two_sum(hi, -(opaque(k * c)));
            hi = h;
            lo += l;
        }
        lo = self.mad(-k, C[5], lo);
        let r = self.fast_two_sum(hi, lo);
        let z = self.mul(r, r);
        let mut ps = SIN_C[6];
        for c in SIN_C[..6].iter().rev() {
            ps = self.add(self.mul(ps, z), *c);
        }
        let s = self.mul(ps, r);
        let mut pc = COS_C[7];
        for c in COS_C[..7].iter().rev() {
            pc = self.add(self.mul(pc, z), *c);
        }
        let (sr, cr) = (s.0 + s.1, pc.0 + pc.1);
        match (k as i32) & 3 {
            0 => (sr, cr),
            1 => (cr, -sr),
            2 => (-sr, -cr),
            _ => (-cr, sr),
        }
    }
}

#[test]
fn the_table_is_the_same_with_and_without_fma_contraction() {
    for d in [64usize, 512, 1024] {
        let div = wgnn::ops::div_term(d);
        for fused in [false, true] {
            let a = Arith { fused };
            let mut differ = 0;
            for pos in 0..5000 {
                for (k, &dv) in div.iter().enumerate() {
                    let theta = pos as f32 * dv;
                    let (s, c) = a.sincos(theta);
                    let (rs, rc) = ((theta as f64).sin() as f32, (theta as f64).cos() as f32);
                    differ += usize::from(s.to_bits() != rs.to_bits());
                    differ += usize::from(2 * k + 1 < d && c.to_bits() != rc.to_bits());
                }
            }
            assert_eq!(
                differ, 0,
                "d_model {d}, fused = {fused}: {differ} entries differ from the reference"
            );
        }
    }
}

#[test]
fn the_model_notices_a_naive_polynomial() {
    // The same check on a plain f32 Cephes polynomial finds differences, so it can fail.
    let div = wgnn::ops::div_term(64);
    let mut differ = 0;
    for pos in 0..500 {
        for &dv in &div {
            let theta = pos as f32 * dv;
            let x = (theta as f64 % std::f64::consts::TAU) as f32;
            let z = x * x;
            let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * x + x;
            if x.abs() < 0.78 {
                differ += usize::from(s.to_bits() != ((theta as f64).sin() as f32).to_bits());
            }
        }
    }
    assert!(differ > 0);
}
