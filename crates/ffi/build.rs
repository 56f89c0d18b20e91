//! Writes `include/shoal.h` from the C ABI with cbindgen. The header is committed; it is only
//! rewritten when it changes, so builds do not dirty the tree.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/c_api.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let config = match cbindgen::Config::from_file(dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => panic!("crates/ffi/cbindgen.toml: {e}"),
    };
    let bindings =
        match cbindgen::Builder::new().with_config(config).with_src(dir.join("src/c_api.rs")).generate() {
            Ok(b) => b,
            Err(e) => panic!("cbindgen could not read src/c_api.rs: {e}"),
        };
    let mut text = Vec::new();
    bindings.write(&mut text);
    let path = dir.join("include/shoal.h");
    if std::fs::read(&path).ok().as_deref() != Some(text.as_slice()) {
        if let Err(e) = std::fs::write(&path, &text) {
            panic!("writing {}: {e}", path.display());
        }
    }
}
