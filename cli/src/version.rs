//! Version-aware ordering of `org.opencontainers.image.version` values and registry tags:
//! `1.10 > 1.9 > 1.2`, numeric segments compared as numbers, a pre-release (`1.0-rc1`,
//! `1.0.0-beta.2`) before its release, a leading `v` ignored.

use std::cmp::Ordering;

/// One segment of a version: numbers sort before words at the same place (`1.0.1 > 1.0.a` is
/// not meaningful either way; this keeps the order total).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seg<'a> {
    Num(u128),
    Word(&'a str),
}

fn segments(s: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in s.split(['.', '-', '_', '+']) {
        // "rc1" is the word "rc" then the number 1, so rc2 < rc10.
        let mut rest = part;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                let (n, r) = rest.split_at(digits);
                out.push(n.parse().map_or(Seg::Word(n), Seg::Num));
                rest = r;
            } else {
                let letters = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
                let (w, r) = rest.split_at(letters);
                out.push(Seg::Word(w));
                rest = r;
            }
        }
    }
    out
}

/// The release part and the pre-release part (after the first `-`), build metadata (`+…`)
/// dropped.
fn split(v: &str) -> (&str, Option<&str>) {
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let v = v.split_once('+').map_or(v, |(v, _)| v);
    match v.split_once('-') {
        Some((rel, pre)) => (rel, Some(pre)),
        None => (v, None),
    }
}

/// Compare two versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ra, pa) = split(a);
    let (rb, pb) = split(b);
    let (sa, sb) = (segments(ra), segments(rb));
    // Missing trailing numeric segments count as 0: 1.2 == 1.2.0.
    let n = sa.len().max(sb.len());
    for i in 0..n {
        let x = sa.get(i).unwrap_or(&Seg::Num(0));
        let y = sb.get(i).unwrap_or(&Seg::Num(0));
        match x.cmp(y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    match (pa, pb) {
        (None, None) => Ordering::Equal,
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(x), Some(y)) => segments(x).cmp(&segments(y)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn version_ordering_table() {
        let table = [
            ("1.10", "1.9", Greater),
            ("1.9", "1.2", Greater),
            ("1.10", "1.2", Greater),
            ("1.2", "1.2.0", Equal),
            ("1.2.1", "1.2", Greater),
            ("2", "10", Less),
            ("1.0-rc1", "1.0", Less),
            ("1.0.0-beta.2", "1.0.0", Less),
            ("1.0-rc2", "1.0-rc10", Less),
            ("1.0-alpha", "1.0-beta", Less),
            ("1.0-rc1", "0.9", Greater),
            ("v1.10", "1.9", Greater),
            ("v2.0", "V2.0", Equal),
            ("1.0+build5", "1.0+build3", Equal),
            ("1.0.0+meta", "1.0.0-rc1", Greater),
            ("20241201", "20240915", Greater),
            ("1.01", "1.1", Equal),
            ("340282366920938463463374607431768211456", "1", Greater),
        ];
        for (a, b, want) in table {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn sorting_versions_puts_the_newest_last() {
        let mut v = vec!["1.10", "1.2", "1.9", "1.10-rc1", "1.9.1", "0.1"];
        v.sort_by(|a, b| compare(a, b));
        assert_eq!(v, ["0.1", "1.2", "1.9", "1.9.1", "1.10-rc1", "1.10"]);
    }
}
