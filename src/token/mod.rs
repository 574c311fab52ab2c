//! Tokens. Being written.
