//! Bounded reads of the files users and operators hand to ppml: model files,
//! images and labels, parties files, certificates and keys.
//!
//! `std::fs::read` trusts the path: `--model /dev/zero` read zeros until the
//! machine ran out of memory, and a named pipe blocked forever. Here a path
//! must name a regular file (symlinks are followed), its size is checked
//! against a cap before anything is allocated, and the read stops one byte
//! past the cap even if the file grows meanwhile. The invariant: no read
//! allocates more than `max` bytes or waits on anything but the disk.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("ppml-files-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let f = dir.join("small.txt");
//! std::fs::write(&f, b"hello").unwrap();
//! assert_eq!(ppml_files::read_bounded(&f, 16).unwrap(), b"hello");
//! let e = ppml_files::read_bounded(&f, 4).unwrap_err();
//! assert!(e.to_string().contains("above the limit"));
//! # #[cfg(unix)]
//! assert!(ppml_files::read_bounded(std::path::Path::new("/dev/zero"), 16).is_err());
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::io::{self, Read};
use std::path::Path;

/// Cap for model and data files (models, `.npy`, IDX, images): 1 GiB, far
/// above MNIST's 47 MB of raw training images or a 100-million-parameter
/// model, far below what would exhaust a machine.
pub const MAX_DATA_FILE: u64 = 1 << 30;

/// Cap for small text files (parties files, PEM certificates and keys): 1 MiB.
pub const MAX_TEXT_FILE: u64 = 1 << 20;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Reads the whole regular file at `path`, if it holds at most `max` bytes.
///
/// Errors (as `io::Error`, whose message callers put after the path): the
/// path names no regular file (a device such as `/dev/zero`, a pipe, a
/// socket or a directory: `InvalidInput`), the file holds more than `max`
/// bytes (`InvalidInput`, checked from its size before reading and again
/// while reading), or the open or read failed.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    // Checked before opening: opening a named pipe blocks until a writer
    // comes.
    check_regular(&std::fs::metadata(path)?)?;
    let file = std::fs::File::open(path)?;
    // The opened file itself (the path may have changed in between).
    let md = file.metadata()?;
    check_regular(&md)?;
    if md.len() > max {
        return Err(too_large(md.len(), max));
    }
    // Some files (e.g. under /proc) report size 0: the cap still holds.
    let mut buf = Vec::with_capacity(md.len() as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(too_large(buf.len() as u64, max));
    }
    Ok(buf)
}

/// [`read_bounded`] for UTF-8 text.
pub fn read_bounded_to_string(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")))
}

fn check_regular(md: &std::fs::Metadata) -> io::Result<()> {
    if md.is_file() {
        Ok(())
    } else if md.is_dir() {
        Err(invalid("is a directory, not a file".into()))
    } else {
        Err(invalid(
            "is not a regular file (a device, pipe or socket); give a file".into(),
        ))
    }
}

fn too_large(len: u64, max: u64) -> io::Error {
    invalid(format!("holds {len} bytes, above the limit of {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ppml-files-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn small_files_are_read_whole_and_the_cap_is_exact() {
        let d = dir();
        let f = d.join("a");
        std::fs::write(&f, vec![7u8; 100]).unwrap();
        assert_eq!(read_bounded(&f, 100).unwrap(), vec![7u8; 100]);
        let e = read_bounded(&f, 99).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("100 bytes"), "{e}");
        std::fs::write(&f, b"").unwrap();
        assert!(read_bounded(&f, 0).unwrap().is_empty());
        std::fs::write(&f, b"text").unwrap();
        assert_eq!(read_bounded_to_string(&f, 10).unwrap(), "text");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_bounded_to_string(&f, 10).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn devices_directories_and_missing_files_are_errors_not_hangs() {
        let d = dir();
        let e = read_bounded(&d, 10).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        assert_eq!(
            read_bounded(&d.join("missing"), 10).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        #[cfg(unix)]
        {
            for dev in ["/dev/zero", "/dev/urandom", "/dev/null"] {
                let e = read_bounded(Path::new(dev), 1 << 20).unwrap_err();
                assert!(e.to_string().contains("not a regular file"), "{dev}: {e}");
            }
            // A symlink to a device is the device.
            let link = d.join("zero");
            std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
            assert!(read_bounded(&link, 16).is_err());
            // A named pipe with no writer: opening it would block forever.
            let fifo = d.join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if matches!(made, Ok(s) if s.success()) {
                let e = read_bounded(&fifo, 16).unwrap_err();
                assert!(e.to_string().contains("not a regular file"), "{e}");
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn files_without_a_size_are_still_capped() {
        // /proc files report size 0 and have content.
        let p = Path::new("/proc/self/status");
        if p.exists() {
            assert!(!read_bounded(p, 1 << 20).unwrap().is_empty());
            let e = read_bounded(p, 8).unwrap_err();
            assert!(e.to_string().contains("above the limit"), "{e}");
        }
    }
}
