//! Unit and property tests of the model, matching and the grant check.
