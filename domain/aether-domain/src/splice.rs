//! How a partial write (`patchSegments`) lays out a file's new content: which ranges keep the old
//! content, which come from the written segments and which are zeros. A large file is then
//! rebuilt as a stream, never held whole.

use crate::tree::Segment;
use crate::{Error, Result};

/// One run of the new content, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// `[start, end)` of the old content, at the same offset.
    Base { start: u64, end: u64 },
    /// `[start, end)` of `segments[index].data`.
    Segment {
        index: usize,
        start: usize,
        end: usize,
    },
    /// This many zero bytes (a gap past the old end, or a zero-extension).
    Zeros(u64),
}

/// The new content of a patched file: its length and the pieces that make it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    pub len: u64,
    pub pieces: Vec<Piece>,
}

/// Lays out `segments` written in order over `base_len` bytes, then a truncation or
/// zero-extension to `truncate_to`: a later segment wins where two overlap, and bytes past
/// the old end that no segment wrote read as zeros, as a sparse write on a local file would.
pub fn splice(
    base_len: u64,
    segments: &[Segment],
    truncate_to: Option<u64>,
    max_size: u64,
) -> Result<Splice> {
    let limit = |end: u64| {
        if end > max_size {
            Err(Error::invalid(format!(
                "the write would grow the file to {end} bytes; the limit is {max_size}"
            )))
        } else {
            Ok(end)
        }
    };
    let mut len = base_len;
    let mut ends = Vec::with_capacity(segments.len());
    for s in segments {
        let end = s
            .offset
            .checked_add(s.data.len() as u64)
            .ok_or_else(|| Error::invalid("segment offset plus length overflows"))?;
        len = len.max(limit(end)?);
        ends.push(end);
    }
    if let Some(t) = truncate_to {
        len = limit(t)?;
    }

    // Cut [0, len) at every segment boundary; each elementary run then belongs to the last
    // segment that covers it, or to none.
    let mut cuts: Vec<u64> = Vec::with_capacity(2 * segments.len() + 2);
    cuts.push(0);
    cuts.push(len);
    for (s, &end) in segments.iter().zip(&ends) {
        cuts.push(s.offset.min(len));
        cuts.push(end.min(len));
    }
    cuts.sort_unstable();
    cuts.dedup();
    let runs = cuts.len() - 1;
    let mut owner: Vec<Option<usize>> = vec![None; runs];
    // `next[i]`: the first run at or after `i` that no later segment has claimed yet, so that
    // every run is claimed once however much the segments overlap.
    let mut next: Vec<usize> = (0..=runs).collect();
    fn find(next: &mut [usize], mut i: usize) -> usize {
        while next[i] != i {
            next[i] = next[next[i]];
            i = next[i];
        }
        i
    }
    for (index, (s, &end)) in segments.iter().zip(&ends).enumerate().rev() {
        let (from, to) = (s.offset.min(len), end.min(len));
        if from >= to {
            continue;
        }
        let first = cuts.partition_point(|&c| c < from);
        let last = cuts.partition_point(|&c| c < to);
        let mut i = find(&mut next, first);
        while i < last {
            owner[i] = Some(index);
            next[i] = i + 1;
            i = find(&mut next, i + 1);
        }
    }

    let mut pieces: Vec<Piece> = Vec::new();
    let mut push = |piece: Piece| match (pieces.last_mut(), piece) {
        (Some(Piece::Base { end, .. }), Piece::Base { start, end: e }) if *end == start => *end = e,
        (Some(Piece::Zeros(n)), Piece::Zeros(m)) => *n += m,
        (
            Some(Piece::Segment {
                index: i, end: e, ..
            }),
            Piece::Segment { index, start, end },
        ) if *i == index && *e == start => *e = end,
        (_, piece) => pieces.push(piece),
    };
    for (run, who) in owner.iter().enumerate() {
        let (a, b) = (cuts[run], cuts[run + 1]);
        match *who {
            Some(index) => {
                let offset = segments[index].offset;
                push(Piece::Segment {
                    index,
                    start: (a - offset) as usize,
                    end: (b - offset) as usize,
                });
            }
            None => {
                if a < base_len {
                    push(Piece::Base {
                        start: a,
                        end: b.min(base_len),
                    });
                }
                if b > base_len {
                    push(Piece::Zeros(b - a.max(base_len)));
                }
            }
        }
    }
    Ok(Splice { len, pieces })
}

impl Splice {
    /// The new content, built in memory from the old.
    pub fn assemble(&self, base: &[u8], segments: &[Segment]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len as usize);
        for piece in &self.pieces {
            match *piece {
                Piece::Base { start, end } => {
                    out.extend_from_slice(&base[start as usize..end as usize])
                }
                Piece::Segment { index, start, end } => {
                    out.extend_from_slice(&segments[index].data[start..end])
                }
                Piece::Zeros(n) => out.resize(out.len() + n as usize, 0),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(offset: u64, data: &[u8]) -> Segment {
        Segment {
            offset,
            data: data.to_vec(),
        }
    }

    /// The plain reading of the rule: write each segment in turn, then resize.
    fn written_in_turn(
        mut content: Vec<u8>,
        segments: &[Segment],
        truncate_to: Option<u64>,
    ) -> Vec<u8> {
        for s in segments {
            let end = s.offset as usize + s.data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[s.offset as usize..end].copy_from_slice(&s.data);
        }
        if let Some(t) = truncate_to {
            content.resize(t as usize, 0);
        }
        content
    }

    #[test]
    fn an_append_keeps_the_old_content_as_one_range() {
        let s = splice(1000, &[seg(1000, b"tail")], None, u64::MAX).unwrap();
        assert_eq!(s.len, 1004);
        assert_eq!(
            s.pieces,
            vec![
                Piece::Base {
                    start: 0,
                    end: 1000
                },
                Piece::Segment {
                    index: 0,
                    start: 0,
                    end: 4
                },
            ]
        );
    }

    #[test]
    fn a_later_segment_wins_and_a_gap_past_the_end_is_zeros() {
        let segments = [seg(2, b"abcd"), seg(4, b"XY"), seg(10, b"z")];
        let s = splice(3, &segments, None, u64::MAX).unwrap();
        assert_eq!(s.assemble(b"012", &segments), b"01abXY\0\0\0\0z".to_vec());
    }

    #[test]
    fn a_write_past_the_limit_is_refused_even_if_truncated_after() {
        let e = splice(0, &[seg(10, b"x")], Some(1), 5).unwrap_err();
        assert!(e.to_string().contains("11 bytes; the limit is 5"), "{e}");
        let e = splice(0, &[seg(u64::MAX, b"x")], None, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    proptest! {
        #[test]
        fn assembling_the_splice_equals_writing_in_turn(
            base in proptest::collection::vec(any::<u8>(), 0..64),
            segments in proptest::collection::vec(
                (0u64..96, proptest::collection::vec(any::<u8>(), 0..24)),
                0..8,
            ),
            truncate_to in proptest::option::of(0u64..128),
        ) {
            let segments: Vec<Segment> =
                segments.into_iter().map(|(offset, data)| Segment { offset, data }).collect();
            let s = splice(base.len() as u64, &segments, truncate_to, u64::MAX).unwrap();
            let built = s.assemble(&base, &segments);
            prop_assert_eq!(built.len() as u64, s.len);
            prop_assert_eq!(built, written_in_turn(base.clone(), &segments, truncate_to));
            // Neighbouring pieces of one kind are merged, so an edit costs pieces, not runs.
            for w in s.pieces.windows(2) {
                let merged = matches!(
                    (w[0], w[1]),
                    (Piece::Base { end, .. }, Piece::Base { start, .. }) if end == start
                ) || matches!((w[0], w[1]), (Piece::Zeros(_), Piece::Zeros(_)));
                prop_assert!(!merged, "{:?}", s.pieces);
            }
        }
    }
}
