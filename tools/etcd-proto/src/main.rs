//! Compiles etcd's v3 API protos into the Rust client code ebb's etcd store uses, so that
//! building ebb needs no `protoc`. Usage: `cargo run -- PROTO_ROOT OUT_DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: etcd-proto-gen PROTO_ROOT OUT_DIR".into());
    };
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(&out)
        .compile_protos(&[format!("{root}/etcd/api/etcdserverpb/rpc.proto")], &[root])?;
    Ok(())
}
