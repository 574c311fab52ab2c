//! Authentication: who is the client? Pure, no HTTP.

mod credentials;

pub use credentials::{Credentials, Labels, Secret};
