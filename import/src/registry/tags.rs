//! A repository's tags (`GET /v2/<name>/tags/list`, paginated with `n`/`last` and the `Link`
//! header) and a tag's manifest digest, without fetching a layer: what `latest docker://…`
//! needs to pick the newest version tag and pin it by digest.

use layerstore_store::{Digest, Limits};
use url::Url;

use super::{Reference, RegistryContainer, RegistryError, RegistryOptions, client};
use crate::error::{Error, Result};

/// Tags asked for per page. Registries may return fewer (and then send a `Link` to the next).
const PAGE: usize = 1000;
/// Pages followed before giving up: a registry that keeps sending `Link`s loops.
const MAX_PAGES: usize = 10_000;
/// One page's JSON is small; a larger one is refused.
const MAX_PAGE_BYTES: u64 = 16 << 20;

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The `rel="next"` target of a `Link` header (RFC 8288), relative to `url`.
fn next_link(url: &Url, link: &str) -> Option<Url> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params.split(';').any(|p| {
            p.trim()
                .strip_prefix("rel=")
                .is_some_and(|v| v.trim_matches('"').split(' ').any(|r| r == "next"))
        });
        next.then(|| url.join(target).ok()).flatten()
    })
}

impl RegistryContainer {
    /// Every tag of the repository, in the order the registry lists them, following `Link`
    /// pagination (the distribution spec's `n` and `last`).
    pub fn tags(&self) -> Result<Vec<String>> {
        self.tags_paged(PAGE)
    }

    /// [`RegistryContainer::tags`], asking for `n` tags per page (the registry may send
    /// fewer, or ignore `n`).
    pub fn tags_paged(&self, n: usize) -> Result<Vec<String>> {
        let repo = &self.reference.repository;
        let mut url = self.client.url(&format!("v2/{repo}/tags/list"));
        url.query_pairs_mut()
            .append_pair("n", &n.max(1).to_string());
        let mut tags = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            if !seen.insert(url.clone()) || seen.len() > MAX_PAGES {
                return Err(RegistryError::RedirectLoop {
                    url: url.to_string(),
                    hops: seen.len(),
                }
                .into());
            }
            let resp = self
                .client
                .get(&url, repo, &[("Accept", "application/json")])?;
            let status = resp.status().as_u16();
            if status == 404 {
                return Err(RegistryError::ManifestUnknown {
                    registry: self.reference.registry.clone(),
                    repository: repo.clone(),
                    reference: "tags/list".into(),
                    message: "no such repository".into(),
                }
                .into());
            }
            if status != 200 {
                return Err(client::status_error(&url, status, resp).into());
            }
            let next = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| next_link(&url, l));
            let body = resp
                .into_body()
                .with_config()
                .limit(MAX_PAGE_BYTES)
                .read_to_vec()
                .map_err(|e| client::transport(&url, e))?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| Error::BadJson {
                what: format!("tag list {url}"),
                source: e,
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
    }

    /// The digest of the manifest (or index) `tag` names now: the sha256 of its exact bytes,
    /// checked like any pull's. No config or layer is fetched.
    pub fn tag_digest(&self, tag: &str, limits: &Limits) -> Result<Digest> {
        let (_, _, digest) = self.fetch_manifest(tag, None, limits)?;
        Ok(digest)
    }
}

/// Connect to the repository `reference` names (its tag or digest is ignored) and list its
/// tags.
pub fn list_tags(reference: &Reference, opts: &RegistryOptions) -> Result<Vec<String>> {
    super::open(reference, opts)?.tags()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_and_resolved_against_the_request() {
        let base = Url::parse("http://r:5000/v2/app/tags/list?n=2").unwrap();
        let next = |l: &str| next_link(&base, l).map(|u| u.to_string());
        assert_eq!(
            next(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("http://r:5000/v2/app/tags/list?last=b&n=2")
        );
        assert_eq!(
            next(r#"<http://other/x?last=c>; rel=next"#).as_deref(),
            Some("http://other/x?last=c")
        );
        assert_eq!(
            next(r#"</p>; rel="prev", </n?last=z>; rel="next""#).as_deref(),
            Some("http://r:5000/n?last=z")
        );
        assert_eq!(next(r#"</p>; rel="prev""#), None);
        assert_eq!(next("garbage"), None);
    }
}
