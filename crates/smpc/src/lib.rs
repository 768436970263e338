//! ppml-smpc (placeholder; see docs/ARCHITECTURE.md)
