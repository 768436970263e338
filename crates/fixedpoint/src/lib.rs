//! ppml-fixedpoint (placeholder; see docs/ARCHITECTURE.md)
