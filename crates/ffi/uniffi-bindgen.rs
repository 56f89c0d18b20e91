//! UniFFI's binding generator at exactly the library's UniFFI version (`make bindings`).
fn main() {
    uniffi::uniffi_bindgen_main()
}
