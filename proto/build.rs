//! Generates the gRPC client and server code from `georouter/v1/*.proto`, the link's
//! control messages, and the RocketMQ 5 access point's `apache/rocketmq/v2/*.proto`.
//! `$PROTOC` wins when set; otherwise the vendored protoc binary is used, so a fresh
//! machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=georouter/v1/broker.proto");
    println!("cargo:rerun-if-changed=georouter/link/v1/link.proto");
    println!("cargo:rerun-if-changed=apache/rocketmq/v2/definition.proto");
    println!("cargo:rerun-if-changed=apache/rocketmq/v2/service.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // tonic-prost-build reads the protoc path from `$PROTOC`. `set_var` is unsafe in
        // edition 2024 because of other threads; a build script has none at this point.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("PROTOC", protoc);
        }
    }
    // The client API decodes with `codec::BoundedCodec`: element counts are bounded before
    // a message is decoded.
    tonic_prost_build::configure()
        .codec_path("crate::codec::BoundedCodec")
        .compile_protos(
            &["georouter/v1/broker.proto", "georouter/link/v1/link.proto"],
            &["."],
        )?;
    // The RocketMQ access point: the server, and a client for the tests (applications use
    // the official SDKs); prost's default codec.
    tonic_prost_build::configure().compile_protos(&["apache/rocketmq/v2/service.proto"], &["."])?;
    Ok(())
}
