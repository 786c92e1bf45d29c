//! Bounds on what one decode may cost, so a hostile peer cannot make the decoder allocate or
//! recurse without limit.

/// Limits applied while decoding one value tree (one performative, one section, one value).
///
/// Sizes of strings and binaries need no limit of their own: they are slices of a frame that
/// the frame layer has already bounded by the negotiated max-frame-size. What a frame can
/// still blow up is the number of decoded elements (an `array32` of zero-width `null`s claims
/// billions of elements in ten bytes) and the nesting depth (recursion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Deepest nesting of lists, maps, arrays and described values.
    pub max_depth: u32,
    /// Most elements (list items, map keys and values, array items) decoded in total.
    pub max_elements: usize,
}

impl DecodeLimits {
    /// The defaults: enough for any performative or message a real client sends.
    pub const DEFAULT: DecodeLimits = DecodeLimits {
        max_depth: 32,
        max_elements: 65_536,
    };
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
