//! numpy arrays and scalars in `dump --locals`, read from memory (no code run in the target),
//! on the interpreters Debian packages numpy for (the host's 3.11; `scripts/test.sh` installs
//! python3-numpy).

mod common;

use common::{interpreter, pymri, text, Target};
use serde_json::Value;

#[test]
fn arrays_show_dtype_shape_layout_and_size() {
    let interp = interpreter("3.11").expect("3.11");
    let target = Target::start(&interp, "numpy_locals.py", &["{ready}"]);
    let out = pymri(&["dump", &target.pid().to_string(), "--locals", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dump: Value = serde_json::from_slice(&out.stdout).expect("json");
    let frame = dump["threads"][0]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["function"] == "train")
        .unwrap_or_else(|| panic!("{dump:#}"))
        .clone();
    let locals = &frame["locals"];
    for (name, repr) in [
        ("weights", "<ndarray float32 (128, 64) C 32 KiB>"),
        ("batch", "<ndarray float64 (3, 4) C 96 B>"),
        ("labels", "<ndarray int64 (3,) C 24 B>"),
        ("mask", "<ndarray bool (3, 4) C 12 B>"),
        ("transposed", "<ndarray float64 (4, 3) F 96 B>"),
        ("every_other", "<ndarray float64 (3, 2) strided [32, 16] 48 B>"),
        ("names", "<ndarray str (2,) C>"),
        ("empty", "<ndarray float64 (0, 3) C 0 B>"),
        ("loss", "numpy.float32(nan)"),
        ("step", "numpy.int64(40000)"),
    ] {
        assert_eq!(locals[name], repr, "{name} in {locals:#}");
    }
    assert_eq!(locals["losses"], "<ndarray float64 (6,) C 48 B>");
    // A class named like numpy's array type is not read as one.
    let impostor = locals["impostor"].as_str().expect("impostor");
    assert!(impostor.starts_with("<numpy.ndarray object at 0x"), "{impostor}");

    // --values: statistics from the data, NaN left out of them; not for arrays above 1 MiB.
    let out = pymri(&["dump", &target.pid().to_string(), "--locals", "--values", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dump: Value = serde_json::from_slice(&out.stdout).expect("json");
    let locals = dump["threads"][0]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["function"] == "train")
        .map(|f| f["locals"].clone())
        .expect("train");
    assert_eq!(locals["losses"], "<ndarray float64 (6,) C 48 B min=-2.0 max=inf mean=inf nan=2 inf=1>");
    assert_eq!(locals["batch"], "<ndarray float64 (3, 4) C 96 B min=0.0 max=11.0 mean=5.5 nan=0 inf=0>");
    assert_eq!(locals["labels"], "<ndarray int64 (3,) C 24 B min=1.0 max=3.0 mean=2.0>");
    assert_eq!(locals["huge"], "<ndarray float64 (300000,) C 2.3 MiB>");
    assert_eq!(pymri(&["dump", &target.pid().to_string(), "--values"]).status.code(), Some(2));
}
