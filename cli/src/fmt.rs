//! Human formatting helpers.

pub use layerstore_store::rfc3339;
use std::io::{self, Write};

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `drwxr-xr-x`-style mode string.
pub fn mode(kind: char, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (i, shift) in [6u32, 3, 0].iter().enumerate() {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let special = match i {
            0 => mode & 0o4000 != 0,
            1 => mode & 0o2000 != 0,
            _ => mode & 0o1000 != 0,
        };
        let exec = bits & 1 != 0;
        s.push(match (special, exec, i) {
            (true, true, 2) => 't',
            (true, false, 2) => 'T',
            (true, true, _) => 's',
            (true, false, _) => 'S',
            (false, true, _) => 'x',
            (false, false, _) => '-',
        });
    }
    s
}

/// `1 layer`, `2 layers`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// How a column lines up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Write a table whose columns are as wide as their longest cell (header included), two
/// spaces apart; the last column is not padded.
pub fn table(w: &mut dyn Write, header: &[(&str, Align)], rows: &[Vec<String>]) -> io::Result<()> {
    let aligns: Vec<Align> = header.iter().map(|(_, a)| *a).collect();
    let mut all = Vec::with_capacity(rows.len() + 1);
    all.push(header.iter().map(|(h, _)| h.to_string()).collect());
    all.extend_from_slice(rows);
    columns(w, &aligns, &all)
}

/// Write rows in columns as wide as their longest cell, two spaces apart; the last column is
/// not padded.
pub fn columns(w: &mut dyn Write, aligns: &[Align], rows: &[Vec<String>]) -> io::Result<()> {
    let mut width = vec![0; aligns.len()];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if i > 0 {
                line.push_str("  ");
            }
            if aligns[i] == Align::Right {
                line.extend(std::iter::repeat_n(' ', pad));
            }
            line.push_str(c);
            if aligns[i] == Align::Left && i + 1 < r.len() {
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(w, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_fit_the_longest_cell() {
        use super::Align::{Left, Right};
        let mut v = Vec::new();
        let rows = vec![
            vec!["a-very-long-image-name".to_string(), "1".to_string()],
            vec!["b".to_string(), "22".to_string()],
        ];
        super::table(&mut v, &[("NAME", Left), ("N", Right)], &rows).unwrap();
        let want = format!(
            "NAME{}N\na-very-long-image-name{}1\nb{}22\n",
            " ".repeat(21),
            " ".repeat(3),
            " ".repeat(23)
        );
        assert_eq!(String::from_utf8(v).unwrap(), want);
    }

    #[test]
    fn counts_take_the_singular_for_one() {
        assert_eq!(super::plural(1, "layer", "layers"), "1 layer");
        assert_eq!(super::plural(0, "layer", "layers"), "0 layers");
    }

    #[test]
    fn formats() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::mode('-', 0o4755), "-rwsr-xr-x");
        assert_eq!(super::mode('d', 0o1777), "drwxrwxrwt");
    }
}
