//! Capped capture of one output stream for the job's result: the first half and the last
//! half of the cap are kept, because the end of a log (the error that stopped the script)
//! matters as much as its start. What is cut in between is replaced with one marker line.

use std::collections::VecDeque;

/// Keeps the head and the tail of a stream within `limit` bytes in total.
#[derive(Clone, Debug)]
pub struct HeadTailCapture {
    head_limit: usize,
    tail_limit: usize,
    head: Vec<u8>,
    /// The most recent bytes past the head; the oldest fall out once it is full.
    tail: VecDeque<u8>,
    /// Everything the stream carried, kept or not.
    total: u64,
}

/// What a capture kept, ready for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturedOutput {
    pub bytes: Vec<u8>,
    /// More than the limit was written: the middle was cut and a marker line put there.
    pub truncated: bool,
}

impl CapturedOutput {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

impl HeadTailCapture {
    pub fn new(limit: usize) -> HeadTailCapture {
        let head_limit = limit.div_ceil(2);
        HeadTailCapture {
            head_limit,
            tail_limit: limit - head_limit,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.head_limit - self.head.len();
        if room > 0 {
            let taken = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..taken]);
            bytes = &bytes[taken..];
        }
        if bytes.len() >= self.tail_limit {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_limit..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_limit);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    pub fn finish(self) -> CapturedOutput {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let mut tail = self.tail;
        let tail = tail.make_contiguous();
        if self.total == kept {
            let mut bytes = self.head;
            bytes.extend_from_slice(tail);
            return CapturedOutput {
                bytes,
                truncated: false,
            };
        }
        CapturedOutput {
            bytes: join_cut(&self.head, tail, self.total - kept),
            truncated: true,
        }
    }
}

/// `head` + a marker saying how many bytes were cut + `tail`, with both seams moved to
/// UTF-8 character boundaries so the text shows no replacement characters there (the
/// bytes of a split character count as cut).
pub fn join_cut(head: &[u8], tail: &[u8], cut: u64) -> Vec<u8> {
    let head_end = utf8_end_boundary(head);
    let tail_start = utf8_start_boundary(tail);
    let cut = cut + (head.len() - head_end) as u64 + tail_start as u64;
    let marker = format!("\n[scriptmesh-agent: {cut} bytes cut]\n");
    let mut bytes = Vec::with_capacity(head_end + marker.len() + tail.len() - tail_start);
    bytes.extend_from_slice(&head[..head_end]);
    bytes.extend_from_slice(marker.as_bytes());
    bytes.extend_from_slice(&tail[tail_start..]);
    bytes
}

/// Length of `bytes` without a multi-byte character cut short at its end.
pub fn utf8_end_boundary(bytes: &[u8]) -> usize {
    // A character is at most 4 bytes: only the last 3 can be an unfinished one.
    for back in 1..=bytes.len().min(3) {
        let index = bytes.len() - back;
        let byte = bytes[index];
        if is_continuation(byte) {
            continue;
        }
        let needed = match byte {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            // ASCII, or not UTF-8 at all: nothing to repair.
            _ => return bytes.len(),
        };
        return if back < needed { index } else { bytes.len() };
    }
    bytes.len()
}

/// Where the first whole character of `bytes` starts (skips at most 3 continuation bytes
/// of a character whose start was cut off).
pub fn utf8_start_boundary(bytes: &[u8]) -> usize {
    bytes.iter().take(3).take_while(|byte| is_continuation(**byte)).count()
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xc0 == 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(limit: usize, pieces: &[&[u8]]) -> CapturedOutput {
        let mut capture = HeadTailCapture::new(limit);
        for piece in pieces {
            capture.push(piece);
        }
        capture.finish()
    }

    #[test]
    fn under_and_at_the_limit_everything_is_kept() {
        let under = capture(10, &[b"abc", b"de"]);
        assert_eq!(under.bytes, b"abcde");
        assert!(!under.truncated);
        let exact = capture(10, &[b"0123", b"456789"]);
        assert_eq!(exact.bytes, b"0123456789");
        assert!(!exact.truncated);
        assert_eq!(capture(10, &[]).bytes, b"");
    }

    #[test]
    fn over_the_limit_head_and_tail_are_kept_around_a_marker() {
        let one_over = capture(10, &[b"0123456789X"]);
        assert!(one_over.truncated);
        assert_eq!(one_over.text(), "01234\n[scriptmesh-agent: 1 bytes cut]\n6789X");

        let pieces: Vec<Vec<u8>> = (0..100u8).map(|i| vec![b'a' + i % 26; 7]).collect();
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let long = capture(20, &refs);
        let all: Vec<u8> = pieces.concat();
        let expected = [
            &all[..10],
            b"\n[scriptmesh-agent: 680 bytes cut]\n",
            &all[all.len() - 10..],
        ]
        .concat();
        assert_eq!(long.bytes, expected);
        assert!(long.truncated);
    }

    #[test]
    fn an_odd_limit_gives_the_head_the_extra_byte() {
        let odd = capture(5, &[b"abcdefgh"]);
        assert_eq!(odd.text(), "abc\n[scriptmesh-agent: 3 bytes cut]\ngh");
    }

    #[test]
    fn seams_fall_on_character_boundaries() {
        // "é" is 2 bytes, "€" 3, "😀" 4: the 8-byte head ends inside "😀", the 8-byte
        // tail starts inside "é".
        let text = "aé€😀".repeat(50);
        let cut = capture(16, &[text.as_bytes()]);
        let shown = String::from_utf8(cut.bytes.clone()).expect("seams are character boundaries");
        assert!(!shown.contains('\u{fffd}'));
        let (head, rest) = shown.split_once("\n[scriptmesh-agent: ").expect("marker");
        let (count, tail) = rest.split_once(" bytes cut]\n").expect("marker end");
        assert_eq!((head, tail), ("aé€", "€😀"));
        assert_eq!(
            head.len() + tail.len() + count.parse::<usize>().expect("count"),
            text.len()
        );
    }

    #[test]
    fn boundary_helpers() {
        assert_eq!(utf8_end_boundary(b"abc"), 3);
        assert_eq!(utf8_end_boundary("aé".as_bytes()), 3);
        assert_eq!(utf8_end_boundary(&"aé".as_bytes()[..2]), 1);
        assert_eq!(utf8_end_boundary(&"a€".as_bytes()[..3]), 1);
        assert_eq!(utf8_end_boundary(&"a😀".as_bytes()[..4]), 1);
        assert_eq!(utf8_end_boundary("a😀".as_bytes()), 5);
        assert_eq!(utf8_end_boundary(&[0xff, 0xfe]), 2);
        assert_eq!(utf8_end_boundary(b""), 0);
        assert_eq!(utf8_start_boundary(&"😀a".as_bytes()[1..]), 3);
        assert_eq!(utf8_start_boundary("é".as_bytes()), 0);
        assert_eq!(utf8_start_boundary(&[0x80, 0x80, 0x80, 0x80]), 3);
        assert_eq!(utf8_start_boundary(b""), 0);
    }

    #[test]
    fn a_large_read_replaces_the_whole_tail() {
        let mut capture = HeadTailCapture::new(4);
        capture.push(b"ab");
        capture.push(b"cd");
        capture.push(b"0123456789");
        let output = capture.finish();
        assert_eq!(output.text(), "ab\n[scriptmesh-agent: 10 bytes cut]\n89");
    }
}
