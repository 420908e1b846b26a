//! Object stores: a location such as `s3://bucket/prefix` resolved into an
//! [`ObjectStore`] client, for data roots that live in object storage and for results
//! written there.
//!
//! Credentials, region and endpoint come from the environment, as the clouds' own tools
//! read them: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL` for S3 (and S3-compatible servers);
//! `GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS` for GCS; `AZURE_STORAGE_*`
//! for Azure. `http(s)://` locations are read as plain HTTP, listed with WebDAV.
//! Nothing here knows about tables.

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

/// Why an object-store location cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{0}` is not a URL kpi can read: use s3://, gs://, az:// or http(s)://")]
    Unsupported(String),
    #[error("cannot use {url}: {message}")]
    Config { url: String, message: String },
    #[error("{action} {url} failed: {message}")]
    Request {
        action: &'static str,
        url: String,
        message: String,
    },
}

/// Whether `location` names an object-store URL (`scheme://…`) rather than a local path.
pub fn is_url(location: &Path) -> bool {
    location.to_str().is_some_and(|s| {
        s.split_once("://").is_some_and(|(scheme, _)| {
            scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric())
        })
    })
}

/// A folder in an object store: the client and the prefix under it.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `scheme://host/`, the URL DataFusion finds the store under.
    pub store_url: Url,
    pub store: Arc<dyn ObjectStore>,
    /// The folder's key prefix, without a trailing `/` (empty for a bucket's root).
    pub prefix: ObjectPath,
}

impl Remote {
    /// The store and prefix of `location`, configured from the environment. No request is
    /// made: a bad bucket or bad credentials show at the first listing.
    pub fn open(location: &str) -> Result<Remote, StoreError> {
        let url = Url::parse(location).map_err(|_| StoreError::Unsupported(location.into()))?;
        let config = |e: object_store::Error| StoreError::Config {
            url: location.to_string(),
            message: e.to_string(),
        };
        let Some(host) = url.host_str() else {
            return Err(StoreError::Unsupported(location.into()));
        };
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(location);
                // The AWS CLI talks to an `http://` endpoint (a local S3-compatible server)
                // without further ado; object_store asks for it to be allowed.
                if std::env::var("AWS_ENDPOINT_URL")
                    .or_else(|_| std::env::var("AWS_ENDPOINT"))
                    .is_ok_and(|e| e.starts_with("http://"))
                {
                    b = b.with_allow_http(true);
                }
                Arc::new(b.build().map_err(config)?)
            }
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(config)?,
            ),
            "az" | "azure" | "abfs" | "abfss" | "adl" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(config)?,
            ),
            "http" | "https" => Arc::new(
                object_store::http::HttpBuilder::new()
                    .with_url(&url[..url::Position::BeforePath])
                    .with_client_options(
                        object_store::ClientOptions::new().with_allow_http(url.scheme() == "http"),
                    )
                    .build()
                    .map_err(config)?,
            ),
            _ => return Err(StoreError::Unsupported(location.into())),
        };
        let base = match url.port() {
            Some(p) => format!("{}://{host}:{p}/", url.scheme()),
            None => format!("{}://{host}/", url.scheme()),
        };
        let store_url = Url::parse(&base).map_err(|_| StoreError::Unsupported(location.into()))?;
        let prefix = ObjectPath::from_url_path(url.path()).map_err(|e| StoreError::Config {
            url: location.to_string(),
            message: e.to_string(),
        })?;
        Ok(Remote {
            store_url,
            store,
            prefix,
        })
    }

    /// The URL of the object at `key`.
    pub fn url_of(&self, key: &ObjectPath) -> String {
        format!("{}{key}", self.store_url)
    }

    /// The URL of the folder itself.
    pub fn url(&self) -> String {
        self.url_of(&self.prefix)
    }

    /// The key of `relative` (`/`-separated) under the folder.
    pub fn key(&self, relative: &str) -> ObjectPath {
        relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |k, part| k.join(part))
    }

    /// Every object under the folder, at any depth, sorted by key.
    pub async fn list(&self) -> Result<Vec<ObjectMeta>, StoreError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let mut all: Vec<ObjectMeta> = self
            .store
            .list(prefix)
            .try_collect()
            .await
            .map_err(|e| self.failed("listing", &self.prefix, &e))?;
        all.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(all)
    }

    /// Writes `bytes` as the object at `key`, whole: an object store makes a finished
    /// upload visible at once, never part of one.
    pub async fn put(&self, key: &ObjectPath, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store
            .put(key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.failed("writing", key, &e))
    }

    fn failed(
        &self,
        action: &'static str,
        key: &ObjectPath,
        e: &object_store::Error,
    ) -> StoreError {
        StoreError::Request {
            action,
            url: self.url_of(key),
            message: reason(e),
        }
    }
}

/// An object-store registry that makes the store of any URL it has not been given, from
/// the URL and the environment, as [`Remote::open`] does. A Ballista scheduler and its
/// executors get the run's plans, not its session: with this registry they read the
/// same buckets as the client, with their own machines' credentials.
#[derive(Debug, Default)]
pub struct EnvStores {
    inner: datafusion::execution::object_store::DefaultObjectStoreRegistry,
}

impl datafusion::execution::object_store::ObjectStoreRegistry for EnvStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.inner.get_store(url) {
            return Ok(store);
        }
        let remote = Remote::open(url.as_str())
            .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
        self.inner
            .register_store(&remote.store_url, remote.store.clone());
        Ok(remote.store)
    }
}

/// The useful part of a store's error: the service's own code and message when its
/// response carried them (S3's XML `<Code>`/`<Message>`), else the error's text.
fn reason(e: &object_store::Error) -> String {
    let text = e.to_string();
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&format!("</{name}>"))?;
        Some(text[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{message} ({code})"),
        (Some(code), None) => code,
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert!(is_url(Path::new("s3://bucket/lake")));
        assert!(is_url(Path::new("https://example.com/lake/")));
        assert!(!is_url(Path::new("sample_data")));
        assert!(!is_url(Path::new("/tmp/a://b")));
        assert!(!is_url(Path::new("C://data")));
    }

    #[test]
    fn keys_and_urls_under_a_prefix() {
        let r = Remote::open("s3://bucket/lake/crm").unwrap();
        assert_eq!(r.store_url.as_str(), "s3://bucket/");
        assert_eq!(r.prefix.as_ref(), "lake/crm");
        assert_eq!(
            r.key("orders/year=2024/x.csv").as_ref(),
            "lake/crm/orders/year=2024/x.csv"
        );
        assert_eq!(r.url(), "s3://bucket/lake/crm");
        let root = Remote::open("s3://bucket").unwrap();
        assert_eq!(root.key("a.csv").as_ref(), "a.csv");
    }

    #[test]
    fn an_unknown_scheme_is_refused() {
        let e = Remote::open("ftp://host/x").unwrap_err();
        assert!(e.to_string().contains("use s3://, gs://, az://"), "{e}");
    }
}
