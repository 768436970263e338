//! ppml-net (placeholder; see docs/ARCHITECTURE.md)
