//! The binding table of a topic exchange: which bound values a routing key reaches.
//!
//! # Semantics
//! These are the AMQP 0-9-1 (RabbitMQ) topic rules, so clients moving over keep their
//! bindings' meaning.
//!
//! A routing key is a list of words separated by `.`. Words may be empty (`a..b` is `a`, ``,
//! `b`; `a.` is `a`, ``), but the empty string is the empty list, not one empty word, as in
//! RabbitMQ. In a key, `*` and `#` are ordinary words.
//!
//! A binding pattern is a list of words the same way, where a whole word `*` matches exactly
//! one word and a whole word `#` matches zero or more words. Only whole words are wildcards:
//! `a*` and `#b` are literals.
//!
//! | pattern  | matches                          | does not match       |
//! |----------|----------------------------------|----------------------|
//! | `#`      | every key, even the empty one    |                      |
//! | `a.#`    | `a`, `a.b`, `a.b.c`              | `b.a`, the empty key |
//! | `#.b`    | `b`, `x.y.b`                     | `b.x`                |
//! | `a.#.b`  | `a.b`, `a.x.b`, `a.x.y.b`        | `a.x`                |
//! | `a.*.c`  | `a.x.c`, `a..c`                  | `a.c`, `a.x.y.c`     |
//! | `*`      | any one-word key: `a`, `#`       | the empty key, `a.b`, `.` |
//! | `*.#`    | one or more words: `a`, `a.b`    | the empty key        |
//! | `#.*`    | one or more words, the same set  | the empty key        |
//! | `#.#`    | the same keys as `#`             |                      |
//! | the empty pattern | only the empty key      | `.` (two empty words)|
//!
//! # Limits
//! Patterns and keys are at most [`MAX_TOPIC_BYTES`] bytes and [`MAX_TOPIC_WORDS`] words,
//! because the matching work grows with the number of words (see [`TopicTable::matches`]).
//! [`TopicTable::bind`] refuses a pattern over them; a key over them routes nowhere, since no
//! pattern could be compared with it at bounded cost. The broker should refuse such a message
//! at publish with [`check_topic`], so that the sender learns why.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// Longest pattern or routing key, in bytes. Longer than AMQP 0-9-1's 255-byte short string,
/// because AMQP 1.0 subjects and addresses have no such limit.
pub const MAX_TOPIC_BYTES: usize = 1024;

/// Most words in a pattern or routing key: the bound on matching work per message.
pub const MAX_TOPIC_WORDS: usize = 128;

/// Why a pattern or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Over [`MAX_TOPIC_BYTES`].
    #[error("topic of {len} bytes is over the limit of {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Over [`MAX_TOPIC_WORDS`].
    #[error("topic of {words} words is over the limit of {max}")]
    TooManyWords {
        /// Its word count.
        words: usize,
        /// The limit.
        max: usize,
    },
}

/// Checks a pattern or routing key against the limits.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong {
            len: topic.len(),
            max: MAX_TOPIC_BYTES,
        });
    }
    let words = if topic.is_empty() {
        0
    } else {
        topic.bytes().filter(|&b| b == b'.').count() + 1
    };
    if words > MAX_TOPIC_WORDS {
        return Err(TopicError::TooManyWords {
            words,
            max: MAX_TOPIC_WORDS,
        });
    }
    Ok(())
}

/// Whether `pattern` matches `key`: the reference semantics, in O(pattern words × key words)
/// time. False when either is over the limits, as a [`TopicTable`] would never route it.
pub fn pattern_matches(pattern: &str, key: &str) -> bool {
    if check_topic(pattern).is_err() || check_topic(key).is_err() {
        return false;
    }
    let words: Vec<&str> = words(key).collect();
    // reach[j]: the pattern segments taken so far can match exactly the first j words.
    let mut reach = vec![false; words.len() + 1];
    if let Some(r) = reach.first_mut() {
        *r = true;
    }
    for seg in segments(pattern) {
        reach = match seg {
            // Zero or more words: reachable from any earlier position.
            Seg::Hash => reach
                .iter()
                .scan(false, |any, &r| {
                    *any |= r;
                    Some(*any)
                })
                .collect(),
            Seg::Star => std::iter::once(false)
                .chain(reach.iter().zip(&words).map(|(&r, _)| r))
                .collect(),
            Seg::Word(w) => std::iter::once(false)
                .chain(reach.iter().zip(&words).map(|(&r, &k)| r && k == w))
                .collect(),
        };
        if !reach.contains(&true) {
            return false;
        }
    }
    reach.last().copied().unwrap_or(false)
}

/// One word of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg<'a> {
    Word(&'a str),
    Star,
    Hash,
}

/// The words of a key or pattern; the empty string has none.
fn words(s: &str) -> impl Iterator<Item = &str> {
    let n = if s.is_empty() { 0 } else { usize::MAX };
    s.split('.').take(n)
}

fn segments(pattern: &str) -> impl Iterator<Item = Seg<'_>> {
    words(pattern).map(|w| match w {
        "*" => Seg::Star,
        "#" => Seg::Hash,
        w => Seg::Word(w),
    })
}

/// A trie node: the pattern prefix spelled by the path from the root.
#[derive(Debug)]
struct Node<T> {
    words: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    /// Values bound to the pattern that ends here.
    values: HashSet<T>,
    /// A `#` node with another `#` above it. Only such a node can be reached at the same key
    /// position along two ways of matching, so only its visits are remembered.
    revisitable: bool,
}

impl<T> Node<T> {
    fn new(revisitable: bool) -> Self {
        Self {
            words: HashMap::new(),
            star: None,
            hash: None,
            values: HashSet::new(),
            revisitable,
        }
    }

    fn is_leaf(&self) -> bool {
        self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.is_leaf()
    }
}

/// The bindings of one topic exchange: `(pattern, value)` pairs, where a value is whatever
/// names a destination (a queue handle or id).
///
/// Patterns are kept in a trie over their words, so a key is matched by walking the words it
/// can reach rather than testing every pattern; nodes left empty by
/// [`unbind`](Self::unbind) are removed, so bind/unbind churn does not grow it.
#[derive(Debug)]
pub struct TopicTable<T> {
    root: Node<T>,
    /// Bindings.
    len: usize,
    /// Nodes besides the root.
    nodes: usize,
}

impl<T> Default for TopicTable<T> {
    fn default() -> Self {
        Self {
            root: Node::new(false),
            len: 0,
            nodes: 0,
        }
    }
}

impl<T: Clone + Eq + Hash> TopicTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `value` with `pattern`; false if that binding already exists. Patterns are
    /// compared as strings: `#` and `#.#` are two bindings, though they match the same keys.
    pub fn bind(&mut self, pattern: &str, value: T) -> Result<bool, TopicError> {
        check_topic(pattern)?;
        let mut created = 0;
        let mut seen_hash = false;
        let mut node = &mut self.root;
        for seg in segments(pattern) {
            node = match seg {
                Seg::Word(w) => {
                    if !node.words.contains_key(w) {
                        created += 1;
                    }
                    node.words
                        .entry(Box::from(w))
                        .or_insert_with(|| Node::new(false))
                }
                Seg::Star => node.star.get_or_insert_with(|| {
                    created += 1;
                    Box::new(Node::new(false))
                }),
                Seg::Hash => {
                    let revisitable = seen_hash;
                    seen_hash = true;
                    node.hash.get_or_insert_with(|| {
                        created += 1;
                        Box::new(Node::new(revisitable))
                    })
                }
            };
        }
        self.nodes += created;
        let added = node.values.insert(value);
        if added {
            self.len += 1;
        }
        Ok(added)
    }

    /// Removes the binding of `value` with `pattern`; false if there was none.
    pub fn unbind(&mut self, pattern: &str, value: &T) -> bool {
        if check_topic(pattern).is_err() {
            return false;
        }
        let mut pruned = 0;
        let removed = unbind_at(&mut self.root, &mut segments(pattern), value, &mut pruned);
        self.nodes -= pruned;
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Appends to `out` every value bound with a pattern matching `key`, each once however
    /// many of its patterns match (values already in `out` are not looked at). A key over the
    /// limits matches nothing.
    ///
    /// The walk goes through states (trie node, word position). Each is handled at most once
    /// (a `#` node with another `#` above it remembers its positions; every other state has
    /// only one way in) for a constant number of map lookups, so the work is
    /// O((key words + 1) × trie nodes reached), at most 129 × the nodes, whatever the patterns:
    /// `#.#.#.#` costs no more than its length. Nothing is allocated unless a value is reached
    /// by two patterns with more than a few values, or some pattern has two `#`.
    pub fn matches(&self, key: &str, out: &mut Vec<T>) {
        if self.len == 0 || check_topic(key).is_err() {
            return;
        }
        let end = key.len() + 1;
        let start = out.len();
        let mut walk = Walk {
            key,
            end,
            out,
            start,
            emitted: 0,
            seen: None,
            memo: HashSet::new(),
        };
        walk.visit(&self.root, if key.is_empty() { end } else { 0 });
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes besides the root: 0 whenever the table is empty.
    pub fn node_count(&self) -> usize {
        self.nodes
    }
}

/// Removes `value` at the end of `segs` below `node`, then prunes the child it went through if
/// that left it empty. Recursion depth is bounded by [`MAX_TOPIC_WORDS`].
fn unbind_at<'a, T: Eq + Hash, I: Iterator<Item = Seg<'a>>>(
    node: &mut Node<T>,
    segs: &mut I,
    value: &T,
    pruned: &mut usize,
) -> bool {
    let Some(seg) = segs.next() else {
        return node.values.remove(value);
    };
    match seg {
        Seg::Word(w) => {
            let Some(child) = node.words.get_mut(w) else {
                return false;
            };
            let removed = unbind_at(child, segs, value, pruned);
            if child.is_empty() {
                node.words.remove(w);
                *pruned += 1;
            }
            removed
        }
        Seg::Star | Seg::Hash => {
            let slot = if seg == Seg::Star {
                &mut node.star
            } else {
                &mut node.hash
            };
            let Some(child) = slot.as_deref_mut() else {
                return false;
            };
            let removed = unbind_at(child, segs, value, pruned);
            if child.is_empty() {
                *slot = None;
                *pruned += 1;
            }
            removed
        }
    }
}

/// One matching walk. Positions are byte offsets of a word's start in the key, and `end`
/// (past the last word) once all words are taken, so the key is never split up front.
struct Walk<'k, 'o, T> {
    key: &'k str,
    end: usize,
    out: &'o mut Vec<T>,
    /// Where this walk's results start in `out`.
    start: usize,
    /// Nodes whose values were emitted: the first needs no duplicate check.
    emitted: usize,
    /// This walk's results, once too many for a linear duplicate check.
    seen: Option<HashSet<T>>,
    /// (revisitable `#` node address, position) states already handled.
    memo: HashSet<(usize, usize)>,
}

/// Results up to which duplicates are found by scanning rather than hashing.
const LINEAR_DEDUPE: usize = 16;

impl<T: Clone + Eq + Hash> Walk<'_, '_, T> {
    /// The word at `pos` and the position after it.
    fn word_at(&self, pos: usize) -> (&str, usize) {
        let rest = self.key.get(pos..).unwrap_or("");
        match rest.split_once('.') {
            Some((word, _)) => (word, pos + word.len() + 1),
            None => (rest, self.end),
        }
    }

    /// `node` has matched the words before `pos`.
    fn visit(&mut self, node: &Node<T>, pos: usize) {
        if pos >= self.end {
            self.emit(&node.values);
            if let Some(hash) = node.hash.as_deref() {
                self.visit_hash(hash, pos);
            }
            return;
        }
        let (word, next) = self.word_at(pos);
        if let Some(child) = node.words.get(word) {
            self.visit(child, next);
        }
        if let Some(star) = node.star.as_deref() {
            self.visit(star, next);
        }
        if let Some(hash) = node.hash.as_deref() {
            self.visit_hash(hash, pos);
        }
    }

    /// `#` node `hash` entered at `pos`: it takes zero or more words, so it stands at every
    /// position from `pos` to the end.
    fn visit_hash(&mut self, hash: &Node<T>, mut pos: usize) {
        if hash.is_leaf() {
            // A trailing `#` takes whatever is left.
            pos = self.end;
        }
        loop {
            // Positions are walked in order to the end, so a position already handled means
            // all later ones were too.
            if hash.revisitable && !self.memo.insert((std::ptr::from_ref(hash).addr(), pos)) {
                return;
            }
            self.visit(hash, pos);
            if pos >= self.end {
                return;
            }
            pos = self.word_at(pos).1;
        }
    }

    fn emit(&mut self, values: &HashSet<T>) {
        if values.is_empty() {
            return;
        }
        self.emitted += 1;
        if self.emitted == 1 {
            // One node's values are a set: no duplicates among them.
            self.out.extend(values.iter().cloned());
            return;
        }
        if self.seen.is_none() {
            let so_far = self.out.get(self.start..).unwrap_or_default();
            if so_far.len() + values.len() <= LINEAR_DEDUPE {
                for v in values {
                    let dup = self
                        .out
                        .get(self.start..)
                        .is_some_and(|so_far| so_far.contains(v));
                    if !dup {
                        self.out.push(v.clone());
                    }
                }
                return;
            }
            self.seen = Some(so_far.iter().cloned().collect());
        }
        if let Some(seen) = &mut self.seen {
            for v in values {
                if seen.insert(v.clone()) {
                    self.out.push(v.clone());
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::Instant;

    fn matched<T: Clone + Eq + Hash + Ord>(t: &TopicTable<T>, key: &str) -> Vec<T> {
        let mut out = Vec::new();
        t.matches(key, &mut out);
        out.sort();
        out
    }

    /// Plain backtracking over word lists: exponential, but obviously the definition.
    fn naive(p: &[Seg<'_>], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((Seg::Hash, rest)) => (0..=k.len()).any(|i| naive(rest, &k[i..])),
            Some((Seg::Star, rest)) => !k.is_empty() && naive(rest, &k[1..]),
            Some((Seg::Word(w), rest)) => k.first() == Some(w) && naive(rest, &k[1..]),
        }
    }

    const CASES: &[(&str, &str, bool)] = &[
        ("#", "", true),
        ("#", "a", true),
        ("#", "a.b.c", true),
        ("#", ".", true),
        ("a.#", "a", true),
        ("a.#", "a.b", true),
        ("a.#", "a.b.c", true),
        ("a.#", "b.a", false),
        ("a.#", "", false),
        ("a.#", "a.", true),
        ("#.b", "b", true),
        ("#.b", "x.y.b", true),
        ("#.b", "b.x", false),
        ("#.b", ".b", true),
        ("a.#.b", "a.b", true),
        ("a.#.b", "a.x.b", true),
        ("a.#.b", "a.x.y.b", true),
        ("a.#.b", "a.x", false),
        ("a.#.b", "a.b.c", false),
        ("a.*.c", "a.x.c", true),
        ("a.*.c", "a..c", true),
        ("a.*.c", "a.c", false),
        ("a.*.c", "a.x.y.c", false),
        ("*", "a", true),
        ("*", "", false),
        ("*", "a.b", false),
        ("*", ".", false),
        ("*.*", ".", true),
        ("*.#", "", false),
        ("*.#", "a", true),
        ("*.#", "a.b", true),
        ("#.*", "", false),
        ("#.*", "a", true),
        ("#.*", "a.b.c", true),
        ("#.#", "", true),
        ("#.#", "a.b", true),
        ("#.a.#", "a", true),
        ("#.a.#", "x.a.y", true),
        ("#.a.#", "x.y", false),
        ("#.a.#.a.#", "a.a", true),
        ("#.a.#.a.#", "x.a.y.z", false),
        ("", "", true),
        ("", ".", false),
        ("", "a", false),
        ("a..b", "a..b", true),
        ("a..b", "a.b", false),
        ("a.", "a.", true),
        ("a.", "a", false),
        (".", ".", true),
        ("a*", "ab", false),
        ("a*", "a*", true),
        ("#b", "b", false),
        ("a.b", "a.*", false),
        ("a.*", "a.*", true),
        ("stock.nyse.ibm", "stock.nyse.ibm", true),
        ("stock.*.ibm", "stock.nyse.ibm", true),
        ("stock.#", "stock.nyse.ibm", true),
        ("*.nyse.*", "stock.nyse.ibm", true),
        ("*.nasdaq.*", "stock.nyse.ibm", false),
    ];

    #[test]
    fn semantics_table() {
        for &(pattern, key, want) in CASES {
            assert_eq!(
                pattern_matches(pattern, key),
                want,
                "{pattern:?} vs {key:?}"
            );
            let segs: Vec<_> = segments(pattern).collect();
            let words: Vec<_> = words(key).collect();
            assert_eq!(naive(&segs, &words), want, "naive {pattern:?} vs {key:?}");
            let mut t = TopicTable::new();
            assert!(t.bind(pattern, 1u8).unwrap());
            let got = matched(&t, key);
            assert_eq!(
                got,
                if want { vec![1] } else { vec![] },
                "{pattern:?} vs {key:?}"
            );
        }
    }

    #[test]
    fn all_cases_in_one_table() {
        let mut t = TopicTable::new();
        for (i, &(pattern, _, _)) in CASES.iter().enumerate() {
            t.bind(pattern, i).unwrap();
        }
        for &(_, key, _) in CASES {
            let want: Vec<usize> = CASES
                .iter()
                .enumerate()
                .filter(|(_, (p, _, _))| pattern_matches(p, key))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(matched(&t, key), want, "{key:?}");
        }
    }

    #[test]
    fn bind_and_unbind_report_changes() {
        let mut t = TopicTable::new();
        assert!(t.is_empty());
        assert!(t.bind("a.b", 1).unwrap());
        assert!(!t.bind("a.b", 1).unwrap());
        assert!(t.bind("a.b", 2).unwrap());
        assert!(t.bind("#", 1).unwrap());
        assert!(t.bind("#.#", 1).unwrap());
        assert_eq!(t.len(), 4);
        assert!(!t.unbind("a.b", &3));
        assert!(!t.unbind("a.c", &1));
        assert!(!t.unbind("a.b.c", &1));
        assert!(!t.unbind("*", &1));
        assert!(t.unbind("#.#", &1));
        assert!(!t.unbind("#.#", &1));
        assert_eq!(matched(&t, ""), vec![1]);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn unbind_prunes_empty_nodes() {
        let mut t = TopicTable::new();
        t.bind("a.b.c", 1).unwrap();
        assert_eq!(t.node_count(), 3);
        t.bind("a.b", 1).unwrap();
        t.bind("a.*.#", 1).unwrap();
        assert_eq!(t.node_count(), 5);
        assert!(t.unbind("a.b.c", &1));
        assert_eq!(t.node_count(), 4);
        assert!(t.unbind("a.*.#", &1));
        assert_eq!(t.node_count(), 2);
        assert!(t.unbind("a.b", &1));
        assert_eq!(t.node_count(), 0);
        assert!(t.is_empty());
        // A failed unbind on a path that does not exist creates nothing.
        assert!(!t.unbind("x.y", &1));
        assert_eq!(t.node_count(), 0);
    }

    #[test]
    fn each_value_once() {
        let mut t = TopicTable::new();
        for p in ["a.b", "a.*", "#", "a.#", "#.b", "#.#"] {
            t.bind(p, 7).unwrap();
        }
        t.bind("a.b", 8).unwrap();
        assert_eq!(matched(&t, "a.b"), vec![7, 8]);
        assert_eq!(matched(&t, "x"), vec![7]);

        // Enough values to leave the linear duplicate check for the hashed one.
        let mut t = TopicTable::new();
        for v in 0..40 {
            t.bind("a.*", v).unwrap();
            t.bind("#", v).unwrap();
            if v % 2 == 0 {
                t.bind("a.b", v).unwrap();
            }
        }
        t.bind("*.b", 100).unwrap();
        let got = matched(&t, "a.b");
        assert_eq!(got, (0..40).chain([100]).collect::<Vec<_>>());
    }

    #[test]
    fn appends_after_existing_output() {
        let mut t = TopicTable::new();
        t.bind("a", 1).unwrap();
        t.bind("#", 1).unwrap();
        let mut out = vec![1, 1];
        t.matches("a", &mut out);
        assert_eq!(out, vec![1, 1, 1]);
    }

    #[test]
    fn limits() {
        let long = "x".repeat(MAX_TOPIC_BYTES + 1);
        let ok_len = "x".repeat(MAX_TOPIC_BYTES);
        let many = vec!["a"; MAX_TOPIC_WORDS + 1].join(".");
        let ok_words = vec!["a"; MAX_TOPIC_WORDS].join(".");
        let mut t = TopicTable::new();
        assert_eq!(
            t.bind(&long, 1),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_BYTES + 1,
                max: MAX_TOPIC_BYTES
            })
        );
        assert_eq!(
            t.bind(&many, 1),
            Err(TopicError::TooManyWords {
                words: MAX_TOPIC_WORDS + 1,
                max: MAX_TOPIC_WORDS
            })
        );
        // Dots alone count: 128 dots are 129 empty words.
        assert!(t.bind(&".".repeat(MAX_TOPIC_WORDS), 1).is_err());
        assert!(t.bind(&".".repeat(MAX_TOPIC_WORDS - 1), 1).unwrap());
        assert_eq!(t.node_count(), MAX_TOPIC_WORDS);
        assert!(t.bind(&ok_len, 1).unwrap());
        assert!(t.bind(&ok_words, 1).unwrap());
        assert!(t.bind("#", 2).unwrap());
        assert_eq!(matched(&t, &ok_len), vec![1, 2]);
        assert_eq!(matched(&t, &ok_words), vec![1, 2]);
        assert_eq!(matched(&t, &long), Vec::<i32>::new());
        assert_eq!(matched(&t, &many), Vec::<i32>::new());
        assert!(!t.unbind(&long, &1));
        assert!(!pattern_matches("#", &many));
        assert!(!pattern_matches(&many, &many));
        assert!(pattern_matches(&ok_words, &ok_words));
    }

    #[test]
    fn any_input_is_harmless() {
        let mut t = TopicTable::new();
        let patterns = [
            "", ".", "..", "#", "*", "é.#.ü", "\u{0}.*", "#.#.#", "a.#..#",
        ];
        for p in patterns {
            t.bind(p, p.to_string()).unwrap();
        }
        for k in [
            "",
            ".",
            "...",
            "é",
            "é.x.ü",
            "\u{0}.\u{0}",
            "#",
            "*.*",
            "a..",
            ".a.",
        ] {
            let mut out = Vec::new();
            t.matches(k, &mut out);
            let mut want: Vec<String> = patterns
                .iter()
                .filter(|p| pattern_matches(p, k))
                .map(|p| p.to_string())
                .collect();
            out.sort();
            want.sort();
            assert_eq!(out, want, "{k:?}");
        }
    }

    /// Patterns that make naive backtracking exponential stay within the documented bound.
    #[test]
    fn repeated_hashes_stay_polynomial() {
        let mut t = TopicTable::new();
        let hashes = vec!["#"; MAX_TOPIC_WORDS - 1].join(".");
        let alternating = vec!["#.a"; MAX_TOPIC_WORDS / 2 - 1].join(".");
        t.bind(&hashes, 1).unwrap();
        t.bind(&format!("{hashes}.b"), 2).unwrap();
        t.bind(&alternating, 3).unwrap();
        t.bind(&format!("{alternating}.#.b"), 4).unwrap();
        let key_a = vec!["a"; MAX_TOPIC_WORDS].join(".");
        let key_b = vec!["a"; MAX_TOPIC_WORDS - 1].join(".") + ".b";
        let started = Instant::now();
        assert_eq!(matched(&t, &key_a), vec![1, 3]);
        assert_eq!(matched(&t, &key_b), vec![1, 2, 4]);
        assert_eq!(matched(&t, ""), vec![1]);
        assert!(pattern_matches(&alternating, &key_a));
        assert!(!pattern_matches(&alternating, &key_b));
        println!("pathological matches took {:?}", started.elapsed());
    }

    /// Prints ns per match over 10,000 patterns, half with wildcards, each key matching one.
    #[test]
    fn timing_10k_patterns() {
        const N: usize = 10_000;
        let mut t = TopicTable::new();
        let mut keys = Vec::new();
        for i in 0..N / 2 {
            t.bind(&format!("p{i}.x.y"), i as u32).unwrap();
            keys.push(format!("p{i}.x.y"));
        }
        for i in N / 2..N * 3 / 4 {
            t.bind(&format!("q{i}.*.z"), i as u32).unwrap();
            keys.push(format!("q{i}.w{i}.z"));
        }
        for i in N * 3 / 4..N {
            t.bind(&format!("r{i}.#"), i as u32).unwrap();
            keys.push(format!("r{i}.a.b"));
        }
        assert_eq!(t.len(), N);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(matched(&t, k), vec![i as u32], "{k}");
        }
        // Interleave the three kinds so the branch mix is realistic.
        let order: Vec<&str> = (0..N).map(|i| keys[(i * 7919) % N].as_str()).collect();
        let direct: HashMap<String, u32> = keys.iter().cloned().zip(0u32..).collect();
        let rounds = if cfg!(debug_assertions) { 5 } else { 100 };

        let mut out = Vec::with_capacity(4);
        let mut hits = 0usize;
        let started = Instant::now();
        for _ in 0..rounds {
            for k in &order {
                out.clear();
                t.matches(std::hint::black_box(k), &mut out);
                hits += out.len();
            }
        }
        let topic_ns = started.elapsed().as_nanos() as f64 / (rounds * N) as f64;
        assert_eq!(hits, rounds * N);

        let started = Instant::now();
        for _ in 0..rounds {
            for k in &order {
                hits += usize::from(direct.contains_key(std::hint::black_box(*k)));
            }
        }
        assert_eq!(hits, 2 * rounds * N);
        let direct_ns = started.elapsed().as_nanos() as f64 / (rounds * N) as f64;
        println!(
            "topic match over {N} patterns: {topic_ns:.0} ns/match; direct map lookup: \
             {direct_ns:.0} ns/lookup ({} build)",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
    }

    fn word() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "c", ""])
    }

    fn pattern_word() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "c", "", "*", "#", "#"])
    }

    fn key() -> impl Strategy<Value = String> {
        prop::collection::vec(word(), 0..6).prop_map(|w| w.join("."))
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop::collection::vec(pattern_word(), 0..6).prop_map(|w| w.join("."))
    }

    fn expected(bound: &BTreeSet<(String, u8)>, key: &str) -> Vec<u8> {
        let set: BTreeSet<u8> = bound
            .iter()
            .filter(|(p, _)| pattern_matches(p, key))
            .map(|&(_, v)| v)
            .collect();
        set.into_iter().collect()
    }

    proptest! {
        /// The DP reference agrees with plain backtracking.
        #[test]
        fn reference_is_the_definition(p in pattern(), k in key()) {
            let segs: Vec<_> = segments(&p).collect();
            let words: Vec<_> = words(&k).collect();
            prop_assert_eq!(pattern_matches(&p, &k), naive(&segs, &words));
        }

        /// The trie walk returns exactly the values with a matching pattern, each once.
        #[test]
        fn table_agrees_with_reference(
            bindings in prop::collection::vec((pattern(), 0u8..6), 0..24),
            keys in prop::collection::vec(key(), 1..16),
        ) {
            let mut t = TopicTable::new();
            let mut bound = BTreeSet::new();
            for (p, v) in &bindings {
                let fresh = bound.insert((p.clone(), *v));
                prop_assert_eq!(t.bind(p, *v).unwrap(), fresh);
            }
            prop_assert_eq!(t.len(), bound.len());
            for k in &keys {
                let mut out = Vec::new();
                t.matches(k, &mut out);
                let n = out.len();
                out.sort_unstable();
                out.dedup();
                prop_assert_eq!(out.len(), n, "duplicates for {:?}", k);
                prop_assert_eq!(out, expected(&bound, k), "key {:?}", k);
            }
        }

        /// Bind/unbind sequences keep the table equal to a plain set of bindings, and
        /// unbinding everything leaves no nodes behind.
        #[test]
        fn churn_stays_consistent(
            ops in prop::collection::vec((any::<bool>(), pattern(), 0u8..4), 0..60),
            keys in prop::collection::vec(key(), 1..8),
        ) {
            let mut t = TopicTable::new();
            let mut bound = BTreeSet::new();
            for (bind, p, v) in &ops {
                if *bind {
                    prop_assert_eq!(t.bind(p, *v).unwrap(), bound.insert((p.clone(), *v)));
                } else {
                    prop_assert_eq!(t.unbind(p, v), bound.remove(&(p.clone(), *v)));
                }
                prop_assert_eq!(t.len(), bound.len());
            }
            for k in &keys {
                prop_assert_eq!(matched(&t, k), expected(&bound, k), "key {:?}", k);
            }
            for (p, v) in &bound {
                prop_assert!(t.unbind(p, v));
            }
            prop_assert!(t.is_empty());
            prop_assert_eq!(t.node_count(), 0);
            for k in &keys {
                prop_assert_eq!(matched(&t, k), Vec::<u8>::new());
            }
        }
    }
}
