//! IDX loader: the vendored files load, and every kind of damage is a clear error.

use flate2::Compression;
use flate2::write::GzEncoder;
use ppml_nn::NnError;
use ppml_nn::mnist::{self, Normalization};
use std::io::Write;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ppml-nn-loader-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn images_bytes(n: u32, rows: u32, cols: u32, pixels: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x0803u32.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&rows.to_be_bytes());
    b.extend_from_slice(&cols.to_be_bytes());
    b.extend((0..pixels).map(|i| (i % 256) as u8));
    b
}

fn labels_bytes(n: u32, count: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x0801u32.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend((0..count).map(|i| (i % 10) as u8));
    b
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn write_set(dir: &Path, train_img: &[u8], train_lab: &[u8]) {
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gz(train_img)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gz(train_lab)).unwrap();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte.gz"),
        gz(&images_bytes(2, 3, 3, 18)),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gz(&labels_bytes(2, 2)),
    )
    .unwrap();
}

fn err_text(r: Result<mnist::Mnist, NnError>) -> String {
    match r {
        Ok(_) => panic!("damaged data loaded without error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn vendored_test_set_loads_with_expected_shape() {
    let d = data_dir();
    let (n, r, c, px) = mnist::load_idx_images(&d.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((n, r, c, px.len()), (10_000, 28, 28, 10_000 * 784));
    let l = mnist::load_idx_labels(&d.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(l.len(), 10_000);
    assert!(l.iter().all(|&x| x < 10));
    // every digit occurs
    for digit in 0..10u8 {
        assert!(l.contains(&digit));
    }
}

#[test]
fn small_valid_set_loads_and_normalises() {
    let d = tmp("ok");
    write_set(&d, &images_bytes(4, 3, 3, 36), &labels_bytes(4, 4));
    let m = mnist::load(&d, Normalization::UnitRange).unwrap();
    assert_eq!(m.train.len(), 4);
    assert_eq!(m.train.image(1)[0], 9.0 / 255.0);
    let s = mnist::load(&d, Normalization::Standard).unwrap();
    let want = (9.0 / 255.0 - 0.1307) / 0.3081;
    assert!((s.train.image(1)[0] - want).abs() < 1e-6);
    let sub = s.train.subset(&[3, 1]);
    assert_eq!(sub.labels, vec![3, 1]);
    assert_eq!(sub.image(1), s.train.image(1));
    assert_eq!(s.train.slice(1..3).labels, vec![1, 2]);
}

#[test]
fn missing_directory_or_file() {
    let e = err_text(mnist::load(
        Path::new("/nonexistent/ppml"),
        Normalization::Standard,
    ));
    assert!(e.contains("not found"), "{e}");
    let d = tmp("missing");
    write_set(&d, &images_bytes(4, 3, 3, 36), &labels_bytes(4, 4));
    std::fs::remove_file(d.join("train-labels-idx1-ubyte.gz")).unwrap();
    let e = err_text(mnist::load(&d, Normalization::Standard));
    assert!(e.contains("train-labels-idx1-ubyte"), "{e}");
}

#[test]
fn truncated_images() {
    let d = tmp("trunc");
    write_set(&d, &images_bytes(4, 3, 3, 30), &labels_bytes(4, 4));
    let e = err_text(mnist::load(&d, Normalization::Standard));
    assert!(e.contains("truncated"), "{e}");
    // header itself cut short
    write_set(&d, &images_bytes(4, 3, 3, 36)[..10], &labels_bytes(4, 4));
    let e = err_text(mnist::load(&d, Normalization::Standard));
    assert!(e.contains("truncated IDX header"), "{e}");
}

#[test]
fn truncated_gzip_stream() {
    let d = tmp("gz");
    write_set(&d, &images_bytes(4, 3, 3, 36), &labels_bytes(4, 4));
    let full = gz(&images_bytes(400, 3, 3, 3600));
    std::fs::write(
        d.join("train-images-idx3-ubyte.gz"),
        &full[..full.len() / 2],
    )
    .unwrap();
    let e = err_text(mnist::load(&d, Normalization::Standard));
    assert!(e.contains("gzip") || e.contains("truncated"), "{e}");
}

#[test]
fn bad_magic() {
    let d = tmp("magic");
    let mut img = images_bytes(4, 3, 3, 36);
    img[3] = 0x01; // claims to be a labels file
    write_set(&d, &img, &labels_bytes(4, 4));
    let e = err_text(mnist::load(&d, Normalization::Standard));
    assert!(e.contains("bad magic"), "{e}");
    let mut lab = labels_bytes(4, 4);
    lab[2] = 0x7f;
    write_set(&d, &images_bytes(4, 3, 3, 36), &lab);
    let e = err_text(mnist::load(&d, Normalization::Standard));
    assert!(e.contains("bad magic"), "{e}");
}

#[test]
fn mismatched_counts() {
    let d = tmp("count");
    write_set(&d, &images_bytes(4, 3, 3, 36), &labels_bytes(5, 5));
    let e = err_text(mnist::load(&d, Normalization::Standard));
    assert!(e.contains("4 images") && e.contains("5 labels"), "{e}");
    // labels header disagrees with its own body
    write_set(&d, &images_bytes(4, 3, 3, 36), &labels_bytes(4, 6));
    let e = err_text(mnist::load(&d, Normalization::Standard));
    assert!(e.contains("trailing"), "{e}");
}

#[test]
fn label_out_of_range() {
    let d = tmp("label");
    let mut lab = labels_bytes(4, 4);
    lab[9] = 42;
    write_set(&d, &images_bytes(4, 3, 3, 36), &lab);
    let e = err_text(mnist::load(&d, Normalization::Standard));
    assert!(e.contains("label 42"), "{e}");
}
