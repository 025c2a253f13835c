//! `/proc/PID/maps`.

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `rwxp` flags as the kernel prints them.
    pub perms: [u8; 4],
    pub offset: u64,
    /// Device (`major:minor`) and inode of the mapped file; zero when unknown (core files).
    pub dev: (u32, u32),
    pub inode: u64,
    /// The mapped file as the target sees it (inside its own root), or a pseudo-name such as
    /// `[heap]`, or empty for anonymous memory.
    pub path: String,
}

impl Mapping {
    pub fn is_file(&self) -> bool {
        self.path.starts_with('/')
    }
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// Parses the text of `/proc/PID/maps`; malformed lines are skipped, never fatal.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?.as_bytes();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let dev = (u32::from_str_radix(major, 16).ok()?, u32::from_str_radix(minor, 16).ok()?);
    let inode = fields.next()?.parse().ok()?;
    let path = fields.next().unwrap_or("").trim_start().to_string();
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let perms: [u8; 4] = perms.try_into().ok()?;
    (start < end).then_some(Mapping { start, end, perms, offset, dev, inode, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_anonymous_and_pseudo_mappings() {
        let text =
            "00400000-00420000 r--p 00000000 fe:01 1234                               /usr/bin/python3.11\n\
                    7ffd1000-7ffd2000 rw-p 00000000 00:00 0                                  [stack]\n\
                    7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n\
                    garbage line\n\
                    7f0000001000-7f0000002000 r-xp 00001000 fe:01 99   /lib/with space.so (deleted)\n";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].path, "/usr/bin/python3.11");
        assert_eq!((maps[0].dev, maps[0].inode), ((0xfe, 1), 1234));
        assert!(maps[0].is_file());
        assert_eq!(maps[1].path, "[stack]");
        assert_eq!(maps[2].path, "");
        assert_eq!(maps[3].offset, 0x1000);
        assert_eq!(maps[3].path, "/lib/with space.so (deleted)");
    }
}
