//! ppml-sharing (placeholder; see docs/ARCHITECTURE.md)
