//! ppml-secagg (placeholder; see docs/ARCHITECTURE.md)
