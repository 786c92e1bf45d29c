//! Source filters (§3.5.8 filter-set) a receiver may ask for, as the Apache filter registry
//! defines them: the JMS selector, no-local, and the legacy AMQP 0-10 binding filters.
//!
//! Filters are keyed by any name the client likes; what identifies one is its descriptor,
//! symbolic or numeric. Ferry applies a filter only where it means something (a binding
//! filter only on an exchange of a type that can use it, no-local only on a subscription),
//! and the attach reply carries exactly the filters applied (§3.5.3), so a client can tell
//! what it got. A filter Ferry applies but whose value is malformed refuses the link.

use std::sync::Arc;

use ferry_codec::definitions::Fields;
use ferry_codec::types::{Symbol, Value};

use super::address::ExchangeType;
use super::selector::{self, MessageFields, Selector, SelectorValue};

/// `apache.org:legacy-amqp-direct-binding:string`: bind with this exact key.
pub const DIRECT_BINDING: (&str, u64) = (
    "apache.org:legacy-amqp-direct-binding:string",
    0x0000_468C_0000_0000,
);
/// `apache.org:legacy-amqp-topic-binding:string`: bind with this topic pattern.
pub const TOPIC_BINDING: (&str, u64) = (
    "apache.org:legacy-amqp-topic-binding:string",
    0x0000_468C_0000_0001,
);
/// `apache.org:legacy-amqp-headers-binding:map`: bind a headers exchange with this match.
pub const HEADERS_BINDING: (&str, u64) = (
    "apache.org:legacy-amqp-headers-binding:map",
    0x0000_468C_0000_0002,
);
/// `apache.org:no-local-filter:list`: not the messages this client's container published.
pub const NO_LOCAL: (&str, u64) = ("apache.org:no-local-filter:list", 0x0000_468C_0000_0003);

/// Most pairs in a headers binding.
pub const MAX_HEADER_PAIRS: usize = 64;

/// The kind of node the receiver attaches to, which decides which filters apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// A queue: only the selector applies (at dispatch).
    Queue,
    /// A subscription to an exchange of this type: the selector (at routing), no-local, and
    /// the binding filter the type can use.
    Exchange(ExchangeType),
}

/// How a subscription is bound, when a filter says so rather than the address.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingFilter {
    /// A routing key (direct), or a pattern (topic).
    Key(String),
    /// A headers match.
    Headers(HeadersMatch),
}

/// A headers binding: the message's application-properties must hold `all` (or `any`) of
/// these pairs; a pair whose value is null asks only that the property be present.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadersMatch {
    any: bool,
    pairs: Vec<(String, Option<SelectorValue<'static>>)>,
}

impl HeadersMatch {
    /// A match from a binding's arguments: `x-match` is `all` (the default) or `any`; other
    /// keys starting with `x-` are ignored, as RabbitMQ does.
    pub fn from_map<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a Value)>,
    ) -> Result<Self, String> {
        let mut any = false;
        let mut out = Vec::new();
        for (key, value) in pairs {
            if key == "x-match" {
                any = match value {
                    Value::String(s) if s.as_str() == "any" => true,
                    Value::Symbol(s) if s.as_str() == "any" => true,
                    Value::String(s) if s.as_str() == "all" => false,
                    Value::Symbol(s) if s.as_str() == "all" => false,
                    _ => return Err("x-match must be \"all\" or \"any\"".into()),
                };
                continue;
            }
            if key.starts_with("x-") {
                continue;
            }
            if out.len() >= MAX_HEADER_PAIRS {
                return Err(format!(
                    "a headers binding has at most {MAX_HEADER_PAIRS} pairs"
                ));
            }
            let v = match value {
                Value::Null => None,
                other => Some(
                    SelectorValue::from_amqp(other)
                        .ok_or_else(|| {
                            format!("header {key:?}: a value of this type cannot be matched")
                        })?
                        .into_owned(),
                ),
            };
            out.push((key.to_string(), v));
        }
        Ok(Self { any, pairs: out })
    }

    /// Whether `message` matches. A binding with no pairs matches everything.
    pub fn matches(&self, message: &ferry_codec::messaging::Message) -> bool {
        if self.pairs.is_empty() {
            return true;
        }
        let fields = MessageFields::new(message);
        let hit = |(key, want): &(String, Option<SelectorValue<'static>>)| match (
            fields.application_property(key),
            want,
        ) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(have), Some(want)) => same(&have, want),
        };
        if self.any {
            self.pairs.iter().any(hit)
        } else {
            self.pairs.iter().all(hit)
        }
    }
}

/// Equality as a headers binding means it: numbers by value whatever their AMQP width.
fn same(a: &SelectorValue<'_>, b: &SelectorValue<'_>) -> bool {
    match (a, b) {
        (SelectorValue::Long(x), SelectorValue::Double(y))
        | (SelectorValue::Double(y), SelectorValue::Long(x)) => (*x as f64) == *y,
        _ => a == b,
    }
}

/// The filters a receiver asked for that Ferry applies.
#[derive(Debug, Clone, Default)]
pub struct Requested {
    /// A JMS selector that does not select everything.
    pub selector: Option<Arc<Selector>>,
    /// Not the messages published by the receiver's own container.
    pub no_local: bool,
    /// The binding, when a legacy binding filter gives it.
    pub binding: Option<BindingFilter>,
    /// The filters applied, as the receiver sent them, for the attach reply.
    pub applied: Fields,
}

/// Which registered filter a described value is, by its symbolic or numeric descriptor.
fn is(descriptor: &Value, which: (&str, u64)) -> bool {
    match descriptor {
        Value::Symbol(s) => s.as_str() == which.0,
        Value::Ulong(code) => *code == which.1,
        _ => false,
    }
}

fn text<'v>(value: &'v Value, what: &str) -> Result<&'v str, String> {
    match value {
        Value::String(s) => Ok(s.as_str()),
        Value::Symbol(s) => Ok(s.as_str()),
        _ => Err(format!("the {what} filter's value must be a string")),
    }
}

/// Reads a source's filter-set for a receiver on `on`. Filters Ferry does not know, or that
/// do not apply there, are left out (and so not echoed); `Err` says why a filter that does
/// apply is malformed.
pub fn parse(filters: Option<&Fields>, on: On) -> Result<Requested, String> {
    let mut out = Requested::default();
    let Some(filters) = filters else {
        return Ok(out);
    };
    for (key, value) in &filters.0 {
        let Value::Described(d) = value else {
            continue;
        };
        let applies = if is(
            &d.descriptor,
            (selector::FILTER_NAME, selector::FILTER_CODE),
        ) {
            if out.selector.is_some() {
                continue;
            }
            let parsed = Selector::parse(text(&d.value, "selector")?)
                .map_err(|e| format!("invalid selector: {e}"))?;
            out.selector = (!parsed.selects_all()).then(|| Arc::new(parsed));
            true
        } else if is(&d.descriptor, NO_LOCAL) {
            matches!(on, On::Exchange(_)) && {
                out.no_local = true;
                true
            }
        } else if is(&d.descriptor, DIRECT_BINDING) {
            match on {
                On::Exchange(ExchangeType::Direct | ExchangeType::Topic)
                    if out.binding.is_none() =>
                {
                    let key = text(&d.value, "direct binding")?;
                    out.binding = Some(BindingFilter::Key(key.to_string()));
                    true
                }
                _ => false,
            }
        } else if is(&d.descriptor, TOPIC_BINDING) {
            match on {
                On::Exchange(ExchangeType::Topic) if out.binding.is_none() => {
                    let pattern = text(&d.value, "topic binding")?;
                    out.binding = Some(BindingFilter::Key(pattern.to_string()));
                    true
                }
                _ => false,
            }
        } else if is(&d.descriptor, HEADERS_BINDING) {
            match on {
                On::Exchange(ExchangeType::Headers) if out.binding.is_none() => {
                    let Value::Map(m) = &d.value else {
                        return Err("the headers binding filter's value must be a map".into());
                    };
                    let mut pairs = Vec::with_capacity(m.0.len());
                    for (k, v) in &m.0 {
                        let k = text(k, "headers binding key")?;
                        pairs.push((k, v));
                    }
                    out.binding = Some(BindingFilter::Headers(HeadersMatch::from_map(pairs)?));
                    true
                }
                _ => false,
            }
        } else {
            false
        };
        if applies {
            out.applied.push(Symbol::clone(key), value.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_codec::messaging::{ApplicationProperties, Data, Message, Section};
    use ferry_codec::types::{Described, Map};

    fn filter(descriptor: Value, value: Value) -> Value {
        Value::Described(Box::new(Described { descriptor, value }))
    }

    fn fields(pairs: Vec<(&'static str, Value)>) -> Fields {
        let mut f = Fields::new();
        for (k, v) in pairs {
            f.push(Symbol::from_static(k), v);
        }
        f
    }

    fn message_with(props: Vec<(&str, Value)>) -> Message {
        let mut ap = Map::new();
        for (k, v) in props {
            ap.0.push((Value::String(k.into()), v));
        }
        Message::from_sections(&[
            Section::ApplicationProperties(ApplicationProperties(ap)),
            Section::Data(Data(bytes::Bytes::from_static(b"x"))),
        ])
        .unwrap()
    }

    #[test]
    fn numeric_and_symbolic_descriptors_are_the_same_filter() {
        for d in [
            Value::Symbol(Symbol::from_static(NO_LOCAL.0)),
            Value::Ulong(NO_LOCAL.1),
        ] {
            let f = fields(vec![("nl", filter(d, Value::List(vec![])))]);
            let r = parse(Some(&f), On::Exchange(ExchangeType::Fanout)).unwrap();
            assert!(r.no_local);
            assert_eq!(r.applied.0.len(), 1);
        }
    }

    #[test]
    fn filters_that_do_not_apply_are_left_out() {
        let f = fields(vec![
            ("nl", filter(Value::Ulong(NO_LOCAL.1), Value::List(vec![]))),
            (
                "topic",
                filter(Value::Ulong(TOPIC_BINDING.1), Value::String("a.*".into())),
            ),
            (
                "xq",
                filter(
                    Value::Ulong(0x0000_468C_0000_0005),
                    Value::String("x".into()),
                ),
            ),
        ]);
        let on_queue = parse(Some(&f), On::Queue).unwrap();
        assert!(!on_queue.no_local && on_queue.binding.is_none());
        assert!(on_queue.applied.0.is_empty());
        let on_direct = parse(Some(&f), On::Exchange(ExchangeType::Direct)).unwrap();
        assert!(on_direct.no_local && on_direct.binding.is_none());
        assert_eq!(on_direct.applied.0.len(), 1);
        let on_topic = parse(Some(&f), On::Exchange(ExchangeType::Topic)).unwrap();
        assert_eq!(on_topic.binding, Some(BindingFilter::Key("a.*".into())));
        assert_eq!(on_topic.applied.0.len(), 2);
    }

    #[test]
    fn malformed_filters_that_apply_are_errors() {
        let bad_selector = fields(vec![(
            "s",
            filter(
                Value::Symbol(Symbol::from_static(selector::FILTER_NAME)),
                Value::String("a = ".into()),
            ),
        )]);
        assert!(parse(Some(&bad_selector), On::Queue).is_err());
        let bad_key = fields(vec![(
            "d",
            filter(Value::Ulong(DIRECT_BINDING.1), Value::Int(3)),
        )]);
        assert!(parse(Some(&bad_key), On::Exchange(ExchangeType::Direct)).is_err());
        // The same filter on a node where it does not apply is ignored, not an error.
        assert!(parse(Some(&bad_key), On::Queue).is_ok());
    }

    #[test]
    fn an_empty_selector_is_applied_but_costs_nothing() {
        let f = fields(vec![(
            "s",
            filter(
                Value::Ulong(selector::FILTER_CODE),
                Value::String("  ".into()),
            ),
        )]);
        let r = parse(Some(&f), On::Queue).unwrap();
        assert!(r.selector.is_none());
        assert_eq!(r.applied.0.len(), 1);
    }

    #[test]
    fn headers_match_all_and_any() {
        let mut m = Map::new();
        m.0.push((Value::String("x-match".into()), Value::String("all".into())));
        m.0.push((Value::String("color".into()), Value::String("red".into())));
        m.0.push((Value::String("size".into()), Value::Long(10)));
        m.0.push((Value::String("x-ignored".into()), Value::Bool(true)));
        let f = fields(vec![(
            "h",
            filter(Value::Ulong(HEADERS_BINDING.1), Value::Map(m.clone())),
        )]);
        let r = parse(Some(&f), On::Exchange(ExchangeType::Headers)).unwrap();
        let Some(BindingFilter::Headers(all)) = r.binding else {
            panic!("no headers binding");
        };
        let red10 = message_with(vec![
            ("color", Value::String("red".into())),
            ("size", Value::Int(10)),
        ]);
        let red11 = message_with(vec![
            ("color", Value::String("red".into())),
            ("size", Value::Ubyte(11)),
        ]);
        let none = message_with(vec![]);
        assert!(all.matches(&red10));
        assert!(!all.matches(&red11));
        assert!(!all.matches(&none));

        m.0[0].1 = Value::Symbol(Symbol::from_static("any"));
        let pairs: Vec<(&str, &Value)> =
            m.0.iter()
                .map(|(k, v)| match k {
                    Value::String(s) => (s.as_str(), v),
                    _ => unreachable!(),
                })
                .collect();
        let any = HeadersMatch::from_map(pairs).unwrap();
        assert!(any.matches(&red10) && any.matches(&red11));
        assert!(!any.matches(&none));
    }

    #[test]
    fn a_null_header_value_asks_for_presence() {
        let v = Value::Null;
        let m = HeadersMatch::from_map(vec![("trace", &v)]).unwrap();
        assert!(m.matches(&message_with(vec![("trace", Value::Bool(false))])));
        assert!(!m.matches(&message_with(vec![("other", Value::Bool(false))])));
    }
}
