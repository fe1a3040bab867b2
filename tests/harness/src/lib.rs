//! Host emulator (filled in by the foundation issue).
