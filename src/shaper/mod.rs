//! The shaper (to be written).
