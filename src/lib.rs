//! procman
