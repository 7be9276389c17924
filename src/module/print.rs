//! Printing: PyTorch's repr, and a table of every tensor that answers the seed question.

use super::walk::{tensors, walk};
use super::Module;

/// PyTorch's `_addindent`: every line after the first gets `n` more spaces.
pub(crate) fn add_indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    let mut lines = s.split('\n');
    let mut out = lines.next().unwrap_or_default().to_string();
    for l in lines {
        out.push('\n');
        out.push_str(&pad);
        out.push_str(l);
    }
    out
}

pub(crate) fn repr(m: &dyn Module) -> String {
    if let Some(r) = m.custom_repr() {
        return r;
    }
    struct Children<'a>(Vec<(String, &'a dyn Module)>);
    impl<'a> super::Visitor<'a> for Children<'a> {
        fn parameter(&mut self, _: &str, _: &'a super::Parameter) {}
        fn buffer(&mut self, _: &str, _: &'a super::Buffer) {}
        fn module(&mut self, name: &str, m: &'a dyn Module) {
            self.0.push((name.to_string(), m));
        }
    }
    let mut c = Children(vec![]);
    m.visit(&mut c);
    let extra = m.extra_repr();
    let mut lines: Vec<String> = if extra.is_empty() {
        vec![]
    } else {
        extra.split('\n').map(String::from).collect()
    };
    for (name, child) in c.0 {
        lines.push(format!("({name}): {}", add_indent(&repr(child), 2)));
    }
    let mut s = format!("{}(", m.type_name());
    if !lines.is_empty() {
        if extra.is_empty() || lines.len() > 1 {
            s.push_str("\n  ");
            s.push_str(&lines.join("\n  "));
            s.push('\n');
        } else {
            s.push_str(&lines[0]);
        }
    }
    s.push(')');
    s
}

fn human(bytes: usize) -> String {
    const U: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub(crate) fn summary(m: &dyn Module) -> String {
    let rows: Vec<[String; 7]> = tensors(m)
        .into_iter()
        .map(|(path, kind, t)| {
            [
                path,
                kind.to_string(),
                if kind.in_state_dict() { "yes" } else { "no" }.to_string(),
                format!("{:?}", t.shape()),
                t.dtype().to_string(),
                t.device().to_string(),
                human(t.nbytes()),
            ]
        })
        .collect();
    let head = [
        "tensor",
        "kind",
        "in state_dict",
        "shape",
        "dtype",
        "device",
        "bytes",
    ];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = String::new();
    out.push_str(&line(&head.map(String::from)));
    out.push('\n');
    out.push_str(
        &w.iter()
            .map(|n| "-".repeat(*n))
            .collect::<Vec<_>>()
            .join("  "),
    );
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    let nodes = walk(m);
    let (mut np, mut nb, mut bp, mut bb, mut sd) = (0, 0, 0, 0, 0);
    for n in &nodes {
        for (_, p) in &n.params {
            np += 1;
            bp += p.tensor().nbytes();
            sd += p.tensor().nbytes();
        }
        for (_, b) in &n.buffers {
            nb += 1;
            bb += b.tensor().nbytes();
            if b.persistent() {
                sd += b.tensor().nbytes();
            }
        }
    }
    out.push_str(&format!(
        "{} module(s); {np} parameter(s), {}; {nb} buffer(s), {}; state_dict {}",
        nodes.len(),
        human(bp),
        human(bb),
        human(sd)
    ));
    out
}
