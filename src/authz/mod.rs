//! Authorization (ACL). Being written.
