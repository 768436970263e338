"""A Flower App whose clients train and evaluate with ppml (Rust, via the `ppml` bindings)."""
