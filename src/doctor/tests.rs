//! Unit tests of the doctor arithmetic on fixture trees.
