//! Helpers shared by the integration tests: child processes, a small HTTP client, the test
//! image, keys, the registry, our server, the clients, and the scenario runner.

pub mod clients;
pub mod connect_proxy;
pub mod dockerd;
pub mod http;
pub mod idp;
pub mod image;
pub mod jwt;
pub mod keys;
pub mod proc;
pub mod redis;
pub mod registry;
pub mod scenario;
pub mod server;
pub mod stack;
pub mod tools;
pub mod webstack;
