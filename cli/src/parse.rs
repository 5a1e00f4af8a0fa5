//! clap value parsers: arguments are typed when the command line is read, so a bad size,
//! limit, platform or digest is a usage error (exit 2) before anything is opened.

use layerstore_import::{Platform, SourceSpec};
use layerstore_store::{Digest, Limits};

/// A byte count with an optional K/M/G/T suffix (binary: `512M`, `2G`, `1KiB`).
pub fn size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => (
            &s[..i],
            match s[i..].to_ascii_uppercase().trim_end_matches(['B', 'I']) {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(format!("invalid size {s:?} (use e.g. 512M or 2G)")),
            },
        ),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (use e.g. 512M or 2G)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// One `--limit NAME=VALUE`, checked against the names [`Limits::set`] knows.
#[derive(Clone, Debug)]
pub struct LimitSetting {
    pub name: String,
    pub value: u64,
}

pub fn limit(s: &str) -> Result<LimitSetting, String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, not {s:?}"))?;
    let value = size(value)?;
    Limits::default().set(name, value)?;
    Ok(LimitSetting {
        name: name.into(),
        value,
    })
}

/// `limits` with `settings` applied in order.
pub fn apply_limits(mut limits: Limits, settings: &[LimitSetting]) -> Limits {
    for s in settings {
        limits
            .set(&s.name, s.value)
            .expect("the value parser checked the name");
    }
    limits
}

/// `os/arch[/variant]`.
pub fn platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).map_err(|e| e.to_string())
}

/// A `sha256:` digest, whole.
pub fn digest(s: &str) -> Result<Digest, String> {
    s.parse()
        .map_err(|e: layerstore_store::Error| e.to_string())
}

/// An image source, checked for its form (`oci:DIR[:REF]`, …); kept as typed, since the import
/// records it as the image's origin.
pub fn source(s: &str) -> Result<String, String> {
    SourceSpec::parse(s).map_err(|e| e.to_string())?;
    Ok(s.into())
}

/// A local label `KEY=VALUE` (the value may be empty).
pub fn label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, not {s:?}"))?;
    layerstore_store::labels::check_label(k, v).map_err(|e| e.to_string())?;
    Ok((k.to_string(), v.to_string()))
}

/// A filter `label=KEY[=VALUE]` (podman's syntax).
pub fn filter(s: &str) -> Result<layerstore_store::labels::LabelFilter, String> {
    let rest = s
        .strip_prefix("label=")
        .ok_or_else(|| format!("unknown filter {s:?} (the filter is label=KEY[=VALUE])"))?;
    let (key, value) = match rest.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (rest, None),
    };
    if key.is_empty() {
        return Err(format!("filter {s:?} has an empty key"));
    }
    Ok(layerstore_store::labels::LabelFilter {
        key: key.to_string(),
        value,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(super::size("512"), Ok(512));
        assert_eq!(super::size("1K"), Ok(1024));
        assert_eq!(super::size("2GiB"), Ok(2 << 30));
        assert_eq!(super::size("3m"), Ok(3 << 20));
        assert!(super::size("12Q").is_err());
        assert!(super::size("").is_err());
        assert!(super::size("99999999999999T").is_err());
    }

    #[test]
    fn limits_name_a_known_limit() {
        let l = super::limit("layer-bytes=1K").unwrap();
        assert_eq!((l.name.as_str(), l.value), ("layer-bytes", 1024));
        assert!(super::limit("bogus=1").is_err());
        assert!(super::limit("entries").is_err());
    }
}
