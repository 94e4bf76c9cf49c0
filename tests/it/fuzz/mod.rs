//! The fuzz harnesses and the past crashes, replayed in the ordinary test build.

mod regressions;
mod replay;
