//! Platform code. procman supports Unix; Linux gets the handler-free pidfd wait path.

#[cfg(unix)]
pub(crate) mod cgroup;
#[cfg(unix)]
pub(crate) mod subreaper;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(not(unix))]
compile_error!("procman supports Unix (Linux, macOS, the BSDs) only");
