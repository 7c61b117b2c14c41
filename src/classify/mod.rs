//! Classification: which application a flow belongs to and which category
//! it goes in, decided on a flow's first packets and cached in the flow.

pub mod dpi;
