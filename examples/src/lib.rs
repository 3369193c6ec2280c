//! Examples live in subfolders; see `examples/simple`.
