//! Per-test output directories that survive the test, so logs, results and screenshots can be
//! read after a failure.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `<target>/test-output/<name>/`, emptied when created. Use the test function's name: two
/// tests must not share one. `SHOAL_TEST_OUT` overrides the `<target>/test-output` part.
#[derive(Debug, Clone)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Result<TestDir> {
        anyhow::ensure!(
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'),
            "test dir name {name:?}: use [A-Za-z0-9_.-]"
        );
        let path = output_root().join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("emptying {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TestDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// A subdirectory, created.
    pub fn subdir(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(p)
    }
}

/// Where every test's output directory goes.
pub fn output_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SHOAL_TEST_OUT") {
        return PathBuf::from(dir);
    }
    target_dir().join("test-output")
}

/// The cargo target directory the running test binary was built into.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // Test binaries live in <target>/<profile>/deps/; cargo marks <target> with CACHEDIR.TAG.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()) {
            return dir.to_path_buf();
        }
    }
    workspace_root().join("target")
}

/// The repository root (this crate is `<root>/crates/testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit is two levels below the workspace root")
        .to_path_buf()
}
