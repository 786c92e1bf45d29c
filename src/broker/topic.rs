//! The binding table of a topic exchange: which bound values a routing key reaches.
//!
//! # Semantics
//! These are the AMQP 0-9-1 (RabbitMQ) topic rules, so clients moving over keep their
//! bindings' meaning.
//!
//! A routing key is a list of words separated by `.`. Words may be empty (`a..b` is `a`, an
//! empty word, `b`; `a.` is `a` and an empty word), but the empty string is the empty list,
//! not one empty word, as in RabbitMQ. In a key, `*` and `#` are ordinary words.
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
//! [`TopicTable::bind`] refuses a pattern over them; a key over them matches nothing, not even
//! `#`, so that the work per message stays bounded. The broker should refuse such a message at
//! publish with [`check_topic`], so that the sender learns why.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use crate::idhash::IdSet;

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
    /// The table has as many nodes as its 32-bit node ids can name.
    #[error("topic table is full")]
    TableFull,
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

/// Words up to this many bytes are stored inline, so that comparing one with a key's word
/// reads no other memory.
const INLINE_WORD: usize = 22;

/// The bytes of a literal word or pattern.
#[derive(Debug)]
enum Word {
    Short { len: u8, bytes: [u8; INLINE_WORD] },
    Long(Box<[u8]>),
}

impl Word {
    fn new(word: &[u8]) -> Self {
        let mut bytes = [0; INLINE_WORD];
        match (bytes.get_mut(..word.len()), u8::try_from(word.len())) {
            (Some(dst), Ok(len)) => {
                dst.copy_from_slice(word);
                Word::Short { len, bytes }
            }
            _ => Word::Long(word.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Word::Short { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Word::Long(bytes) => bytes,
        }
    }
}

// Hashed and compared as its bytes, so that maps keyed by it can be probed with a `&[u8]`.
impl Hash for Word {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for Word {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Word {}

impl Borrow<[u8]> for Word {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// The values bound to one pattern. Most patterns have one, kept without a set's allocation
/// so that emitting it reads nothing beyond the node.
#[derive(Debug)]
enum Values<T> {
    None,
    One(T),
    // Boxed so that nodes, of which most have one value or none, stay small.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<T>>),
}

impl<T: Eq + Hash> Values<T> {
    fn insert(&mut self, value: T) -> bool {
        match std::mem::replace(self, Values::None) {
            Values::None => {
                *self = Values::One(value);
                true
            }
            Values::One(one) if one == value => {
                *self = Values::One(one);
                false
            }
            Values::One(one) => {
                *self = Values::Many(Box::new(HashSet::from([one, value])));
                true
            }
            Values::Many(mut set) => {
                let added = set.insert(value);
                *self = Values::Many(set);
                added
            }
        }
    }

    fn remove(&mut self, value: &T) -> bool {
        match self {
            Values::None => false,
            Values::One(one) => {
                let removed = one == value;
                if removed {
                    *self = Values::None;
                }
                removed
            }
            Values::Many(set) => {
                let removed = set.remove(value);
                if set.len() <= 1 {
                    let last = set.drain().next();
                    *self = last.map_or(Values::None, Values::One);
                }
                removed
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Values::None)
    }

    fn len(&self) -> usize {
        match self {
            Values::None => 0,
            Values::One(_) => 1,
            Values::Many(set) => set.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        let (one, many) = match self {
            Values::None => (None, None),
            Values::One(one) => (Some(one), None),
            Values::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// A node of the wildcard trie: the pattern prefix spelled by its path from the root.
#[derive(Debug)]
struct Node<T> {
    /// Names this node as the parent in its literal children's keys.
    id: u32,
    /// Literal children.
    literals: u32,
    /// Slot of the `*` child, 0 for none (slot 0 is the root, nobody's child).
    star: u32,
    /// Slot of the `#` child, likewise.
    hash: u32,
    /// A `#` node with another `#` above it. Only such a node can be reached at the same key
    /// position along two ways of matching, so only its visits are remembered.
    revisitable: bool,
    /// Values bound to the pattern ending here.
    values: Values<T>,
}

impl<T> Node<T> {
    fn new(id: u32, revisitable: bool) -> Self {
        Self {
            id,
            literals: 0,
            star: 0,
            hash: 0,
            revisitable,
            values: Values::None,
        }
    }

    fn is_leaf(&self) -> bool {
        self.literals == 0 && self.star == 0 && self.hash == 0
    }

    fn is_empty(&self) -> bool {
        self.is_leaf() && matches!(self.values, Values::None)
    }
}

/// The key of a node reached by a literal word: its parent's id and the word.
#[derive(Debug)]
struct EdgeKey {
    parent: u32,
    word: Word,
}

/// An edge key, stored or borrowed. The literal map is probed through `dyn Edge`, since
/// `HashMap::get` needs a type its keys borrow as, and a `(u32, &[u8])` is not one.
trait Edge {
    fn parent(&self) -> u32;
    fn word(&self) -> &[u8];
}

impl Edge for EdgeKey {
    fn parent(&self) -> u32 {
        self.parent
    }
    fn word(&self) -> &[u8] {
        self.word.as_bytes()
    }
}

impl Edge for (u32, &[u8]) {
    fn parent(&self) -> u32 {
        self.0
    }
    fn word(&self) -> &[u8] {
        self.1
    }
}

impl Hash for dyn Edge + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u32(self.parent());
        state.write(self.word());
    }
}

impl PartialEq for dyn Edge + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parent() == other.parent() && self.word() == other.word()
    }
}

impl Eq for dyn Edge + '_ {}

impl<'a> Borrow<dyn Edge + 'a> for EdgeKey {
    fn borrow(&self) -> &(dyn Edge + 'a) {
        self
    }
}

impl Hash for EdgeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn Edge).hash(state);
    }
}

impl PartialEq for EdgeKey {
    fn eq(&self, other: &Self) -> bool {
        (self as &dyn Edge) == (other as &dyn Edge)
    }
}

impl Eq for EdgeKey {}

/// Where a trie node is stored.
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    /// In `wild`, at this slot.
    Wild(u32),
    /// In `literal`, under this parent id and word.
    Literal(u32, &'a [u8]),
}

/// The bindings of one topic exchange: `(pattern, value)` pairs, where a value is whatever
/// names a destination (a queue handle or id).
///
/// Patterns without wildcards are kept whole in a map, so a key reaches them with one lookup,
/// as a direct exchange would. The others form a trie over their words, walked along the words
/// of the key rather than testing every pattern. The trie is flat: a node reached by a word
/// sits in one map under `(parent id, word)`, one reached by `*` or `#` in a vector its parent
/// indexes; short words and a single value are stored inline. So a step down costs one hash
/// lookup or none, and a large table stays compact. Nodes left empty by
/// [`unbind`](Self::unbind) are removed and their ids and slots reused, so churn does not grow
/// it.
#[derive(Debug)]
pub struct TopicTable<T> {
    /// Patterns without `*` or `#`, by their whole text.
    exact: HashMap<Word, Values<T>>,
    /// Trie nodes reached by a literal word.
    literal: HashMap<EdgeKey, Node<T>>,
    /// Trie nodes reached by `*` or `#`; slot 0 is the root (id 0).
    wild: Vec<Node<T>>,
    free_slots: Vec<u32>,
    free_ids: Vec<u32>,
    next_id: u32,
    /// Bindings.
    len: usize,
}

impl<T> Default for TopicTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            literal: HashMap::new(),
            wild: vec![Node::new(0, false)],
            free_slots: Vec::new(),
            free_ids: Vec::new(),
            next_id: 1,
            len: 0,
        }
    }
}

impl<T: Clone + Eq + Hash> TopicTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn node(&self, at: At<'_>) -> Option<&Node<T>> {
        match at {
            At::Wild(slot) => self.wild.get(slot as usize),
            At::Literal(parent, word) => self.literal.get(&(parent, word) as &dyn Edge),
        }
    }

    fn node_mut(&mut self, at: At<'_>) -> Option<&mut Node<T>> {
        match at {
            At::Wild(slot) => self.wild.get_mut(slot as usize),
            At::Literal(parent, word) => self.literal.get_mut(&(parent, word) as &dyn Edge),
        }
    }

    /// Where the child of the node at `at` along `seg` is, if it exists.
    fn child<'a>(&self, at: At<'_>, seg: Seg<'a>) -> Option<At<'a>> {
        let node = self.node(at)?;
        let child = match seg {
            Seg::Word(w) => At::Literal(node.id, w.as_bytes()),
            Seg::Star if node.star != 0 => At::Wild(node.star),
            Seg::Hash if node.hash != 0 => At::Wild(node.hash),
            Seg::Star | Seg::Hash => return None,
        };
        self.node(child).map(|_| child)
    }

    /// Binds `value` with `pattern`; false if that binding already exists. Patterns are
    /// compared as strings: `#` and `#.#` are two bindings, though they match the same keys.
    pub fn bind(&mut self, pattern: &str, value: T) -> Result<bool, TopicError> {
        check_topic(pattern)?;
        let added = if segments(pattern).all(|s| matches!(s, Seg::Word(_))) {
            self.exact
                .entry(Word::new(pattern.as_bytes()))
                .or_insert(Values::None)
                .insert(value)
        } else {
            self.bind_wild(pattern, value)?
        };
        if added {
            self.len += 1;
        }
        Ok(added)
    }

    fn bind_wild(&mut self, pattern: &str, value: T) -> Result<bool, TopicError> {
        // Ids and slots are u32: refuse a pattern that could need more than are left.
        let room = u32::MAX as usize - MAX_TOPIC_WORDS;
        if self.next_id as usize > room || self.wild.len() > room {
            return Err(TopicError::TableFull);
        }
        let mut at = At::Wild(0);
        let mut seen_hash = false;
        for seg in segments(pattern) {
            if let Some(child) = self.child(at, seg) {
                at = child;
                seen_hash |= seg == Seg::Hash;
                continue;
            }
            let id = self.free_ids.pop().unwrap_or_else(|| {
                self.next_id += 1;
                self.next_id - 1
            });
            let node = Node::new(id, seen_hash && seg == Seg::Hash);
            let child = match seg {
                Seg::Word(w) => {
                    let parent = self.node(at).map_or(0, |n| n.id);
                    let word = Word::new(w.as_bytes());
                    self.literal.insert(EdgeKey { parent, word }, node);
                    At::Literal(parent, w.as_bytes())
                }
                Seg::Star | Seg::Hash => match self.free_slots.pop() {
                    Some(slot) => {
                        if let Some(free) = self.wild.get_mut(slot as usize) {
                            *free = node;
                        }
                        At::Wild(slot)
                    }
                    None => {
                        self.wild.push(node);
                        At::Wild(self.wild.len() as u32 - 1)
                    }
                },
            };
            if let Some(parent) = self.node_mut(at) {
                match (seg, child) {
                    (Seg::Star, At::Wild(slot)) => parent.star = slot,
                    (Seg::Hash, At::Wild(slot)) => parent.hash = slot,
                    _ => parent.literals += 1,
                }
            }
            at = child;
            seen_hash |= seg == Seg::Hash;
        }
        Ok(self
            .node_mut(at)
            .is_some_and(|node| node.values.insert(value)))
    }

    /// Removes the binding of `value` with `pattern`; false if there was none.
    pub fn unbind(&mut self, pattern: &str, value: &T) -> bool {
        if check_topic(pattern).is_err() {
            return false;
        }
        let removed = if segments(pattern).all(|s| matches!(s, Seg::Word(_))) {
            let Some(values) = self.exact.get_mut(pattern.as_bytes()) else {
                return false;
            };
            let removed = values.remove(value);
            if values.is_empty() {
                self.exact.remove(pattern.as_bytes());
            }
            removed
        } else {
            self.unbind_wild(pattern, value)
        };
        if removed {
            self.len -= 1;
            if self.len == 0 {
                // Give back what the table's largest size took.
                *self = Self::default();
            }
        }
        removed
    }

    fn unbind_wild(&mut self, pattern: &str, value: &T) -> bool {
        // Where each node on the pattern's path is, from the root.
        let mut path = vec![At::Wild(0)];
        let mut at = At::Wild(0);
        for seg in segments(pattern) {
            let Some(child) = self.child(at, seg) else {
                return false;
            };
            path.push(child);
            at = child;
        }
        if !self
            .node_mut(at)
            .is_some_and(|node| node.values.remove(value))
        {
            return false;
        }
        while let (Some(at), Some(&parent)) = (path.pop(), path.last()) {
            let Some(node) = self.node(at) else {
                break;
            };
            if !node.is_empty() {
                break;
            }
            self.free_ids.push(node.id);
            match at {
                At::Literal(p, word) => {
                    self.literal.remove(&(p, word) as &dyn Edge);
                }
                At::Wild(slot) => self.free_slots.push(slot),
            }
            if let Some(p) = self.node_mut(parent) {
                match at {
                    At::Literal(..) => p.literals -= 1,
                    At::Wild(slot) if p.star == slot => p.star = 0,
                    At::Wild(_) => p.hash = 0,
                }
            }
        }
        true
    }

    /// Appends to `out` every value bound with a pattern matching `key`, each once however
    /// many of its patterns match (values already in `out` are not looked at). A key over the
    /// limits matches nothing.
    ///
    /// Patterns without wildcards cost one lookup of the whole key. The trie walk goes through
    /// states (trie node, word position). Each is handled at most once (a `#` node with
    /// another `#` above it remembers its positions; every other state has only one way in)
    /// for one hash lookup, so the work is O((key words + 1) × trie nodes reached), at most
    /// 129 × the nodes, whatever the patterns: `#.#.#.#` costs no more than its length.
    /// Nothing is allocated unless a value is reached by two patterns with more than a few
    /// values, or some pattern has two `#`.
    pub fn matches(&self, key: &str, out: &mut Vec<T>) {
        if self.len == 0 || check_topic(key).is_err() {
            return;
        }
        let end = key.len() + 1;
        let start = out.len();
        let mut walk = Walk {
            table: self,
            key,
            end,
            out,
            start,
            emitted: 0,
            seen: None,
            memo: IdSet::default(),
        };
        if let Some(values) = self.exact.get(key.as_bytes()) {
            walk.emit(values);
        }
        if let Some(root) = self.wild.first()
            && !root.is_leaf()
        {
            walk.visit(root, if key.is_empty() { end } else { 0 });
        }
    }

    /// The `*` or `#` child in `slot`, if there is one.
    fn wild_child(&self, slot: u32) -> Option<&Node<T>> {
        if slot == 0 {
            return None;
        }
        self.wild.get(slot as usize)
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of stored nodes: one per distinct wildcard-free pattern, plus the trie's nodes
    /// besides its root. 0 whenever the table is empty.
    pub fn node_count(&self) -> usize {
        self.exact.len() + self.literal.len() + self.wild.len() - 1 - self.free_slots.len()
    }
}

/// One matching walk. Positions are byte offsets of a word's start in the key, and `end`
/// (past the last word) once all words are taken, so the key is never split up front.
struct Walk<'t, 'k, 'o, T> {
    table: &'t TopicTable<T>,
    key: &'k str,
    end: usize,
    out: &'o mut Vec<T>,
    /// Where this walk's results start in `out`.
    start: usize,
    /// Nodes whose values were emitted: the first needs no duplicate check.
    emitted: usize,
    /// This walk's results, once too many for a linear duplicate check.
    seen: Option<HashSet<T>>,
    /// (revisitable `#` node id, position) states already handled.
    memo: IdSet<(u32, usize)>,
}

/// Results up to which duplicates are found by scanning rather than hashing.
const LINEAR_DEDUPE: usize = 16;

impl<'t, T: Clone + Eq + Hash> Walk<'t, '_, '_, T> {
    /// The word at `pos` and the position after it.
    fn word_at(&self, pos: usize) -> (&str, usize) {
        let rest = self.key.get(pos..).unwrap_or("");
        match rest.split_once('.') {
            Some((word, _)) => (word, pos + word.len() + 1),
            None => (rest, self.end),
        }
    }

    /// `node` has matched the words before `pos`.
    fn visit(&mut self, node: &'t Node<T>, pos: usize) {
        let table = self.table;
        if pos >= self.end {
            self.emit(&node.values);
            if let Some(hash) = table.wild_child(node.hash) {
                self.visit_hash(hash, pos);
            }
            return;
        }
        let (word, next) = self.word_at(pos);
        if node.literals != 0
            && let Some(child) = table.literal.get(&(node.id, word.as_bytes()) as &dyn Edge)
        {
            self.visit(child, next);
        }
        if let Some(star) = table.wild_child(node.star) {
            self.visit(star, next);
        }
        if let Some(hash) = table.wild_child(node.hash) {
            self.visit_hash(hash, pos);
        }
    }

    /// `#` node `hash` entered at `pos`: it takes zero or more words, so it stands at every
    /// position from `pos` to the end.
    fn visit_hash(&mut self, hash: &'t Node<T>, mut pos: usize) {
        if hash.is_leaf() {
            // A trailing `#` takes whatever is left.
            pos = self.end;
        }
        loop {
            // Positions are walked in order to the end, so a position already handled means
            // all later ones were too.
            if hash.revisitable && !self.memo.insert((hash.id, pos)) {
                return;
            }
            self.visit(hash, pos);
            if pos >= self.end {
                return;
            }
            pos = self.word_at(pos).1;
        }
    }

    fn emit(&mut self, values: &Values<T>) {
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
                for v in values.iter() {
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
            for v in values.iter() {
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
    use std::collections::{BTreeSet, HashMap};
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
        t.bind("a.*.c", 1).unwrap();
        assert_eq!(t.node_count(), 3);
        t.bind("a.*", 1).unwrap();
        assert_eq!(t.node_count(), 3);
        t.bind("a.#", 2).unwrap();
        t.bind("a.b", 1).unwrap();
        assert_eq!(t.node_count(), 5);
        assert!(t.unbind("a.*.c", &1));
        assert_eq!(t.node_count(), 4);
        assert!(t.unbind("a.*", &1));
        assert_eq!(t.node_count(), 3);
        assert!(t.unbind("a.#", &2));
        assert_eq!(t.node_count(), 1);
        // Failed unbinds along paths that do not exist create nothing.
        assert!(!t.unbind("x.*", &1));
        assert!(!t.unbind("a.b", &2));
        assert_eq!(t.node_count(), 1);
        assert!(t.unbind("a.b", &1));
        assert_eq!(t.node_count(), 0);
        assert!(t.is_empty());

        // Freed ids are reused without confusing old and new children.
        for round in 0..3 {
            t.bind("x.*.y", round).unwrap();
            t.bind("x.#", round).unwrap();
            assert_eq!(matched(&t, "x.q.y"), vec![round]);
            t.unbind("x.*.y", &round);
            assert_eq!(matched(&t, "x.q.y"), vec![round]);
            t.bind("z.*", round).unwrap();
            t.unbind("x.#", &round);
            assert_eq!(matched(&t, "x.q.y"), Vec::<i32>::new());
            assert_eq!(matched(&t, "z.q"), vec![round]);
            t.unbind("z.*", &round);
            assert_eq!(t.node_count(), 0);
        }
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
        assert!(
            t.bind(&format!("#{}", ".".repeat(MAX_TOPIC_WORDS - 1)), 1)
                .unwrap()
        );
        assert_eq!(t.node_count(), 1 + MAX_TOPIC_WORDS);
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

    /// Prints ns per match over 10,000 patterns, half with wildcards, each key matching one,
    /// beside a plain map lookup of the same keys (what a direct exchange does).
    #[test]
    fn timing_10k_patterns() {
        const N: usize = 10_000;
        let mut t = TopicTable::new();
        // Half literal, a quarter with `*`, a quarter with `#`.
        let kinds: [(&str, Vec<String>); 3] = [
            ("literal", (0..N / 2).map(|i| format!("p{i}.x.y")).collect()),
            (
                "`*`",
                (N / 2..N * 3 / 4).map(|i| format!("q{i}.w{i}.z")).collect(),
            ),
            ("`#`", (N * 3 / 4..N).map(|i| format!("r{i}.a.b")).collect()),
        ];
        for i in 0..N {
            let pattern = match i {
                i if i < N / 2 => format!("p{i}.x.y"),
                i if i < N * 3 / 4 => format!("q{i}.*.z"),
                i => format!("r{i}.#"),
            };
            t.bind(&pattern, i as u32).unwrap();
        }
        assert_eq!(t.len(), N);
        let keys: Vec<&str> = kinds
            .iter()
            .flat_map(|(_, k)| k)
            .map(String::as_str)
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(matched(&t, k), vec![i as u32], "{k}");
        }
        let direct: HashMap<&str, u32> = keys.iter().copied().zip(0u32..).collect();
        let matches = if cfg!(debug_assertions) {
            50_000
        } else {
            2_000_000
        };

        // Visits `keys` in a scattered order, as a mix of publishers would.
        let time = |keys: &[&str], f: &mut dyn FnMut(&str) -> usize| {
            let n = keys.len();
            let started = Instant::now();
            let mut hits = 0;
            for i in 0..matches {
                hits += f(keys[(i * 7919) % n]);
            }
            assert_eq!(hits, matches);
            started.elapsed().as_nanos() as f64 / matches as f64
        };
        let mut out = Vec::with_capacity(4);
        let mut topic = |k: &str| {
            out.clear();
            t.matches(std::hint::black_box(k), &mut out);
            out.len()
        };
        let mixed = time(&keys, &mut topic);
        let per_kind: Vec<String> = kinds
            .iter()
            .map(|(name, k)| {
                let k: Vec<&str> = k.iter().map(String::as_str).collect();
                format!("{name} {:.0}", time(&k, &mut topic))
            })
            .collect();
        let plain = time(&keys, &mut |k| {
            usize::from(direct.contains_key(std::hint::black_box(k)))
        });
        println!(
            "topic match over {N} patterns: {mixed:.0} ns/match ({}), plain map lookup \
             {plain:.0} ns ({} build)",
            per_kind.join(", "),
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
