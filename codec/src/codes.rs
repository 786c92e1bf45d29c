//! Format codes of the AMQP type system (§1.6).

#![allow(missing_docs)]

pub const DESCRIBED: u8 = 0x00;
pub const NULL: u8 = 0x40;
pub const BOOLEAN: u8 = 0x56;
pub const TRUE: u8 = 0x41;
pub const FALSE: u8 = 0x42;
pub const UBYTE: u8 = 0x50;
pub const USHORT: u8 = 0x60;
pub const UINT: u8 = 0x70;
pub const SMALLUINT: u8 = 0x52;
pub const UINT0: u8 = 0x43;
pub const ULONG: u8 = 0x80;
pub const SMALLULONG: u8 = 0x53;
pub const ULONG0: u8 = 0x44;
pub const BYTE: u8 = 0x51;
pub const SHORT: u8 = 0x61;
pub const INT: u8 = 0x71;
pub const SMALLINT: u8 = 0x54;
pub const LONG: u8 = 0x81;
pub const SMALLLONG: u8 = 0x55;
pub const FLOAT: u8 = 0x72;
pub const DOUBLE: u8 = 0x82;
pub const DECIMAL32: u8 = 0x74;
pub const DECIMAL64: u8 = 0x84;
pub const DECIMAL128: u8 = 0x94;
pub const CHAR: u8 = 0x73;
pub const TIMESTAMP: u8 = 0x83;
pub const UUID: u8 = 0x98;
pub const VBIN8: u8 = 0xa0;
pub const VBIN32: u8 = 0xb0;
pub const STR8: u8 = 0xa1;
pub const STR32: u8 = 0xb1;
pub const SYM8: u8 = 0xa3;
pub const SYM32: u8 = 0xb3;
pub const LIST0: u8 = 0x45;
pub const LIST8: u8 = 0xc0;
pub const LIST32: u8 = 0xd0;
pub const MAP8: u8 = 0xc1;
pub const MAP32: u8 = 0xd1;
pub const ARRAY8: u8 = 0xe0;
pub const ARRAY32: u8 = 0xf0;
