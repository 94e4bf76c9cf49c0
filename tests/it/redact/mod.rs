//! `scopevault redact`: the CLI, every form of a secret, Playwright traces.

mod cli;
mod forms;
mod languages;
mod node;
mod playwright;
