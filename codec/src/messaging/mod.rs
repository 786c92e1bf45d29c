//! Messaging (§3): sections, the raw [`Message`], sources and targets.

mod message;
mod sections;
mod terminus;

pub use message::{BodyKind, MESSAGE_FORMAT, Message, SectionIndex, Span};
pub use sections::{
    AmqpSequence, AmqpValue, ApplicationProperties, Data, DeliveryAnnotations, Footer, Header,
    MessageAnnotations, MessageId, Properties, Section,
};
pub use terminus::{
    DeleteOnClose, DeleteOnNoLinks, DeleteOnNoLinksOrMessages, DeleteOnNoMessages, LifetimePolicy,
    Source, Target, TargetKind, TerminusDurability, TerminusExpiryPolicy, distribution_mode,
    node_properties,
};
