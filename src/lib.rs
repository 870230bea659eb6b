//! procman
#![deny(missing_docs)]

#[cfg(feature = "cli")]
pub mod jobfile;
