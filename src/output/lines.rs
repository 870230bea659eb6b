//! Splitting observed output into lines for the observer.

use crate::spec::OBSERVER_LINE_CAP;
use crate::sys;

/// Splits a byte stream into lines without `\n`, holding at most [`OBSERVER_LINE_CAP`] bytes of
/// an unfinished line: a longer line is delivered in pieces of exactly that size.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    /// The current line's last piece was delivered at the cap and nothing of it is pending: a
    /// newline now ends the line without an empty piece.
    cut: bool,
}

impl LineSplitter {
    pub(crate) fn feed(&mut self, mut data: &[u8], deliver: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            let nl = find_newline(data);
            let mut part = &data[..nl.unwrap_or(data.len())];
            if !self.pending.is_empty() {
                // Fill the pending piece; all of `part` goes in unless the piece reaches the cap.
                let take = (OBSERVER_LINE_CAP - self.pending.len()).min(part.len());
                self.pending.extend_from_slice(&part[..take]);
                part = &part[take..];
                if self.pending.len() == OBSERVER_LINE_CAP {
                    deliver(&self.pending);
                    self.pending.clear();
                    self.cut = true;
                }
            }
            // Nothing pending: full pieces, and a line's last piece, straight from `data`.
            if self.pending.is_empty() {
                while part.len() >= OBSERVER_LINE_CAP {
                    deliver(&part[..OBSERVER_LINE_CAP]);
                    part = &part[OBSERVER_LINE_CAP..];
                    self.cut = true;
                }
            }
            match nl {
                Some(i) => {
                    if !self.pending.is_empty() {
                        deliver(&self.pending);
                        self.pending.clear();
                    } else if !part.is_empty() || !self.cut {
                        deliver(part);
                    }
                    self.cut = false;
                    data = &data[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(part);
                    data = &[];
                }
            }
        }
    }

    pub(crate) fn finish(&mut self, deliver: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            deliver(&self.pending);
            self.pending.clear();
        }
        self.cut = false;
    }
}

/// The first `\n` in `data` (`memchr`: see `sys::find_byte`).
fn find_newline(data: &[u8]) -> Option<usize> {
    sys::find_byte(data, b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.feed(c, &mut |l: &[u8]| out.push(l.to_vec()));
        }
        s.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_split_across_chunks() {
        assert_eq!(
            split(&[b"ab", b"c\nde\n\nf"]),
            vec![b"abc".to_vec(), b"de".to_vec(), b"".to_vec(), b"f".to_vec()]
        );
    }

    #[test]
    fn long_line_comes_in_capped_pieces() {
        let line = vec![b'x'; OBSERVER_LINE_CAP * 2 + 5];
        let out = split(&[&line, b"\n"]);
        let lens: Vec<usize> = out.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![OBSERVER_LINE_CAP, OBSERVER_LINE_CAP, 5]);
    }

    /// `data` cut at the given offsets (clamped to its length, in any order): the reads a
    /// reader might have made.
    fn cut_at(data: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        cuts.sort();
        let mut chunks = Vec::with_capacity(cuts.len() + 1);
        let mut last = 0;
        for c in cuts {
            chunks.push(&data[last..c]);
            last = c;
        }
        chunks.push(&data[last..]);
        chunks
    }

    /// The splitter before the fast path (byte-at-a-time, everything through `pending`): the
    /// model the fast path must match piece for piece.
    fn split_model(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let push = |pending: &mut Vec<u8>, mut part: &[u8], out: &mut Vec<Vec<u8>>| {
            while pending.len() + part.len() > OBSERVER_LINE_CAP {
                let take = OBSERVER_LINE_CAP - pending.len();
                pending.extend_from_slice(&part[..take]);
                out.push(std::mem::take(pending));
                part = &part[take..];
            }
            pending.extend_from_slice(part);
        };
        for c in chunks {
            let mut data = *c;
            while !data.is_empty() {
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        push(&mut pending, &data[..i], &mut out);
                        out.push(std::mem::take(&mut pending));
                        data = &data[i + 1..];
                    }
                    None => {
                        push(&mut pending, data, &mut out);
                        data = &[];
                    }
                }
            }
        }
        if !pending.is_empty() {
            out.push(pending);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fast_path_matches_the_model(
            lines in proptest::collection::vec(
                (prop_oneof![0usize..4, (OBSERVER_LINE_CAP - 2)..(OBSERVER_LINE_CAP + 3),
                             (2 * OBSERVER_LINE_CAP - 1)..(2 * OBSERVER_LINE_CAP + 2)],
                 any::<bool>()), 0..6),
            cuts in proptest::collection::vec(0usize..(6 * OBSERVER_LINE_CAP), 0..8)) {
            let mut data = Vec::new();
            for (len, nl) in lines {
                data.extend(std::iter::repeat(b'x').take(len));
                if nl { data.push(b'\n'); }
            }
            let chunks = cut_at(&data, cuts);
            prop_assert_eq!(split(&chunks), split_model(&chunks));
        }
    }

    proptest! {
        #[test]
        fn pieces_rebuild_the_stream(data in proptest::collection::vec(any::<u8>(), 0..4000),
                                     cuts in proptest::collection::vec(0usize..4000, 0..8)) {
            let chunks = cut_at(&data, cuts);
            let lines = split(&chunks);
            // Without long lines every piece is a whole line: joining with \n gives the data back
            // (but for a final \n, which yields no empty last line).
            let mut joined = lines.join(&b'\n');
            if data.last() == Some(&b'\n') { joined.push(b'\n'); }
            prop_assert_eq!(joined, data);
        }
    }
}
