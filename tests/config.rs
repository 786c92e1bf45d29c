//! Configuration, command line and password handling: the embedded default, error messages
//! that name the key, overrides, the anonymous-access rule, SASL PLAIN, and the binary's
//! helper subcommands.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use ferry::auth::{self, HashCost, Users};
use ferry::cli::Cli;
use ferry::config::{
    AnonymousPolicy, Config, ConfigError, Listener, QueueLimits, SaslMechanism, User,
    parse_duration, parse_size,
};
use ferry::proto::EndpointRole;
use ferry_codec::Value;

/// Tiny argon2 costs: the tests check the plumbing, not the cost.
const CHEAP: HashCost = HashCost {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn parse(text: &str) -> Result<Config, ConfigError> {
    let config = Config::parse(text, "test.toml")?;
    config.validate("test.toml")?;
    Ok(config)
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e,
    }
}

/// Writes `text` to a file of its own under the target directory.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn embedded_default_is_the_programmatic_default() {
    let parsed: Config = toml::from_str(Config::default_toml()).unwrap();
    assert_eq!(parsed, Config::default());
    assert_eq!(Config::load(None).unwrap(), Config::default());
}

#[test]
fn defaults_are_the_documented_values() {
    let c = Config::default();
    assert_eq!(c.broker.container_id, "ferry");
    assert_eq!(c.broker.data_dir, PathBuf::from("data"));
    assert!(c.queues.auto_create_durable);
    assert_eq!(c.store.sync, ferry::config::SyncMode::Always);
    assert_eq!(c.store.segment_size, 64 << 20);
    assert_eq!(c.broker.memory_budget, 1 << 30);
    assert_eq!(c.broker.max_queues, 10_000);
    assert!(c.broker.auto_create);
    assert_eq!(c.broker.auto_delete_after, Duration::from_secs(300));
    assert_eq!(c.broker.max_message_size, 16 << 20);
    assert_eq!(c.broker.link_credit, 256);
    assert_eq!(c.broker.link_credit_bytes, 1 << 20);
    assert_eq!(c.broker.over_credit_allowance, 10_000);
    assert_eq!(c.broker.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.queues.defaults, QueueLimits::default());
    assert!(c.queues.declare.is_empty());
    assert_eq!(c.connection.max_frame_size, 65_536);
    assert_eq!(c.connection.channel_max, 255);
    assert_eq!(c.connection.handle_max, 1023);
    assert_eq!(c.connection.session_window, 2048);
    assert_eq!(c.connection.dead_peer_timeout, Duration::from_secs(60));
    assert_eq!(c.connection.min_peer_idle_timeout, Duration::from_secs(1));
    assert_eq!(c.connection.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.connection.max_links_per_connection, 4096);
    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(l.address, addr("127.0.0.1:5672"));
    assert_eq!(l.max_connections, 10_000);
    assert_eq!(
        l.sasl_mechanisms,
        [SaslMechanism::Anonymous, SaslMechanism::Plain]
    );
    assert_eq!(l.allow_anonymous, AnonymousPolicy::Loopback);
    assert!(c.users.is_empty());
}

#[test]
fn an_empty_file_is_the_default() {
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn full_example_parses() {
    let phc = auth::hash_password_with(b"secret", CHEAP).unwrap();
    let text = format!(
        r#"
[broker]
memory_budget = "64MiB"
link_credit_bytes = 4096
auto_delete_after = "5m"
shutdown_grace = "250ms"

[queues.defaults]
max_length = 10
max_bytes = "1MiB"

[[queues.declare]]
name = "orders"
max_length = 100000
max_bytes = "512MiB"
max_message_size = "1MiB"

[[queues.declare]]
name = "audit"

[[listeners]]
address = "0.0.0.0:5672"
max_frame_size = 4096
max_message_size = "2MiB"
sasl_mechanisms = ["PLAIN", "EXTERNAL"]
allow_anonymous = "never"

[[listeners]]
address = "[::1]:5673"

[[users]]
name = "alice"
password_hash = "{phc}"
"#
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.broker.memory_budget, 64 << 20);
    assert_eq!(c.broker.link_credit_bytes, 4096);
    assert_eq!(c.broker.auto_delete_after, Duration::from_secs(300));
    assert_eq!(c.broker.shutdown_grace, Duration::from_millis(250));
    // Keys left out keep their defaults.
    assert_eq!(c.broker.max_queues, 10_000);
    let orders = &c.queues.declare[0];
    assert_eq!(orders.max_message_size, Some(1 << 20));
    assert_eq!(
        orders.limits(&c.queues.defaults),
        QueueLimits {
            max_length: 100_000,
            max_bytes: 512 << 20,
            ..Default::default()
        }
    );
    assert_eq!(
        c.queues.declare[1].limits(&c.queues.defaults),
        QueueLimits {
            max_length: 10,
            max_bytes: 1 << 20,
            ..Default::default()
        }
    );
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].max_frame_size, Some(4096));
    assert_eq!(c.listeners[1].max_frame_size, None);
    assert_eq!(c.users[0].name, "alice");
}

#[test]
fn unknown_key_is_named_with_its_table_and_line() {
    let e = parse_err("[[listeners]]\naddress = \"127.0.0.1:5672\"\nmax_conections = 3\n");
    assert_eq!(e.key(), Some("listeners[0].max_conections"));
    assert_eq!(e.line(), Some(3));
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "config error in test.toml: unknown field `max_conections` in [listeners] at line 3"
        ),
        "{msg}"
    );
    assert!(msg.contains("`max_connections`"), "{msg}");

    let e = parse_err("[broker]\nmemory_budgett = \"1GiB\"\n");
    assert_eq!(e.key(), Some("broker.memory_budgett"));
    assert!(e.to_string().contains("in [broker] at line 2"), "{e}");

    let e = parse_err("[queues.defaults]\nmax_len = 3\n");
    assert!(e.to_string().contains("in [queues.defaults]"), "{e}");

    let e = parse_err("colour = \"blue\"\n");
    assert!(e.to_string().contains("at the top level"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e = parse_err("[broker]\nmax_queues = 1\nmemory_budget = \"1XB\"\n");
    assert_eq!(e.key(), Some("broker.memory_budget"));
    assert_eq!(e.line(), Some(3));
    assert!(
        e.to_string().contains("`broker.memory_budget` at line 3"),
        "{e}"
    );
    assert!(e.to_string().contains("invalid size \"1XB\""), "{e}");

    let e = parse_err("[queues.defaults]\nmax_bytes = -1\n");
    assert_eq!(e.key(), Some("queues.defaults.max_bytes"));

    let e = parse_err("[connection]\ndead_peer_timeout = \"60 parsecs\"\n");
    assert_eq!(e.key(), Some("connection.dead_peer_timeout"));
    assert!(e.to_string().contains("invalid duration"), "{e}");

    let e = parse_err("[broker]\nshutdown_grace = 5\n");
    assert_eq!(e.key(), Some("broker.shutdown_grace"));

    let e = parse_err("[[listeners]]\naddress = \"localhost:5672\"\n");
    assert_eq!(e.key(), Some("listeners[0].address"));

    let e = parse_err("[[listeners]]\nsasl_mechanisms = [\"PLAIN\", \"GSSAPI\"]\n");
    assert_eq!(e.key(), Some("listeners[0].sasl_mechanisms[1]"));

    let e = parse_err("[[listeners]]\nallow_anonymous = \"sometimes\"\n");
    assert_eq!(e.key(), Some("listeners[0].allow_anonymous"));

    let e = parse_err("[[queues.declare]]\nmax_length = 3\n");
    assert_eq!(e.key(), Some("queues.declare[0]"));
    assert!(e.to_string().contains("missing field `name`"), "{e}");

    let e = parse_err("[broker\n");
    assert_eq!(e.key(), None);
    assert_eq!(e.line(), Some(1));
}

#[test]
fn semantic_checks_name_the_key() {
    let e = parse_err("[connection]\nmax_frame_size = 511\n");
    assert_eq!(e.key(), Some("connection.max_frame_size"));
    assert!(parse("[connection]\nmax_frame_size = 512\n").is_ok());

    let e = parse_err("[[listeners]]\nmax_frame_size = 100\n");
    assert_eq!(e.key(), Some("listeners[0].max_frame_size"));

    let e = parse_err(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[listeners]]\naddress = \"127.0.0.1:1\"\n",
    );
    assert_eq!(e.key(), Some("listeners[1].address"));

    let e = parse_err("listeners = []\n");
    assert_eq!(e.key(), Some("listeners"));

    let e = parse_err("[[listeners]]\nsasl_mechanisms = [\"PLAIN\", \"PLAIN\"]\n");
    assert_eq!(e.key(), Some("listeners[0].sasl_mechanisms"));

    // Nobody could ever connect: anonymous is off and nothing else is offered.
    let e = parse_err(
        "[[listeners]]\nsasl_mechanisms = [\"ANONYMOUS\"]\nallow_anonymous = \"never\"\n",
    );
    assert_eq!(e.key(), Some("listeners[0].sasl_mechanisms"));

    let e = parse_err("[[queues.declare]]\nname = \"q\"\n[[queues.declare]]\nname = \"q\"\n");
    assert_eq!(e.key(), Some("queues.declare[1].name"));

    let e = parse_err("[broker]\nlink_credit = 0\n");
    assert_eq!(e.key(), Some("broker.link_credit"));

    let e = parse_err("[[users]]\nname = \"bob\"\npassword_hash = \"hunter2\"\n");
    assert_eq!(e.key(), Some("users[0].password_hash"));

    let e = parse_err(
        "[[users]]\nname = \"bob\"\npassword_hash = \"$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA\"\n",
    );
    assert_eq!(e.key(), Some("users[0].password_hash"));

    let phc = auth::hash_password_with(b"pw", CHEAP).unwrap();
    let e = parse_err(&format!(
        "[[users]]\nname = \"bob\"\npassword_hash = \"{phc}\"\n\
         [[users]]\nname = \"bob\"\npassword_hash = \"{phc}\"\n"
    ));
    assert_eq!(e.key(), Some("users[1].name"));
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("0"), Ok(0));
    assert_eq!(parse_size("1234"), Ok(1234));
    assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
    assert_eq!(parse_size("64MiB"), Ok(64 << 20));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("2 TiB"), Ok(2 << 40));
    assert_eq!(parse_size("1MB"), Ok(1_000_000));
    assert_eq!(parse_size("10B"), Ok(10));
    for bad in ["", "MiB", "1.5GiB", "-1", "1 mib", "1XB", "99999999999TiB"] {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }

    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    for bad in ["", "5", "s", "1.5s", "5 minutes", "-1s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn listen_flag_replaces_addresses_and_keeps_the_first_listeners_settings() {
    let path = temp_file(
        "listen-override.toml",
        "[[listeners]]\naddress = \"127.0.0.1:5672\"\nmax_connections = 7\n\
         allow_anonymous = \"always\"\n\
         [[listeners]]\naddress = \"127.0.0.1:5673\"\nmax_connections = 9\n",
    );
    let cli = Cli::try_parse_from([
        "ferry",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "0.0.0.0:6000",
        "--listen",
        "[::1]:6001",
        "--data-dir",
        "/tmp/ferry-data",
    ])
    .unwrap();
    let c = cli.load_config().unwrap();
    let addresses: Vec<_> = c.listeners.iter().map(|l| l.address).collect();
    assert_eq!(addresses, [addr("0.0.0.0:6000"), addr("[::1]:6001")]);
    for l in &c.listeners {
        assert_eq!(l.max_connections, 7);
        assert_eq!(l.allow_anonymous, AnonymousPolicy::Always);
    }
    assert_eq!(c.broker.data_dir, PathBuf::from("/tmp/ferry-data"));

    // Without --listen the file's listeners stay.
    let cli = Cli::try_parse_from(["ferry", "-c", path.to_str().unwrap()]).unwrap();
    assert_eq!(cli.load_config().unwrap().listeners.len(), 2);

    // Overrides are validated too.
    let cli = Cli::try_parse_from([
        "ferry",
        "--listen",
        "127.0.0.1:1",
        "--listen",
        "127.0.0.1:1",
    ])
    .unwrap();
    let e = cli.load_config().unwrap_err();
    assert_eq!(e.key(), Some("listeners[1].address"));

    // Flags are global: they may follow the subcommand.
    let cli = Cli::try_parse_from(["ferry", "check-config", "--listen", "127.0.0.1:7"]).unwrap();
    assert_eq!(cli.listen, [addr("127.0.0.1:7")]);
    assert!(Cli::try_parse_from(["ferry", "--listen", "localhost"]).is_err());
}

#[test]
fn anonymous_loopback_rule() {
    let at = |address: &str, allow_anonymous| Listener {
        address: addr(address),
        allow_anonymous,
        ..Listener::default()
    };
    use AnonymousPolicy::*;
    assert!(at("127.0.0.1:5672", Loopback).anonymous_allowed());
    assert!(at("127.1.2.3:5672", Loopback).anonymous_allowed());
    assert!(at("[::1]:5672", Loopback).anonymous_allowed());
    assert!(at("[::ffff:127.0.0.1]:5672", Loopback).anonymous_allowed());
    assert!(!at("0.0.0.0:5672", Loopback).anonymous_allowed());
    assert!(!at("[::]:5672", Loopback).anonymous_allowed());
    assert!(!at("192.0.2.1:5672", Loopback).anonymous_allowed());
    assert!(at("0.0.0.0:5672", Always).anonymous_allowed());
    assert!(!at("127.0.0.1:5672", Never).anonymous_allowed());

    let config = Config::default();
    let open = at("0.0.0.0:5672", Loopback);
    let engine = config.connection_config(&open);
    let mechanisms: Vec<&str> = engine.sasl.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(mechanisms, ["PLAIN"]);
    assert!(!engine.sasl.allow_plain_header);

    let local = at("127.0.0.1:5672", Loopback);
    let engine = config.connection_config(&local);
    let mechanisms: Vec<&str> = engine.sasl.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(mechanisms, ["ANONYMOUS", "PLAIN"]);
    assert!(engine.sasl.allow_plain_header);
}

#[test]
fn connection_config_maps_limits_and_overrides() {
    let mut config = Config::default();
    config.broker.container_id = "node-1".into();
    config.connection.channel_max = 7;
    config.connection.handle_max = 8;
    config.connection.session_window = 9;
    config.connection.max_links_per_connection = 10;
    config.connection.dead_peer_timeout = Duration::from_secs(30);
    config.broker.over_credit_allowance = 11;
    let mut listener = config.listeners[0].clone();

    let engine = config.connection_config(&listener);
    assert_eq!(engine.role, EndpointRole::Server);
    assert_eq!(engine.container_id, "node-1");
    assert_eq!(engine.max_frame_size, 65_536);
    assert_eq!(engine.max_message_size, 16 << 20);
    assert_eq!(engine.channel_max, 7);
    assert_eq!(engine.handle_max, 8);
    assert_eq!(engine.session_window, 9);
    assert_eq!(engine.max_links, 10);
    assert_eq!(engine.dead_peer_timeout, Duration::from_secs(30));
    assert_eq!(engine.min_peer_idle_timeout, Duration::from_secs(1));
    assert_eq!(engine.handshake_timeout, Duration::from_secs(10));
    assert_eq!(engine.over_credit_allowance, 11);
    assert!(engine.sasl.client.is_none());
    assert_eq!(engine.offered_capabilities.len(), 1);
    assert_eq!(engine.offered_capabilities[0].as_str(), "ANONYMOUS-RELAY");
    let properties = engine.properties.unwrap();
    assert_eq!(properties.get("product"), Some(&Value::string("ferry")));
    assert_eq!(
        properties.get("version"),
        Some(&Value::string(env!("CARGO_PKG_VERSION")))
    );

    listener.max_frame_size = Some(4096);
    listener.max_message_size = Some(1024);
    let engine = config.connection_config(&listener);
    assert_eq!(engine.max_frame_size, 4096);
    assert_eq!(engine.max_message_size, 1024);
}

#[test]
fn plain_parsing_and_the_authzid_rule() {
    let c = auth::parse_plain(b"\0alice\0secret").unwrap();
    assert_eq!(
        (c.authzid, c.authcid, c.password),
        ("", "alice", &b"secret"[..])
    );
    assert_eq!(c.identity(), Some("alice"));

    let c = auth::parse_plain(b"alice\0alice\0secret").unwrap();
    assert_eq!(c.identity(), Some("alice"));

    let c = auth::parse_plain(b"admin\0alice\0secret").unwrap();
    assert_eq!(c.authzid, "admin");
    assert_eq!(c.identity(), None);

    for bad in [
        &b""[..],
        b"alice",
        b"\0alice",
        b"\0\0secret",
        b"\0alice\0",
        b"\0alice\0sec\0ret",
        b"\0\xff\xfe\0secret",
    ] {
        assert!(auth::parse_plain(bad).is_none(), "{bad:?}");
    }

    assert_eq!(auth::plain_identity("", "bob"), Some("bob"));
    assert_eq!(auth::plain_identity("bob", "bob"), Some("bob"));
    assert_eq!(auth::plain_identity("root", "bob"), None);

    // The password is kept out of Debug output.
    let c = auth::parse_plain(b"\0alice\0hunter2").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn hash_and_verify_round_trip() {
    let phc = auth::hash_password_with(b"correct horse", CHEAP).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
    auth::check_phc(&phc).unwrap();
    assert!(auth::verify_password(&phc, b"correct horse"));
    assert!(!auth::verify_password(&phc, b"correct horse "));
    assert!(!auth::verify_password(&phc, b""));
    assert!(!auth::verify_password("not a hash", b"correct horse"));

    // Salts are random: the same password never gives the same string.
    let again = auth::hash_password_with(b"correct horse", CHEAP).unwrap();
    assert_ne!(phc, again);
    assert!(auth::verify_password(&again, b"correct horse"));

    // The default costs are the ones documented.
    let phc = auth::hash_password("pw").unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(auth::verify_password(&phc, b"pw"));
}

#[test]
fn users_verify_and_authenticate_plain() {
    let users = Users::new(&[User {
        name: "alice".into(),
        password_hash: auth::hash_password_with(b"secret", CHEAP).unwrap(),
    }]);
    assert!(users.verify("alice", b"secret"));
    assert!(!users.verify("alice", b"Secret"));
    assert!(!users.verify("bob", b"secret"));
    assert!(!format!("{users:?}").contains("argon2"));

    assert_eq!(users.authenticate_plain(b"\0alice\0secret"), Some("alice"));
    assert_eq!(
        users.authenticate_plain(b"alice\0alice\0secret"),
        Some("alice")
    );
    assert_eq!(users.authenticate_plain(b"bob\0alice\0secret"), None);
    assert_eq!(users.authenticate_plain(b"\0alice\0wrong"), None);
    assert_eq!(users.authenticate_plain(b"\0bob\0secret"), None);
    assert_eq!(users.authenticate_plain(b"garbage"), None);
    assert!(Users::default().is_empty());
}

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

#[test]
fn binary_prints_the_default_config_verbatim() {
    let out = ferry().arg("print-default-config").output().unwrap();
    assert!(out.status.success());
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/ferry.toml")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), file);
}

#[test]
fn binary_checks_config() {
    let out = ferry().arg("check-config").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "ok\n");

    let path = temp_file(
        "bad-key.toml",
        "[[listeners]]\naddress = \"127.0.0.1:5672\"\nmax_conections = 3\n",
    );
    let out = ferry()
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let expected = format!(
        "config error in {}: unknown field `max_conections` in [listeners] at line 3",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    // The run path loads the config too, and refuses a bad one.
    let out = ferry()
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let out = ferry()
        .args(["--config", "/nonexistent/ferry.toml", "check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("/nonexistent/ferry.toml")
    );
}

#[test]
fn binary_passwd_hashes_a_password_from_stdin() {
    let mut child = ferry()
        .args(["passwd", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    let phc = phc.trim_end();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(auth::verify_password(phc, b"s3cret pass"));

    // The printed string is accepted as a password_hash.
    let config = parse(&format!(
        "[[users]]\nname = \"alice\"\npassword_hash = \"{phc}\"\n"
    ))
    .unwrap();
    assert!(Users::new(&config.users).verify("alice", b"s3cret pass"));

    // An empty password is refused.
    let mut child = ferry()
        .args(["passwd"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn exchanges_bindings_and_address_rules_parse_and_refuse_what_does_not_fit() {
    let c = parse(
        r#"
[[queues.declare]]
name = "orders"
message_ttl = "1h"
max_delivery_count = 5
dead_letter_queue = "orders.dead"

[[exchanges]]
name = "events"
type = "topic"

[[bindings]]
exchange = "events"
queue = "orders"
key = "order.*"

[[address_rules]]
pattern = "alerts.#"
kind = "fanout"
unroutable = "accept"
"#,
    )
    .unwrap();
    assert_eq!(c.exchanges[0].kind, "topic");
    assert_eq!(c.bindings[0].key, "order.*");
    let rules = c.rules().unwrap();
    assert!(rules.lookup("alerts.disk.full").is_some());
    // The built-in OpenStack rules follow the configured ones.
    assert!(rules.lookup("broadcast.nova.compute.all").is_some());
    let l = c.queues.declare[0].limits(&c.queues.defaults);
    assert_eq!(l.message_ttl, Duration::from_secs(3600));
    assert_eq!(l.max_delivery_count, 5);
    assert_eq!(l.dead_letter_queue, "orders.dead");

    let e = parse_err("[[exchanges]]\nname = \"x\"\ntype = \"round-robin\"\n");
    assert_eq!(e.key(), Some("exchanges[0].type"), "{e}");
    let e = parse_err(
        "[[exchanges]]\nname = \"x\"\ntype = \"fanout\"\n\n[[bindings]]\nexchange = \"y\"\nqueue = \"q\"\n",
    );
    assert_eq!(e.key(), Some("bindings[0].exchange"), "{e}");
    let e = parse_err("[[address_rules]]\npattern = \"a*b\"\nkind = \"queue\"\n");
    assert_eq!(e.key(), Some("address_rules"), "{e}");
}
