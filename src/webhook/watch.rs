//! Calls a reload function whenever files change on disk, as the kubelet updates a mounted
//! Secret or ConfigMap, and every minute in case the file system reports nothing. The serving
//! certificate ([`super::tls`]) and the policy file ([`super::policy_file`]) both reload this way.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// How often the files are re-read even when no change was reported, in case the file system
/// does not report changes (some network and overlay file systems don't).
const POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Lets a writer finish every file before they are read.
pub(super) const SETTLE_DELAY: Duration = Duration::from_millis(250);

/// Calls `reload` after any of `files` may have changed, until the guard is dropped; one reload
/// at a time, each awaited before the next. Must be called within a tokio runtime. On error,
/// returns the path that could not be watched.
pub fn watch<F, Fut>(files: &[&Path], reload: F) -> Result<WatchGuard, (PathBuf, notify::Error)>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use notify::Watcher as _;
    let changed = Arc::new(tokio::sync::Notify::new());
    let signal = changed.clone();
    let first = files
        .first()
        .map(|path| path.to_path_buf())
        .unwrap_or_default();
    let mut watcher = notify::recommended_watcher(move |_event| signal.notify_one())
        .map_err(|source| (first, source))?;
    // Watch the directories, not the files: a mounted Secret or ConfigMap is updated by
    // swapping a symlink next to the files, which a watch on the old file would never see.
    let mut dirs: Vec<&Path> = files
        .iter()
        .map(|path| {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        })
        .collect();
    dirs.dedup();
    for dir in dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(|source| (dir.to_owned(), source))?;
    }
    let task = tokio::spawn(async move {
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.tick().await;
        loop {
            tokio::select! {
                () = changed.notified() => tokio::time::sleep(SETTLE_DELAY).await,
                _ = poll.tick() => {}
            }
            reload().await;
        }
    });
    Ok(WatchGuard {
        _watcher: Box::new(watcher),
        task,
    })
}

/// Keeps a watch running.
pub struct WatchGuard {
    _watcher: Box<dyn notify::Watcher + Send>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}
