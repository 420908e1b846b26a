//! Panics in the engine's libraries turned into errors.
//!
//! A corrupt file can make a reader panic (the Parquet footer decoder of parquet 59 does,
//! on a length that underflows: found by `fuzz/`'s `source` target). kpi promises an error
//! naming the file, never a crash, so every read of data runs under [`guarded`], and the
//! message of a caught panic is kept by a quiet panic hook rather than printed.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use futures::FutureExt;

static LAST: Mutex<Option<String>> = Mutex::new(None);

/// Installs the hook that records a panic's message and location instead of printing
/// them; [`message`] hands them to whoever catches the panic. Once per process.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST.lock() {
            *last = Some(format!("{what}{at}"));
        }
    }));
}

/// The last panic's message, once.
pub fn message() -> String {
    LAST.lock()
        .ok()
        .and_then(|mut l| l.take())
        .unwrap_or_else(|| "a panic".into())
}

/// Runs `f`; a panic inside becomes `Err` with its message.
pub async fn guarded<T>(f: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|_| message())
}
