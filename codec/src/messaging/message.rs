//! A message as the broker keeps it: its raw bytes plus where each section lies (§3.2).
//!
//! The bytes are a chain of `Bytes` segments, normally one per transfer frame, shared with the
//! frames they arrived in. Building a [`Message`] only walks the section headers (descriptor,
//! constructor, size) to find each section: nothing is decoded or copied. The sections a
//! broker routes on are decoded on request from those offsets, and the bare message
//! (properties through body, §3.2: immutable) can be forwarded as the original slices.
//!
//! One copy can happen on receipt: when a routing section (header through
//! application-properties) straddles two frames, that prefix is joined into one segment so it
//! can be decoded in place. The body is never joined.

use bytes::{Bytes, BytesMut};

use crate::codes as c;
use crate::composite::DescribedBody;
use crate::decode::{ByteCursor, Decode, Decoder, Result, skip_value_in};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::limits::DecodeLimits;
use crate::messaging::sections::{
    AmqpSequence, AmqpValue, ApplicationProperties, Data, DeliveryAnnotations, Footer, Header,
    MessageAnnotations, Properties, Section,
};
use crate::types::Map;

/// Message format code of a standard AMQP message (§2.7.5).
pub const MESSAGE_FORMAT: u32 = 0;

/// Which body sections a message carries (§3.2: one kind only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BodyKind {
    /// No body section (tolerated on receipt; the spec requires one).
    #[default]
    None,
    /// One or more `data` sections.
    Data,
    /// One or more `amqp-sequence` sections.
    AmqpSequence,
    /// One `amqp-value` section.
    AmqpValue,
}

/// Byte range of a section within the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Where each section of a message lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SectionIndex {
    /// §3.2.1
    pub header: Option<Span>,
    /// §3.2.2
    pub delivery_annotations: Option<Span>,
    /// §3.2.3
    pub message_annotations: Option<Span>,
    /// §3.2.4
    pub properties: Option<Span>,
    /// §3.2.5
    pub application_properties: Option<Span>,
    /// All body sections together.
    pub body: Option<Span>,
    /// The kind of the body sections.
    pub body_kind: BodyKind,
    /// How many body sections there are.
    pub body_sections: u32,
    /// §3.2.9
    pub footer: Option<Span>,
}

impl SectionIndex {
    /// Where the bare message starts: properties, application-properties or body, whichever
    /// comes first (§3.2).
    pub fn bare_start(&self, len: usize) -> usize {
        self.properties
            .or(self.application_properties)
            .or(self.body)
            .map_or(self.footer.map_or(len, |f| f.start), |s| s.start)
    }

    /// Where the bare message ends (the footer is not part of it).
    pub fn bare_end(&self, len: usize) -> usize {
        self.footer.map_or(len, |f| f.start)
    }

    /// Where the routing prefix (header through application-properties) ends.
    fn routing_end(&self) -> usize {
        [
            self.header,
            self.delivery_annotations,
            self.message_annotations,
            self.properties,
            self.application_properties,
        ]
        .iter()
        .flatten()
        .map(|s| s.end)
        .max()
        .unwrap_or(0)
    }
}

/// A message: raw bytes in one or more segments, plus its [`SectionIndex`].
#[derive(Debug, Clone)]
pub struct Message {
    head: Bytes,
    tail: Vec<Bytes>,
    len: usize,
    index: SectionIndex,
    limits: DecodeLimits,
}

impl Message {
    /// Indexes a message held in one buffer.
    #[inline]
    pub fn decode(bytes: Bytes) -> Result<Self> {
        Self::from_single(bytes, DecodeLimits::DEFAULT)
    }

    /// Indexes a message held in one buffer, with explicit decode limits.
    #[inline]
    pub fn decode_with(bytes: Bytes, limits: DecodeLimits) -> Result<Self> {
        Self::from_single(bytes, limits)
    }

    /// Indexes a message held in one buffer: the common case (one transfer frame), which
    /// needs no segment list and reads the section headers straight from the slice.
    fn from_single(bytes: Bytes, limits: DecodeLimits) -> Result<Self> {
        let mut index = SectionIndex::default();
        scan(
            &mut SliceCursor {
                data: &bytes,
                pos: 0,
            },
            limits,
            &mut index,
        )?;
        Ok(Self {
            len: bytes.len(),
            head: bytes,
            tail: Vec::new(),
            index,
            limits,
        })
    }

    /// Indexes a message held in several buffers (one per transfer frame).
    pub fn from_segments(segments: Vec<Bytes>) -> Result<Self> {
        Self::from_segments_with(segments, DecodeLimits::DEFAULT)
    }

    /// Indexes a message with explicit decode limits (applied to later section decodes too).
    pub fn from_segments_with(segments: Vec<Bytes>, limits: DecodeLimits) -> Result<Self> {
        if segments.iter().filter(|s| !s.is_empty()).count() <= 1 {
            let single = segments.into_iter().find(|s| !s.is_empty());
            return Self::from_single(single.unwrap_or_default(), limits);
        }
        let mut segments: Vec<Bytes> = segments.into_iter().filter(|s| !s.is_empty()).collect();
        let mut index = SectionIndex::default();
        scan(&mut ChainCursor::new(&segments), limits, &mut index)?;
        let len = segments.iter().map(Bytes::len).sum();
        let routing_end = index.routing_end();
        let first_len = segments.first().map_or(0, Bytes::len);
        if routing_end > first_len {
            segments = join_prefix(segments, routing_end);
        }
        let mut iter = segments.into_iter();
        let head = iter.next().unwrap_or_default();
        Ok(Self {
            head,
            tail: iter.collect(),
            len,
            index,
            limits,
        })
    }

    /// Encodes `sections` (in the order given) and indexes the result.
    pub fn from_sections(sections: &[Section<'_>]) -> Result<Self> {
        let mut buf = BytesMut::with_capacity(sections.iter().map(Encode::encoded_len).sum());
        sections.iter().for_each(|s| s.encode(&mut buf));
        Self::decode(buf.freeze())
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where each section lies.
    pub fn index(&self) -> &SectionIndex {
        &self.index
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.head)
            .filter(|b| !b.is_empty())
            .chain(self.tail.iter())
    }

    /// The same message with its small pieces moved into memory of their own.
    ///
    /// Segments are slices of the buffers frames were read into, and a slice keeps its whole
    /// buffer alive. A message stored for long (in a queue) could thus hold far more memory
    /// than its size: a 100-byte message can pin a 64 KiB read buffer. Copying the whole
    /// message when it is at most `small` bytes, and otherwise each run of segments shorter
    /// than `small`, bounds that overhead; large segments stay shared. The bytes and section
    /// offsets are unchanged.
    pub fn compacted(&self, small: usize) -> Message {
        if self.len <= small {
            return Message {
                head: if self.tail.is_empty() {
                    Bytes::copy_from_slice(&self.head)
                } else {
                    self.to_contiguous()
                },
                tail: Vec::new(),
                len: self.len,
                index: self.index,
                limits: self.limits,
            };
        }
        let mut out: Vec<Bytes> = Vec::with_capacity(self.tail.len() + 1);
        let mut run = BytesMut::new();
        for seg in self.segments() {
            if seg.len() < small {
                run.extend_from_slice(seg);
                continue;
            }
            if !run.is_empty() {
                out.push(run.split().freeze());
            }
            out.push(seg.clone());
        }
        if !run.is_empty() {
            out.push(run.freeze());
        }
        let mut segments = out.into_iter();
        Message {
            head: segments.next().unwrap_or_default(),
            tail: segments.collect(),
            len: self.len,
            index: self.index,
            limits: self.limits,
        }
    }

    /// The whole message as one buffer: free for a single segment, a copy otherwise.
    pub fn to_contiguous(&self) -> Bytes {
        if self.tail.is_empty() {
            return self.head.clone();
        }
        let mut buf = BytesMut::with_capacity(self.len);
        self.segments().for_each(|s| buf.extend_from_slice(s));
        buf.freeze()
    }

    /// The bytes of `span` as slices of the segments (no copy).
    pub fn slices(&self, span: Span) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut offset = 0;
        for seg in self.segments() {
            let (seg_start, seg_end) = (offset, offset + seg.len());
            offset = seg_end;
            let start = span.start.max(seg_start);
            let end = span.end.min(seg_end);
            if start < end {
                out.push(seg.slice(start - seg_start..end - seg_start));
            }
        }
        out
    }

    /// The bytes of `span` as one buffer: a slice when it lies in one segment, else a copy.
    pub fn contiguous(&self, span: Span) -> Bytes {
        if self.tail.is_empty() {
            // One segment (every stored message below the compaction size): just a slice.
            let end = span.end.min(self.head.len());
            return self.head.slice(span.start.min(end)..end);
        }
        let mut parts = self.slices(span);
        if parts.len() == 1 {
            return parts.pop().unwrap_or_default();
        }
        let mut buf = BytesMut::with_capacity(span.len());
        parts.iter().for_each(|p| buf.extend_from_slice(p));
        buf.freeze()
    }

    /// The header section, or the defaults when there is none (§3.2.1).
    pub fn header(&self) -> Result<Header> {
        match self.index.header {
            Some(span) => self.decode_composite(span, |h| h),
            None => Ok(Header::default()),
        }
    }

    /// The properties section, borrowed from the message bytes.
    pub fn properties(&self) -> Result<Option<Properties<'_>>> {
        match self.index.properties {
            Some(span) => self.decode_composite(span, Some),
            None => Ok(None),
        }
    }

    /// The delivery annotations.
    pub fn delivery_annotations(&self) -> Result<Option<Map>> {
        self.index
            .delivery_annotations
            .map(|span| self.decode_head::<DeliveryAnnotations>(span).map(|a| a.0))
            .transpose()
    }

    /// The message annotations.
    pub fn message_annotations(&self) -> Result<Option<Map>> {
        self.index
            .message_annotations
            .map(|span| self.decode_head::<MessageAnnotations>(span).map(|a| a.0))
            .transpose()
    }

    /// The application properties.
    pub fn application_properties(&self) -> Result<Option<Map>> {
        self.index
            .application_properties
            .map(|span| self.decode_head::<ApplicationProperties>(span).map(|a| a.0))
            .transpose()
    }

    /// The footer (copied first if it straddles segments).
    pub fn footer(&self) -> Result<Option<Map>> {
        let Some(span) = self.index.footer else {
            return Ok(None);
        };
        let bytes = self.contiguous(span);
        Decoder::decode_exact::<Footer>(&bytes, self.limits).map(|f| Some(f.0))
    }

    /// The body sections, decoded (copying segments together if needed). For inspection and
    /// management; routing never needs it.
    pub fn body_sections(&self) -> Result<Vec<Section<'static>>> {
        let Some(span) = self.index.body else {
            return Ok(Vec::new());
        };
        let bytes = self.contiguous(span);
        let mut d = Decoder::with_limits(&bytes, self.limits);
        let mut out = Vec::new();
        while !d.is_empty() {
            out.push(match self.index.body_kind {
                BodyKind::Data => Section::Data(Data::decode(&mut d)?),
                BodyKind::AmqpSequence => Section::AmqpSequence(AmqpSequence::decode(&mut d)?),
                BodyKind::AmqpValue => Section::AmqpValue(AmqpValue::decode(&mut d)?),
                BodyKind::None => break,
            });
        }
        Ok(out)
    }

    /// The bare message (properties through body), as slices: what §3.2 says is immutable.
    pub fn bare(&self) -> Vec<Bytes> {
        self.slices(Span {
            start: self.index.bare_start(self.len),
            end: self.index.bare_end(self.len),
        })
    }

    /// A copy of this message with new header and annotations, sharing the bare message and
    /// footer slices: only the new prefix is encoded; the body is never copied.
    pub fn reannotate(
        &self,
        header: Option<&Header>,
        delivery_annotations: Option<&DeliveryAnnotations>,
        message_annotations: Option<&MessageAnnotations>,
    ) -> Result<Message> {
        let prefix_len = header.map_or(0, Encode::encoded_len)
            + delivery_annotations.map_or(0, Encode::encoded_len)
            + message_annotations.map_or(0, Encode::encoded_len);
        let mut prefix = BytesMut::with_capacity(prefix_len);
        if let Some(h) = header {
            h.encode(&mut prefix);
        }
        if let Some(a) = delivery_annotations {
            a.encode(&mut prefix);
        }
        if let Some(a) = message_annotations {
            a.encode(&mut prefix);
        }
        let mut segments = vec![prefix.freeze()];
        segments.extend(self.slices(Span {
            start: self.index.bare_start(self.len),
            end: self.len,
        }));
        Self::from_segments_with(segments, self.limits)
    }

    /// Decodes a composite routing section (header, properties), which
    /// [`Message::from_segments`] guaranteed lies in `head`, and hands it to `wrap`.
    ///
    /// Built in place through `wrap` (see [`DescribedBody::decode_body_with`]). There is no
    /// trailing-bytes check to get in the way of that, and none is needed: [`scan`] ended the
    /// span where the list's own size field ends it, which is where decoding the list stops.
    #[inline(always)]
    fn decode_composite<'s, T: DescribedBody<'s>, U>(
        &'s self,
        span: Span,
        wrap: impl FnOnce(T) -> U,
    ) -> Result<U> {
        let part = self
            .head
            .get(span.start..span.end)
            .ok_or(DecodeError::Truncated)?;
        let mut d = Decoder::with_limits(&self.head, self.limits);
        d.seek_to(part);
        d.expect_descriptor(T::CODE, T::NAME, T::NAME)?;
        T::decode_body_with(&mut d, wrap)
    }

    /// Decodes a routing section, which [`Message::from_segments`] guaranteed lies in `head`.
    fn decode_head<'s, T: Decode<'s>>(&'s self, span: Span) -> Result<T> {
        let part = self
            .head
            .get(span.start..span.end)
            .ok_or(DecodeError::Truncated)?;
        let mut d = Decoder::with_limits(&self.head, self.limits);
        d.seek_to(part);
        let v = T::decode(&mut d)?;
        d.finish()?;
        Ok(v)
    }
}

/// Joins the first `upto` bytes of `segments` into one segment, keeping the rest as slices.
fn join_prefix(segments: Vec<Bytes>, upto: usize) -> Vec<Bytes> {
    let mut head = BytesMut::with_capacity(upto);
    let mut rest = Vec::with_capacity(segments.len());
    for seg in segments {
        let need = upto - head.len();
        if need == 0 {
            rest.push(seg);
        } else if seg.len() <= need {
            head.extend_from_slice(&seg);
        } else {
            head.extend_from_slice(seg.get(..need).unwrap_or_default());
            rest.push(seg.slice(need..));
        }
    }
    let mut out = Vec::with_capacity(rest.len() + 1);
    out.push(head.freeze());
    out.extend(rest);
    out
}

/// A [`ByteCursor`] that also knows where it is: what [`scan`] walks.
trait ScanCursor: ByteCursor {
    /// Bytes read so far.
    fn pos(&self) -> usize;
    /// Whether everything has been read.
    fn at_end(&self) -> bool;
}

/// Reads one contiguous buffer; used only to find section boundaries.
struct SliceCursor<'s> {
    data: &'s [u8],
    pos: usize,
}

impl ByteCursor for SliceCursor<'_> {
    #[inline]
    fn u8(&mut self) -> Result<u8> {
        let b = *self.data.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn skip(&mut self, n: usize) -> Result<()> {
        if n > self.data.len() - self.pos {
            return Err(DecodeError::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    #[inline]
    fn be_u32(&mut self) -> Result<u32> {
        let word = self
            .data
            .get(self.pos..self.pos + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .ok_or(DecodeError::Truncated)?;
        self.pos += 4;
        Ok(u32::from_be_bytes(word))
    }
}

impl ScanCursor for SliceCursor<'_> {
    #[inline]
    fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// Reads across a chain of segments; used only to find section boundaries.
struct ChainCursor<'s> {
    segments: &'s [Bytes],
    seg: usize,
    off: usize,
    pos: usize,
    total: usize,
}

impl<'s> ChainCursor<'s> {
    fn new(segments: &'s [Bytes]) -> Self {
        Self {
            segments,
            seg: 0,
            off: 0,
            pos: 0,
            total: segments.iter().map(Bytes::len).sum(),
        }
    }
}

impl ScanCursor for ChainCursor<'_> {
    fn pos(&self) -> usize {
        self.pos
    }

    fn at_end(&self) -> bool {
        self.pos >= self.total
    }
}

impl ByteCursor for ChainCursor<'_> {
    fn u8(&mut self) -> Result<u8> {
        loop {
            let seg = self.segments.get(self.seg).ok_or(DecodeError::Truncated)?;
            if let Some(&b) = seg.get(self.off) {
                self.off += 1;
                self.pos += 1;
                return Ok(b);
            }
            self.seg += 1;
            self.off = 0;
        }
    }

    fn skip(&mut self, mut n: usize) -> Result<()> {
        if n > self.total - self.pos {
            return Err(DecodeError::Truncated);
        }
        self.pos += n;
        while n > 0 {
            let seg_len = self.segments.get(self.seg).map_or(0, Bytes::len);
            let here = (seg_len - self.off).min(n);
            n -= here;
            self.off += here;
            if self.off == seg_len && n > 0 {
                self.seg += 1;
                self.off = 0;
            }
        }
        Ok(())
    }
}

/// The position of each section kind in the §3.2 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Header,
    DeliveryAnnotations,
    MessageAnnotations,
    Properties,
    ApplicationProperties,
    Body,
    Footer,
}

/// Walks the sections of a message, checking the §3.2 order, without decoding them.
fn scan<C: ScanCursor>(cur: &mut C, limits: DecodeLimits, index: &mut SectionIndex) -> Result<()> {
    let mut last: Option<Stage> = None;
    while !cur.at_end() {
        let start = cur.pos();
        if cur.u8()? != c::DESCRIBED {
            return Err(DecodeError::InvalidValue(
                "message section (not a described value)",
            ));
        }
        let code = section_code(cur)?;
        skip_value_in(cur, 1, limits.max_depth)?;
        let span = Span {
            start,
            end: cur.pos(),
        };
        let (stage, kind) = match code {
            0x70 => (Stage::Header, None),
            0x71 => (Stage::DeliveryAnnotations, None),
            0x72 => (Stage::MessageAnnotations, None),
            0x73 => (Stage::Properties, None),
            0x74 => (Stage::ApplicationProperties, None),
            0x75 => (Stage::Body, Some(BodyKind::Data)),
            0x76 => (Stage::Body, Some(BodyKind::AmqpSequence)),
            0x77 => (Stage::Body, Some(BodyKind::AmqpValue)),
            0x78 => (Stage::Footer, None),
            _ => return Err(DecodeError::InvalidValue("message section descriptor")),
        };
        let repeat_body = stage == Stage::Body
            && last == Some(Stage::Body)
            && kind == Some(index.body_kind)
            && index.body_kind != BodyKind::AmqpValue;
        if last.is_some_and(|l| l >= stage) && !repeat_body {
            return Err(DecodeError::InvalidValue("message section order"));
        }
        last = Some(stage);
        let slot = match stage {
            Stage::Header => &mut index.header,
            Stage::DeliveryAnnotations => &mut index.delivery_annotations,
            Stage::MessageAnnotations => &mut index.message_annotations,
            Stage::Properties => &mut index.properties,
            Stage::ApplicationProperties => &mut index.application_properties,
            Stage::Footer => &mut index.footer,
            Stage::Body => {
                index.body_kind = kind.unwrap_or_default();
                index.body_sections += 1;
                let body = index.body.get_or_insert(span);
                body.end = span.end;
                continue;
            }
        };
        *slot = Some(span);
    }
    Ok(())
}

/// Reads a section descriptor (numeric or symbolic) and returns its numeric code.
fn section_code<C: ByteCursor>(cur: &mut C) -> Result<u64> {
    let name_len = match cur.u8()? {
        c::SMALLULONG => return Ok(u64::from(cur.u8()?)),
        c::ULONG => return cur.be_u64(),
        c::SYM8 => usize::from(cur.u8()?),
        c::SYM32 => cur.be_u32()? as usize,
        _ => return Err(DecodeError::InvalidValue("message section descriptor")),
    };
    const NAMES: [(&str, u64); 9] = [
        (Header::DESCRIPTOR_NAME, 0x70),
        (DeliveryAnnotations::DESCRIPTOR_NAME, 0x71),
        (MessageAnnotations::DESCRIPTOR_NAME, 0x72),
        (Properties::DESCRIPTOR_NAME, 0x73),
        (ApplicationProperties::DESCRIPTOR_NAME, 0x74),
        (Data::DESCRIPTOR_NAME, 0x75),
        (AmqpSequence::DESCRIPTOR_NAME, 0x76),
        (AmqpValue::DESCRIPTOR_NAME, 0x77),
        (Footer::DESCRIPTOR_NAME, 0x78),
    ];
    let mut name = [0u8; 40];
    let dest = name
        .get_mut(..name_len)
        .ok_or(DecodeError::InvalidValue("message section descriptor"))?;
    for b in dest.iter_mut() {
        *b = cur.u8()?;
    }
    NAMES
        .iter()
        .find(|(n, _)| n.as_bytes() == &*dest)
        .map(|(_, code)| *code)
        .ok_or(DecodeError::InvalidValue("message section descriptor"))
}
