//! ppml-splitnn (placeholder; see docs/ARCHITECTURE.md)
