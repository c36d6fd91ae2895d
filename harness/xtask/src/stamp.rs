//! Cache stamps: a file beside a product that holds the key of what the
//! product was made from (digests of the sources, the config, the
//! compiler). A product is reused only when it exists and its stamp holds
//! the key wanted now; a stamp is removed before the product is remade and
//! written after it is complete, so a step that fails half-way never looks
//! done.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Stamp {
    path: PathBuf,
}

impl Stamp {
    /// The stamp of a directory's contents: `dir/hh-stamp`.
    pub fn in_dir(dir: &Path) -> Stamp {
        Stamp::at(dir.join("hh-stamp"))
    }

    /// A stamp kept at `path`, for a product that is not a directory of
    /// its own.
    pub fn at(path: PathBuf) -> Stamp {
        Stamp { path }
    }

    /// Whether the product was made from `key`.
    pub fn holds(&self, key: &str) -> bool {
        fs_err::read_to_string(&self.path).is_ok_and(|k| k == key)
    }

    /// Forgets the product before it is remade.
    pub fn clear(&self) {
        let _ = fs_err::remove_file(&self.path);
    }

    /// Records that the product, now complete, was made from `key`.
    pub fn write(&self, key: &str) -> Result<()> {
        fs_err::write(&self.path, key).context("write the cache stamp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_holds_only_its_own_key() {
        let dir = std::env::temp_dir().join(format!("xtask-stamp-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let stamp = Stamp::in_dir(&dir);
        assert!(!stamp.holds("k1"));
        stamp.write("k1").unwrap();
        assert!(stamp.holds("k1") && !stamp.holds("k2"));
        stamp.clear();
        assert!(!stamp.holds("k1"));
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
