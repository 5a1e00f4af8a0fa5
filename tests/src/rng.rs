//! A small seeded PRNG and deterministic content generators.
//!
//! Nothing here depends on the platform: the same seed gives the same bytes
//! everywhere, so fixture digests are stable.

/// SplitMix64: tiny, fast, good enough for test data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

/// 64-bit FNV-1a hash (used to derive seeds from labels such as paths).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Rng {
    /// Generator with an explicit seed.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// Generator seeded from a label (e.g. a file path plus a salt).
    pub fn from_label(label: impl AsRef<[u8]>) -> Self {
        Rng::new(fnv1a64(label.as_ref()))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0..n` as usize.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "Rng::range({lo}, {hi})");
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A uniformly chosen element.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "for",
    "that",
    "with",
    "as",
    "on",
    "be",
    "by",
    "this",
    "are",
    "or",
    "it",
    "from",
    "at",
    "an",
    "not",
    "file",
    "package",
    "system",
    "version",
    "debian",
    "license",
    "software",
    "use",
    "under",
    "free",
    "copy",
    "source",
    "program",
    "library",
    "data",
    "may",
    "any",
    "which",
    "you",
    "if",
    "all",
    "will",
    "can",
    "other",
    "terms",
    "without",
    "distribute",
    "modify",
    "public",
    "general",
    "warranty",
    "support",
    "user",
    "config",
    "update",
    "security",
    "fix",
    "upstream",
    "release",
    "new",
    "build",
    "depends",
    "option",
    "default",
    "path",
    "directory",
    "value",
    "error",
    "return",
    "buffer",
    "memory",
    "stream",
    "handle",
    "signal",
    "process",
    "thread",
    "socket",
    "kernel",
    "module",
    "function",
    "argument",
    "string",
    "integer",
    "pointer",
    "structure",
    "table",
    "index",
    "entry",
    "header",
    "format",
    "archive",
    "compress",
    "checksum",
    "digest",
    "certificate",
    "protocol",
    "network",
    "address",
    "host",
    "port",
    "request",
    "response",
    "client",
    "server",
    "session",
    "timeout",
    "permission",
    "owner",
    "group",
    "mode",
    "link",
    "device",
    "mount",
    "image",
    "layer",
    "manifest",
    "closes",
    "bug",
    "cve",
    "patch",
];

const IDENTS: &[&str] = &[
    "init", "fini", "read", "write", "open", "close", "alloc", "free", "parse", "encode", "decode",
    "lookup", "insert", "remove", "flush", "lock", "unlock", "hash", "verify", "sign", "connect",
    "accept", "bind", "listen", "send", "recv", "poll", "seek", "stat", "copy", "move", "split",
    "join", "format", "scan", "match", "compile", "exec", "wait",
];

const PREFIXES: &[&str] = &[
    "ssl", "crypto", "bio", "evp", "x509", "pem", "asn1", "str", "mem", "io", "fs", "net", "rt",
    "gz", "zstd", "lzma", "xml", "json", "http", "tls", "dl", "pthread", "sig", "tz",
];

fn push_word(out: &mut Vec<u8>, rng: &mut Rng) {
    // Skewed towards the front of the list, like real text.
    let n = WORDS.len() as u64;
    let i = (rng.below(n) * rng.below(n) / n) as usize;
    out.extend_from_slice(WORDS[i].as_bytes());
}

/// Prose-like ASCII text of exactly `len` bytes, wrapped near 72 columns.
pub fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    let mut col = 0;
    while out.len() < len {
        let start = out.len();
        push_word(&mut out, rng);
        if rng.percent(6) {
            out.push(if rng.percent(50) { b'.' } else { b',' });
        }
        col += out.len() - start;
        if col > 64 + rng.index(12) {
            out.push(b'\n');
            col = 0;
        } else {
            out.push(b' ');
            col += 1;
        }
    }
    out.truncate(len);
    if let Some(last) = out.last_mut() {
        *last = b'\n';
    }
    out
}

/// `key = value` configuration text of about `len` bytes (whole lines).
pub fn conf(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    out.extend_from_slice(b"# Generated configuration; see the manual page.\n");
    while out.len() < len {
        if rng.percent(15) {
            out.extend_from_slice(b"# ");
            let l = rng.range(20, 60) as usize;
            out.extend_from_slice(&text(rng, l));
            continue;
        }
        push_word(&mut out, rng);
        out.push(b'_');
        push_word(&mut out, rng);
        out.extend_from_slice(b" = ");
        match rng.below(3) {
            0 => out.extend_from_slice(rng.below(100_000).to_string().as_bytes()),
            1 => out.extend_from_slice(if rng.percent(50) { b"yes" } else { b"no" }),
            _ => {
                out.push(b'/');
                push_word(&mut out, rng);
                out.push(b'/');
                push_word(&mut out, rng);
            }
        }
        out.push(b'\n');
    }
    out
}

/// Python-like source of about `len` bytes.
pub fn python_source(rng: &mut Rng, len: usize, module: &str) -> Vec<u8> {
    let mut out = format!("\"\"\"{module} module.\"\"\"\n\nimport os\nimport sys\n\n").into_bytes();
    while out.len() < len {
        let name = format!("{}_{}", rng.pick(IDENTS), rng.pick(WORDS));
        if rng.percent(20) {
            out.extend_from_slice(format!("class {}:\n", capitalize(&name)).as_bytes());
        }
        out.extend_from_slice(
            format!("def {name}(self, {}, *args):\n", rng.pick(WORDS)).as_bytes(),
        );
        out.extend_from_slice(b"    \"\"\"");
        let l = rng.range(30, 120) as usize;
        let doc = text(rng, l);
        out.extend_from_slice(&doc[..doc.len() - 1]);
        out.extend_from_slice(b"\"\"\"\n");
        for _ in 0..rng.range(2, 9) {
            let line = match rng.below(4) {
                0 => format!(
                    "    {} = {}({})\n",
                    rng.pick(WORDS),
                    rng.pick(IDENTS),
                    rng.pick(WORDS)
                ),
                1 => format!(
                    "    if {} is None:\n        raise ValueError(\"{} {}\")\n",
                    rng.pick(WORDS),
                    rng.pick(WORDS),
                    rng.pick(WORDS)
                ),
                2 => format!("    for item in {}:\n        yield item\n", rng.pick(WORDS)),
                _ => format!("    return {}.{}()\n", rng.pick(WORDS), rng.pick(IDENTS)),
            };
            out.extend_from_slice(line.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// Shared "instruction idioms" every generated binary draws on, so files
/// resemble each other the way real executables do.
fn common_tokens() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(0x0b17_a21e);
    (0..96)
        .map(|_| {
            let n = rng.range(1, 7) as usize;
            rng.bytes(n)
        })
        .collect()
}

/// Executable-like bytes of exactly `len`: an ELF-looking header, a "code"
/// section built from a skewed token palette (compresses maybe 2-3x), a
/// string table, a slice of incompressible data and alignment padding.
pub fn binary(rng: &mut Rng, len: usize) -> Vec<u8> {
    let common = common_tokens();
    let own: Vec<Vec<u8>> = (0..160)
        .map(|_| {
            let n = rng.range(2, 8) as usize;
            rng.bytes(n)
        })
        .collect();
    let mut out = Vec::with_capacity(len + 64);
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\x3e\0\x01\0\0\0");
    out.extend_from_slice(&rng.bytes(40));
    let code_end = len * 70 / 100;
    while out.len() < code_end {
        let r = rng.below(100);
        if r < 45 {
            let n = common.len() as u64;
            let i = (rng.below(n) * rng.below(n) / n) as usize;
            out.extend_from_slice(&common[i]);
        } else if r < 90 {
            let n = own.len() as u64;
            let i = (rng.below(n) * rng.below(n) / n) as usize;
            out.extend_from_slice(&own[i]);
        } else {
            // An "immediate": address-like little-endian value.
            let v = 0x0040_0000u32 + rng.below(0x4_0000) as u32;
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let strings_end = len * 88 / 100;
    while out.len() < strings_end {
        let s = format!(
            "{}_{}_{}",
            rng.pick(PREFIXES),
            rng.pick(IDENTS),
            rng.pick(WORDS)
        );
        out.extend_from_slice(s.as_bytes());
        out.push(0);
        if rng.percent(10) {
            out.extend_from_slice(b"GLIBC_2.34\0");
        }
    }
    let random_end = len * 96 / 100;
    if out.len() < random_end {
        let n = random_end - out.len();
        out.extend_from_slice(&rng.bytes(n));
    }
    out.resize(len, 0);
    out
}

/// A "security update" of a binary: a few regions rewritten in place, one
/// insertion and one deletion (shifting everything after them), the way a
/// rebuilt library differs from its predecessor.
pub fn patch_binary(orig: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = orig.to_vec();
    if out.len() < 4096 {
        let i = rng.index(out.len().max(1));
        if let Some(b) = out.get_mut(i) {
            *b ^= 0x5a;
        }
        return out;
    }
    for _ in 0..3 {
        let n = (rng.range(64, 2048) as usize).min(out.len() / 8);
        let at = rng.index(out.len() - n);
        let fresh = binary(rng, n);
        out[at..at + n].copy_from_slice(&fresh);
    }
    let n = rng.range(512, 3072) as usize;
    let at = rng.index(out.len());
    let ins = binary(rng, n);
    out.splice(at..at, ins);
    let n = (rng.range(256, 1024) as usize).min(out.len() / 8);
    let at = rng.index(out.len() - n);
    out.drain(at..at + n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        let a = binary(&mut Rng::new(7), 100_000);
        let b = binary(&mut Rng::new(7), 100_000);
        assert_eq!(a, b);
        assert_eq!(a.len(), 100_000);
        assert_ne!(a, binary(&mut Rng::new(8), 100_000));
        let gz = crate::compress(&a, crate::Compression::Gzip);
        let ratio = a.len() as f64 / gz.len() as f64;
        assert!((1.3..6.0).contains(&ratio), "binary ratio {ratio}");
        let t = text(&mut Rng::new(1), 5000);
        assert_eq!(t.len(), 5000);
        assert!(t.is_ascii());
        let p = patch_binary(&a, &mut Rng::new(3));
        assert_ne!(p, a);
        let same = a.iter().zip(&p).take(1000).filter(|(x, y)| x == y).count();
        assert!(same > 0);
        assert_eq!(Rng::new(1).next_u64(), Rng::new(1).next_u64());
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    }
}
