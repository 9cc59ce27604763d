//! The one helper for `std::sync::Mutex`.
//!
//! The server's mutexes guard plain data changed in short sections that never await and leave
//! it consistent at every step, so a panic elsewhere while one was held (poisoning) says
//! nothing about the data: take the guard anyway rather than spread the panic.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, shrugging off poisoning (see the module note).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
