//! Arbitrary bytes, cut into arbitrary chunks, through the DAP decoder and the request parser,
//! and every decoded message through the argument types of the requests the adapter handles:
//! none may panic. The same bytes as text through the terminal escaping: nothing a terminal
//! would obey may come out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pymri_dap::codec::Decoder;
use pymri_dap::escape::terminal_text;
use pymri_dap::types::{
    AttachArguments, EvaluateArguments, LaunchArguments, Request, SetBreakpointsArguments, StackTraceArguments,
    VariablesArguments,
};

fuzz_target!(|data: &[u8]| {
    let shown = terminal_text(&String::from_utf8_lossy(data)).into_owned();
    let mut chars = shown.chars().peekable();
    while let Some(c) = chars.next() {
        let line_end = c == '\r' && chars.peek() == Some(&'\n');
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(c == '\n' || c == '\t' || line_end || !(c.is_control() || bidi), "{c:?} in {shown:?}");
    }
    let Some((&cut, rest)) = data.split_first() else { return };
    let chunk = usize::from(cut % 16) + 1;
    let mut decoder = Decoder::new();
    for piece in rest.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.next_message() {
                Ok(Some(value)) => {
                    if let Ok(request) = Request::from_value(value) {
                        let args = request.arguments;
                        let _ = serde_json::from_value::<LaunchArguments>(args.clone());
                        let _ = serde_json::from_value::<AttachArguments>(args.clone());
                        let _ = serde_json::from_value::<SetBreakpointsArguments>(args.clone());
                        let _ = serde_json::from_value::<StackTraceArguments>(args.clone());
                        let _ = serde_json::from_value::<VariablesArguments>(args.clone());
                        let _ = serde_json::from_value::<EvaluateArguments>(args);
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => return,
                Err(_) => {}
            }
        }
    }
});
