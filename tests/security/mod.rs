//! The security suite: each test performs one attack against the real daemons (or the
//! real binary) and asserts that it fails, with the reason a user would read. The table of
//! attacks and what each protects is in `docs/security.md`; every row there names its test
//! here.

mod agent;
mod control;
mod data;
