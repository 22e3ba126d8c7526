//! berth-oci's store against input it did not write: documents from
//! registries and archives, and a store someone else changed.

mod hostile;
