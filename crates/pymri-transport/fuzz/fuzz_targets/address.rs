//! Arbitrary text through both address parsers: none may panic, and whatever parses prints
//! back to text that parses to the same address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pymri_transport::{parse_listen, Address};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for parsed in [Address::parse(text), parse_listen(text)] {
        if let Ok(address) = parsed {
            let again = Address::parse(&address.to_string()).expect("a printed address parses");
            assert_eq!(again, address);
        }
    }
});
