//! ppml-fedavg (placeholder; see docs/ARCHITECTURE.md)
