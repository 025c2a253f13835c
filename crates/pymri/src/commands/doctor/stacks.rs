//! Reading a Python stack the way a person does: which frames are the standard library's,
//! which function a thread was started on, what a line of source waits on.

use pymri_cpython::Frame;

/// Whether `file` is part of the standard library (not a site-packages or user file).
pub fn is_stdlib(file: &str) -> bool {
    let in_lib = file.contains("/lib/python3.") || file.contains("/lib64/python3.");
    in_lib && !file.contains("-packages/")
}

/// The file's last path component.
pub fn basename(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

/// The function's own name, without the class (3.11+ reports qualified names).
pub fn short(function: &str) -> &str {
    function.rsplit('.').next().unwrap_or(function)
}

/// Whether a frame is `function` (unqualified) in the standard library's `module`.
pub fn is(frame: &Frame, module: &str, function: &str) -> bool {
    basename(&frame.file) == module && short(&frame.function) == function && is_stdlib(&frame.file)
}

/// The index (innermost first) of the function the thread was started on: the outermost frame
/// below `threading`'s own bootstrap frames. For the main thread, the outermost frame.
pub fn entry(frames: &[Frame]) -> Option<usize> {
    let mut index = frames.len().checked_sub(1)?;
    while index > 0 && basename(&frames[index].file) == "threading.py" && is_stdlib(&frames[index].file) {
        index -= 1;
    }
    Some(index)
}

/// The innermost frame outside the standard library, if any.
pub fn innermost_user(frames: &[Frame]) -> Option<usize> {
    frames.iter().position(|f| !is_stdlib(&f.file))
}

/// What a source line calls `method` on (`self._idle` in `return self._idle.get()`), or the
/// object of a `with` statement (`lock` in `with lock:`).
pub fn receiver(line: &str, methods: &[&str]) -> Option<String> {
    let code = line.split('#').next().unwrap_or(line).trim();
    for method in methods {
        if let Some(at) = code.rfind(&format!(".{method}(")) {
            let name = trailing_name(&code[..at]);
            if !name.is_empty() {
                return Some(name.to_string());
            }
        }
    }
    let with = code.strip_prefix("with ")?.trim_end_matches(':');
    let object = with.split(" as ").next()?.trim();
    (!object.is_empty() && object.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.'))
        .then(|| object.to_string())
}

/// The dotted name that ends `text`.
fn trailing_name(text: &str) -> &str {
    let start = text
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '.'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    text[start..].trim_start_matches('.')
}

/// The address in a default repr (`<Thread object at 0x7f...>`, `<Thread(name, started ...)>`
/// has none).
pub fn repr_address(repr: &str) -> Option<u64> {
    let at = repr.find(" at 0x")?;
    let hex: String = repr[at + 6..].chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&hex, 16).ok()
}

/// A local's repr in a frame read with locals.
pub fn local<'a>(frame: &'a Frame, name: &str) -> Option<&'a str> {
    frame.locals.as_ref()?.iter().find(|l| l.name == name).map(|l| l.repr.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers() {
        assert_eq!(
            receiver("        return self._idle.get()  # why", &["get"]).as_deref(),
            Some("self._idle")
        );
        assert_eq!(receiver("conn = pools[0].get()", &["get"]), None);
        assert_eq!(receiver("lock.acquire()", &["acquire"]).as_deref(), Some("lock"));
        assert_eq!(receiver("    with registry.lock:", &["acquire"]).as_deref(), Some("registry.lock"));
        assert_eq!(receiver("    with open(p) as f:", &["acquire"]), None);
        assert_eq!(receiver("x = 1", &["get"]), None);
    }

    #[test]
    fn addresses_and_modules() {
        assert_eq!(repr_address("<Thread object at 0x7f20e3545890>"), Some(0x7f20_e354_5890));
        assert_eq!(repr_address("'at 0x'"), None);
        assert!(is_stdlib("/usr/lib/python3.11/threading.py"));
        assert!(!is_stdlib("/usr/lib/python3.11/site-packages/x/threading.py"));
        assert!(!is_stdlib("/srv/app/threading.py"));
        assert_eq!(short("Condition.wait"), "wait");
    }
}
