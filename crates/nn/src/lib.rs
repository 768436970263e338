//! ppml-nn (placeholder; see docs/ARCHITECTURE.md)
