//! Configuration: the YAML file shape and its validated runtime form.

pub mod file;
