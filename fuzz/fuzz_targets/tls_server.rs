#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qosd_fuzz::tls_server(data));
