//! etcd's v3 gRPC API, generated from its protos by `tools/etcd-proto` (see its README).
//! Only the client side is generated; the code is included as it came out.

#![allow(
    missing_docs,
    dead_code,
    clippy::all,
    clippy::pedantic,
    rustdoc::all,
    unreachable_pub
)]

pub mod authpb {
    include!("authpb.rs");
}
pub mod mvccpb {
    include!("mvccpb.rs");
}
pub mod etcdserverpb {
    include!("etcdserverpb.rs");
}
