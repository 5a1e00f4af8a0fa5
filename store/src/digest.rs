//! Identifiers: OCI digests (`sha256:…`, parsed strictly) and object ids (blake3 of content).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An OCI content digest. Only `sha256` is accepted, with exactly 64 lowercase hex digits, so a
/// digest string can never be a path (`sha256:../../x`) or an alias of another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(bytes).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From the raw 32 bytes of a finished sha256.
    pub fn from_raw(raw: [u8; 32]) -> Self {
        Digest(raw)
    }

    /// The 64 hex digits, without the algorithm prefix (the name of the blob in an OCI layout).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidDigest {
            digest: s.chars().take(200).collect(),
            reason,
        };
        let (algo, hexpart) = s
            .split_once(':')
            .ok_or_else(|| bad("no algorithm prefix"))?;
        if algo != "sha256" {
            return Err(bad("only sha256 digests are supported"));
        }
        if hexpart.len() != 64 {
            return Err(bad("sha256 needs exactly 64 hex digits"));
        }
        if !hexpart
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad("digest must be lowercase hex"));
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(hexpart, &mut raw).map_err(|_| bad("not hex"))?;
        Ok(Digest(raw))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A streaming sha256 that yields a [`Digest`].
#[derive(Default, Clone)]
pub struct DigestHasher(sha2::Sha256);

impl DigestHasher {
    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        self.0.update(bytes);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        use sha2::Digest as _;
        Digest(self.0.finalize().into())
    }
}

/// Hashes an [`ObjectId`] by its first eight bytes: they are blake3 output already, so a keyed
/// hash over all 32 would only cost time. For maps over many ids (df, gc, fsck).
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
    }
}

/// A map keyed by object ids, hashed with [`IdHasher`].
pub type IdMap<V> = std::collections::HashMap<ObjectId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The identity of a stored file: blake3 of its content and nothing else (not mode, owner,
/// xattrs or name), so the same bytes are stored once however they are labelled.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// The id of `content`.
    pub fn of(content: &[u8]) -> Self {
        ObjectId(*blake3::hash(content).as_bytes())
    }

    /// From a finished blake3 hash.
    pub fn from_hash(h: blake3::Hash) -> Self {
        ObjectId(*h.as_bytes())
    }

    /// From the raw bytes kept in the index.
    pub fn from_slice(raw: &[u8]) -> Option<Self> {
        raw.try_into().ok().map(ObjectId)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The path of the loose object relative to the store's `objects/` directory: `ab/cdef…`.
    pub fn rel_path(&self) -> String {
        let h = self.hex();
        format!("{}/{}", &h[..2], &h[2..])
    }
}

impl FromStr for ObjectId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut raw = [0u8; 32];
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::InvalidObjectId {
                id: s.chars().take(100).collect(),
            });
        }
        hex::decode_to_slice(s, &mut raw).map_err(|_| Error::InvalidObjectId { id: s.into() })?;
        Ok(ObjectId(raw))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.hex())
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_keep_every_id_apart() {
        let ids: Vec<ObjectId> = (0u32..10_000)
            .map(|i| ObjectId::of(&i.to_le_bytes()))
            .collect();
        let map: IdMap<usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        assert_eq!(map.len(), ids.len());
        assert!(ids.iter().enumerate().all(|(i, id)| map[id] == i));
    }

    #[test]
    fn digest_parsing_is_strict() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(good.parse::<Digest>().unwrap().to_string(), good);
        for bad in [
            "sha256:../../x".to_string(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
            format!("sha512:{}", "ab".repeat(32)),
            format!("sha256:{}/", "ab".repeat(32)),
            "ab".repeat(32),
            String::new(),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn object_id_round_trips_through_hex() {
        let id = ObjectId::of(b"hello");
        assert_eq!(id.hex().parse::<ObjectId>().unwrap(), id);
        assert_eq!(id.rel_path().len(), 65);
        assert!("zz".parse::<ObjectId>().is_err());
    }
}
