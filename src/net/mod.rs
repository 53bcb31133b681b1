//! Network connections shared by the source and the warehouse sides.

pub mod postgres;
pub mod tls;
