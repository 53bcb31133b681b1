//! The extraction agent: `dbhaul agent configure` ([`configure`]) writes its folder, and
//! `dbhaul agent serve` ([`serve`]) runs its HTTPS API and its [`supervisor`], which runs
//! the subtasks it is given and keeps their status in its own store. An agent never needs a
//! controller to finish its work.

mod assignments;
pub mod config;
pub mod configure;
mod prepare;
pub mod supervisor;
mod views;

/// Run blocking work (ODBC, Argon2) on a thread of its own and await its result.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("dbhaul-blocking".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.await
        .map_err(|_| "the worker thread ended without an answer".to_string())
}
