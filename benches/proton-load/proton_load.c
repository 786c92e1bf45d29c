/*
 * proton-load: one AMQP 1.0 connection driving one link as fast as the peer
 * lets it, for broker load measurements. Written against the Qpid Proton C
 * API (proactor + core engine); messages are encoded by hand once and only
 * their stamp bytes are rewritten per message.
 *
 * Usage:
 *   proton-load --url HOST:PORT --address ADDR --role send|receive [options]
 *
 *   -u, --url HOST:PORT     broker to connect to (default 127.0.0.1:5672)
 *   -U, --user U            SASL PLAIN user (with --password); without it
 *                           the client offers SASL ANONYMOUS
 *   -P, --password P        SASL PLAIN password
 *   -a, --address ADDR      target (send) or source (receive) address
 *   -r, --role ROLE         "send" or "receive"
 *   -n, --count N           messages to send or receive; 0 = until the
 *                           duration cap (default 0)
 *   -d, --duration-secs S   hard cap on the run, fractional allowed
 *                           (default 60); the run is always bounded
 *   -s, --size BYTES        data section size, at least 16 (default 1024)
 *   -p, --presettled        sender: send settled; receiver: ask the peer to
 *                           send settled (snd-settle-mode = settled)
 *   -w, --window W          sender: most deliveries in flight (unsettled
 *                           ones, or presettled ones not yet encoded onto
 *                           the wire), on top of the link credit (1000)
 *   -c, --credit C          receiver: link credit, topped up when half is
 *                           used (default 1000)
 *   -D, --durable           sender: header durable = true
 *   -h, --help              this text
 *
 * Wire format of a sent message: a header section (durable as requested)
 * followed by ONE data section of exactly --size bytes. Body bytes 0..8 are
 * the send time, u64 little-endian nanoseconds since the UNIX epoch
 * (CLOCK_REALTIME); bytes 8..16 are a u64 little-endian sequence number
 * counting from 0; the rest are zero.
 *
 * A receiver settles (accepts) every delivery the peer did not settle,
 * and records now(CLOCK_REALTIME) - stamp into a log-linear histogram (about
 * 1.6% precision) for every message whose first data section (or binary
 * amqp-value) holds at least 16 bytes; other sections are skipped.
 *
 * Output: one JSON line on stdout, e.g.
 *   {"role":"send","count":N,"elapsed_secs":F,"rate":F,"cpu_secs":F,
 *    "p50_us":null,"p99_us":null,"p999_us":null,"max_us":null,
 *    "samples":0,"rejected":0,"timed_out":false}
 * count: sender unsettled = deliveries the peer settled as accepted;
 *        sender presettled = deliveries written to the transport;
 *        receiver = deliveries received.
 * elapsed_secs: sender from the link being attached to the last count;
 *               receiver from the first delivery to the last one (so
 *               idle time before the first and after the last message,
 *               e.g. in --count 0 runs, is not counted).
 * rate = count / elapsed_secs. cpu_secs = getrusage(RUSAGE_SELF) user+sys.
 * samples: receiver messages that carried a readable stamp (the latency
 *          fields are null when there are none).
 * rejected: sender deliveries the peer settled with another outcome.
 *
 * Exit status: 0 when done (count reached, or the duration ran out with
 * --count 0); 2 when the duration ran out before --count was reached (the
 * JSON line is still printed, with "timed_out":true); 1 on connection, link
 * or usage errors, with a message on stderr.
 */

#define _GNU_SOURCE
#include <proton/condition.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/proactor.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <proton/transport.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- time ---------------------------------------------------------------- */

static uint64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double mono_secs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_secs(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- latency histogram ----------------------------------------------------
 * Values in nanoseconds. Below 128 every value has its own bucket; above,
 * each power of two is split into 64 equal buckets, so a bucket is at most
 * 1/64 of its lower bound wide. */

#define HIST_SUB 64
#define HIST_BUCKETS (58 * HIST_SUB + 2 * HIST_SUB)

static uint64_t hist[HIST_BUCKETS];
static uint64_t hist_total, hist_max;

static unsigned hist_index(uint64_t v) {
  if (v < 2 * HIST_SUB) return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
  unsigned shift = e - 6;
  return (e - 6) * HIST_SUB + (unsigned)(v >> shift);
}

static uint64_t hist_upper(unsigned idx) { /* largest value in bucket idx */
  if (idx < 2 * HIST_SUB) return idx;
  unsigned q = idx / HIST_SUB, r = idx % HIST_SUB;
  unsigned shift = q - 1;
  uint64_t lower = (uint64_t)(HIST_SUB + r) << shift;
  return lower + (((uint64_t)1 << shift) - 1);
}

static void hist_record(uint64_t v) {
  hist[hist_index(v)]++;
  hist_total++;
  if (v > hist_max) hist_max = v;
}

static double hist_quantile_us(double q) {
  uint64_t rank = (uint64_t)(q * (double)hist_total + 0.999999);
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HIST_BUCKETS; i++) {
    seen += hist[i];
    if (seen >= rank) {
      uint64_t v = hist_upper(i);
      if (v > hist_max) v = hist_max;
      return (double)v / 1000.0;
    }
  }
  return (double)hist_max / 1000.0;
}

/* ---- AMQP section walking ------------------------------------------------ */

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Advance *pos past one encoded AMQP value; false if it runs past n. */
static bool skip_value(const uint8_t *p, size_t n, size_t *pos, int depth) {
  if (*pos >= n || depth > 16) return false;
  uint8_t c = p[*pos];
  if (c == 0x00) { /* described: descriptor then value */
    (*pos)++;
    return skip_value(p, n, pos, depth + 1) && skip_value(p, n, pos, depth + 1);
  }
  size_t need;
  switch (c >> 4) {
  case 0x4: need = 1; break;
  case 0x5: need = 2; break;
  case 0x6: need = 3; break;
  case 0x7: need = 5; break;
  case 0x8: need = 9; break;
  case 0x9: need = 17; break;
  case 0xa: case 0xc: case 0xe:
    if (*pos + 2 > n) return false;
    need = 2 + (size_t)p[*pos + 1];
    break;
  case 0xb: case 0xd: case 0xf:
    if (*pos + 5 > n) return false;
    need = 5 + (size_t)be32(p + *pos + 1);
    break;
  default:
    return false;
  }
  if (need > n - *pos) return false;
  *pos += need;
  return true;
}

/* Find the body of an encoded message: the first data section, or an
   amqp-value section holding a binary (as some clients send bytes). */
static bool find_data(const uint8_t *p, size_t n, const uint8_t **body, size_t *len) {
  size_t pos = 0;
  while (pos < n) {
    if (p[pos] != 0x00 || pos + 2 > n) return false;
    pos++;
    uint64_t code = UINT64_MAX;
    if (p[pos] == 0x53) { /* smallulong */
      code = p[pos + 1];
      pos += 2;
    } else if (p[pos] == 0x80) { /* ulong */
      if (pos + 9 > n) return false;
      code = 0;
      for (int i = 1; i <= 8; i++) code = (code << 8) | p[pos + i];
      pos += 9;
    } else if (!skip_value(p, n, &pos, 0)) { /* symbolic descriptor */
      return false;
    }
    if (pos >= n) return false;
    if (code == 0x75 || code == 0x77) { /* data, or an amqp-value holding binary */
      size_t l, h;
      if (p[pos] == 0xa0 && pos + 2 <= n) { l = p[pos + 1]; h = 2; }
      else if (p[pos] == 0xb0 && pos + 5 <= n) { l = be32(p + pos + 1); h = 5; }
      else return false; /* not binary */
      if (l > n - pos - h) return false;
      *body = p + pos + h;
      *len = l;
      return true;
    }
    if (!skip_value(p, n, &pos, 0)) return false;
  }
  return false;
}

/* ---- client state -------------------------------------------------------- */

typedef struct {
  /* options */
  char host[256];
  char port[32];
  const char *user, *password, *address;
  bool sender;
  uint64_t count;
  double duration;
  size_t size;
  bool presettled, durable;
  int window, credit;

  /* proton */
  pn_proactor_t *proactor;
  pn_connection_t *conn;
  pn_link_t *link;

  /* sender: the encoded message and where its body starts */
  uint8_t *msg;
  size_t msg_len, body_off;

  /* receiver: scratch buffer */
  uint8_t *rbuf;
  size_t rcap;

  /* progress */
  uint64_t issued;   /* sender: deliveries created */
  uint64_t done;     /* the reported count */
  uint64_t rejected; /* sender: settled with a non-accepted outcome */
  double t_start, t_end, t_last; /* t_last: receiver's latest delivery */
  bool started, finished, closing, timed_out, failed, grace_armed;
} app_t;

static app_t A;

static void die_usage(const char *msg) {
  fprintf(stderr, "proton-load: %s (see --help)\n", msg);
  exit(1);
}

static void build_message(app_t *a) {
  size_t dhdr = a->size <= 255 ? 5 : 8;
  a->msg_len = 7 + dhdr + a->size;
  a->msg = calloc(1, a->msg_len);
  if (!a->msg) { perror("calloc"); exit(1); }
  uint8_t *p = a->msg;
  /* header: described list [durable] */
  p[0] = 0x00; p[1] = 0x53; p[2] = 0x70;
  p[3] = 0xc0; p[4] = 0x02; p[5] = 0x01; p[6] = a->durable ? 0x41 : 0x42;
  p += 7;
  /* data: described binary */
  p[0] = 0x00; p[1] = 0x53; p[2] = 0x75;
  if (dhdr == 5) {
    p[3] = 0xa0; p[4] = (uint8_t)a->size;
  } else {
    uint32_t s = (uint32_t)a->size;
    p[3] = 0xb0;
    p[4] = (uint8_t)(s >> 24); p[5] = (uint8_t)(s >> 16);
    p[6] = (uint8_t)(s >> 8); p[7] = (uint8_t)s;
  }
  a->body_off = 7 + dhdr;
}

static void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static void mark_done(app_t *a) {
  if (!a->finished) {
    a->finished = true;
    a->t_end = mono_secs();
  }
}

static void begin_close(app_t *a) {
  if (a->closing) return;
  a->closing = true;
  if (a->sender && a->presettled && a->link) a->done = a->issued - (uint64_t)pn_link_queued(a->link);
  if (!a->finished) a->t_end = mono_secs();
  if (a->link) pn_link_close(a->link);
  if (a->conn) pn_connection_close(a->conn);
  /* Bound the close handshake. */
  a->grace_armed = true;
  pn_proactor_set_timeout(a->proactor, 3000);
}

static void fail(app_t *a, const char *what, pn_condition_t *cond) {
  if (cond && pn_condition_is_set(cond)) {
    fprintf(stderr, "proton-load: %s: %s: %s\n", what, pn_condition_get_name(cond),
            pn_condition_get_description(cond) ? pn_condition_get_description(cond) : "");
  } else {
    fprintf(stderr, "proton-load: %s\n", what);
  }
  a->failed = true;
  begin_close(a);
}

/* ---- sender -------------------------------------------------------------- */

static void send_some(app_t *a) {
  pn_link_t *l = a->link;
  if (!l || a->closing || a->finished) return;
  if (!(pn_link_state(l) & PN_REMOTE_ACTIVE)) return;
  while (pn_link_credit(l) > 0 && (a->count == 0 || a->issued < a->count)) {
    uint64_t in_flight = a->presettled ? (uint64_t)pn_link_queued(l) : a->issued - a->done - a->rejected;
    if (in_flight >= (uint64_t)a->window) break;
    uint64_t seq = a->issued;
    put_le64(a->msg + a->body_off, wall_ns());
    put_le64(a->msg + a->body_off + 8, seq);
    pn_delivery_t *d = pn_delivery(l, pn_dtag((const char *)&seq, sizeof seq));
    pn_link_send(l, (const char *)a->msg, a->msg_len);
    pn_link_advance(l);
    a->issued++;
    if (a->presettled) pn_delivery_settle(d);
  }
  if (a->presettled) a->done = a->issued - (uint64_t)pn_link_queued(l);
  if (a->presettled && a->count && a->done >= a->count) {
    mark_done(a);
    begin_close(a);
  }
}

static void sender_delivery(app_t *a, pn_delivery_t *d) {
  if (!pn_delivery_updated(d)) return;
  uint64_t st = pn_delivery_remote_state(d);
  if (!pn_delivery_settled(d) && st != PN_ACCEPTED && st != PN_REJECTED &&
      st != PN_RELEASED && st != PN_MODIFIED)
    return; /* not an outcome yet */
  if (st == PN_ACCEPTED) a->done++;
  else a->rejected++;
  pn_delivery_settle(d);
  if (a->count && a->done + a->rejected >= a->count) {
    mark_done(a);
    begin_close(a);
  } else {
    send_some(a);
  }
}

/* ---- receiver ------------------------------------------------------------ */

static void top_up_credit(app_t *a) {
  pn_link_t *l = a->link;
  if (!l || a->closing) return;
  int64_t want = a->credit;
  if (a->count) {
    int64_t remaining = (int64_t)(a->count - a->done);
    if (remaining < want) want = remaining;
  }
  int cur = pn_link_credit(l);
  if (cur <= a->credit / 2 && want > cur) pn_link_flow(l, (int)(want - cur));
}

static void receiver_delivery(app_t *a, pn_delivery_t *d) {
  if (!pn_delivery_readable(d) || pn_delivery_partial(d)) return;
  pn_link_t *l = pn_delivery_link(d);
  size_t n = pn_delivery_pending(d);
  if (n > a->rcap) {
    a->rcap = n * 2;
    a->rbuf = realloc(a->rbuf, a->rcap);
    if (!a->rbuf) { perror("realloc"); exit(1); }
  }
  ssize_t got = pn_link_recv(l, (char *)a->rbuf, n);
  uint64_t now = wall_ns();
  if (got < 0 && got != PN_EOS) {
    if (got == PN_ABORTED) { pn_delivery_settle(d); return; }
    fail(a, "receive error", NULL);
    return;
  }
  const uint8_t *body;
  size_t blen;
  if (got > 0 && find_data(a->rbuf, (size_t)got, &body, &blen) && blen >= 16) {
    uint64_t stamp = get_le64(body);
    hist_record(now > stamp ? now - stamp : 0);
  }
  if (!pn_delivery_settled(d)) pn_delivery_update(d, PN_ACCEPTED);
  pn_delivery_settle(d);
  if (!a->started) {
    a->started = true;
    a->t_start = mono_secs();
  }
  a->done++;
  a->t_last = mono_secs();
  if (a->count && a->done >= a->count) {
    mark_done(a);
    begin_close(a);
  } else {
    top_up_credit(a);
  }
}

/* ---- events -------------------------------------------------------------- */

static bool handle(app_t *a, pn_event_t *e) {
  switch (pn_event_type(e)) {
  case PN_CONNECTION_INIT: {
    pn_connection_t *c = pn_event_connection(e);
    char cid[64];
    snprintf(cid, sizeof cid, "proton-load-%ld", (long)getpid());
    pn_connection_set_container(c, cid);
    pn_connection_open(c);
    pn_session_t *s = pn_session(c);
    pn_session_open(s);
    if (a->sender) {
      a->link = pn_sender(s, "proton-load-sender");
      pn_terminus_set_address(pn_link_target(a->link), a->address);
      if (a->presettled) pn_link_set_snd_settle_mode(a->link, PN_SND_SETTLED);
      else pn_link_set_snd_settle_mode(a->link, PN_SND_UNSETTLED);
    } else {
      a->link = pn_receiver(s, "proton-load-receiver");
      pn_terminus_set_address(pn_link_source(a->link), a->address);
      if (a->presettled) pn_link_set_snd_settle_mode(a->link, PN_SND_SETTLED);
    }
    pn_link_set_rcv_settle_mode(a->link, PN_RCV_FIRST);
    pn_link_open(a->link);
    if (!a->sender) {
      int64_t c0 = a->credit;
      if (a->count && (int64_t)a->count < c0) c0 = (int64_t)a->count;
      pn_link_flow(a->link, (int)c0);
    }
    break;
  }
  case PN_LINK_REMOTE_OPEN: {
    pn_link_t *l = pn_event_link(e);
    if (l != a->link) break;
    /* A peer refusing a link attaches with a null terminus and then detaches. */
    pn_terminus_t *t = a->sender ? pn_link_remote_target(l) : pn_link_remote_source(l);
    if (pn_terminus_get_type(t) == PN_UNSPECIFIED) break; /* wait for the detach */
    if (a->sender && !a->started) {
      a->started = true;
      a->t_start = mono_secs();
    }
    if (a->sender) send_some(a);
    break;
  }
  case PN_LINK_FLOW:
    if (a->sender && pn_event_link(e) == a->link) send_some(a);
    break;
  case PN_DELIVERY: {
    pn_delivery_t *d = pn_event_delivery(e);
    if (pn_delivery_link(d) != a->link) break;
    if (a->sender) sender_delivery(a, d);
    else receiver_delivery(a, d);
    break;
  }
  case PN_LINK_REMOTE_CLOSE:
  case PN_LINK_REMOTE_DETACH: {
    pn_link_t *l = pn_event_link(e);
    if (!a->closing) fail(a, "peer detached the link", pn_link_remote_condition(l));
    else pn_link_close(l);
    break;
  }
  case PN_SESSION_REMOTE_CLOSE:
    if (!a->closing) fail(a, "peer ended the session", pn_session_remote_condition(pn_event_session(e)));
    break;
  case PN_CONNECTION_REMOTE_CLOSE:
    if (!a->closing) fail(a, "peer closed the connection", pn_connection_remote_condition(pn_event_connection(e)));
    break;
  case PN_TRANSPORT_CLOSED: {
    /* Expected once we closed; anything earlier is a connection error. */
    if (!a->closing) fail(a, "connection failed", pn_transport_condition(pn_event_transport(e)));
    return false;
  }
  case PN_PROACTOR_TIMEOUT:
    if (a->grace_armed && a->closing) {
      if (!a->failed && !a->finished && !a->timed_out) fprintf(stderr, "proton-load: close timed out\n");
      return false; /* give up on a clean close */
    }
    a->timed_out = true;
    begin_close(a);
    break;
  case PN_PROACTOR_INACTIVE:
    return false;
  default:
    break;
  }
  return true;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(void) {
  fputs(
      "usage: proton-load --url HOST:PORT --address ADDR --role send|receive\n"
      "                   [--count N] [--duration-secs S] [--size BYTES] [--presettled]\n"
      "                   [--window W] [--credit C] [--durable] [--user U --password P]\n",
      stdout);
}

static uint64_t parse_u64(const char *s, const char *opt) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*s == '\0' || *end != '\0' || *s == '-') {
    fprintf(stderr, "proton-load: bad value for %s: %s\n", opt, s);
    exit(1);
  }
  return (uint64_t)v;
}

int main(int argc, char **argv) {
  app_t *a = &A;
  const char *url = "127.0.0.1:5672", *role = NULL;
  a->count = 0;
  a->duration = 60;
  a->size = 1024;
  a->window = 1000;
  a->credit = 1000;

  static const struct option opts[] = {
      {"url", required_argument, 0, 'u'},
      {"user", required_argument, 0, 'U'},
      {"password", required_argument, 0, 'P'},
      {"address", required_argument, 0, 'a'},
      {"role", required_argument, 0, 'r'},
      {"count", required_argument, 0, 'n'},
      {"duration-secs", required_argument, 0, 'd'},
      {"size", required_argument, 0, 's'},
      {"presettled", no_argument, 0, 'p'},
      {"window", required_argument, 0, 'w'},
      {"credit", required_argument, 0, 'c'},
      {"durable", no_argument, 0, 'D'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "u:U:P:a:r:n:d:s:pw:c:Dh", opts, NULL)) != -1) {
    switch (o) {
    case 'u': url = optarg; break;
    case 'U': a->user = optarg; break;
    case 'P': a->password = optarg; break;
    case 'a': a->address = optarg; break;
    case 'r': role = optarg; break;
    case 'n': a->count = parse_u64(optarg, "--count"); break;
    case 'd': {
      char *end;
      a->duration = strtod(optarg, &end);
      if (*end != '\0' || !(a->duration > 0)) die_usage("--duration-secs must be a positive number");
      break;
    }
    case 's': a->size = (size_t)parse_u64(optarg, "--size"); break;
    case 'p': a->presettled = true; break;
    case 'w': a->window = (int)parse_u64(optarg, "--window"); break;
    case 'c': a->credit = (int)parse_u64(optarg, "--credit"); break;
    case 'D': a->durable = true; break;
    case 'h': usage(); return 0;
    default: die_usage("unknown option");
    }
  }
  if (optind < argc) die_usage("unexpected argument");
  if (!role || (strcmp(role, "send") && strcmp(role, "receive"))) die_usage("--role must be send or receive");
  a->sender = strcmp(role, "send") == 0;
  if (!a->address || !*a->address) die_usage("--address is required");
  if (a->size < 16) die_usage("--size must be at least 16");
  if (a->size > 0x7fffffff) die_usage("--size too large");
  if (a->window < 1) die_usage("--window must be at least 1");
  if (a->credit < 1) die_usage("--credit must be at least 1");
  if ((a->user == NULL) != (a->password == NULL)) die_usage("--user and --password go together");
  if (a->duration > 86400) a->duration = 86400;

  /* HOST:PORT, with [v6]:PORT allowed */
  const char *colon = strrchr(url, ':');
  if (!colon || colon == url || !colon[1]) die_usage("--url must be HOST:PORT");
  size_t hl = (size_t)(colon - url);
  const char *h = url;
  if (url[0] == '[' && colon[-1] == ']') { h = url + 1; hl -= 2; }
  if (hl >= sizeof a->host || strlen(colon + 1) >= sizeof a->port) die_usage("--url too long");
  memcpy(a->host, h, hl);
  a->host[hl] = '\0';
  strcpy(a->port, colon + 1);

  if (a->sender) build_message(a);

  a->proactor = pn_proactor();
  a->conn = pn_connection();
  pn_connection_set_hostname(a->conn, a->host);
  pn_transport_t *t = pn_transport();
  pn_sasl_t *sasl = pn_sasl(t);
  if (a->user) {
    pn_connection_set_user(a->conn, a->user);
    pn_connection_set_password(a->conn, a->password);
    pn_sasl_allowed_mechs(sasl, "PLAIN");
    pn_sasl_set_allow_insecure_mechs(sasl, true);
  } else {
    pn_sasl_allowed_mechs(sasl, "ANONYMOUS");
  }
  char addr[PN_MAX_ADDR];
  pn_proactor_addr(addr, sizeof addr, a->host, a->port);
  pn_proactor_set_timeout(a->proactor, (pn_millis_t)(a->duration * 1000.0));
  pn_proactor_connect2(a->proactor, a->conn, t, addr);

  bool running = true;
  while (running) {
    pn_event_batch_t *batch = pn_proactor_wait(a->proactor);
    pn_event_t *e;
    while ((e = pn_event_batch_next(batch))) {
      if (!handle(a, e)) running = false;
    }
    pn_proactor_done(a->proactor, batch);
  }

  double cpu = cpu_secs();
  if (a->failed) {
    pn_proactor_free(a->proactor);
    return 1;
  }
  if (!a->finished) a->t_end = a->t_end > 0 ? a->t_end : mono_secs();
  double elapsed = !a->started ? 0.0 : a->sender ? a->t_end - a->t_start : a->t_last - a->t_start;
  if (elapsed < 0) elapsed = 0;
  double rate = elapsed > 0 ? (double)a->done / elapsed : 0.0;
  bool incomplete = a->count && a->done < a->count;

  printf("{\"role\":\"%s\",\"count\":%" PRIu64 ",\"elapsed_secs\":%.6f,\"rate\":%.1f,\"cpu_secs\":%.3f,",
         a->sender ? "send" : "receive", a->done, elapsed, rate, cpu);
  if (!a->sender && hist_total > 0) {
    printf("\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,", hist_quantile_us(0.50),
           hist_quantile_us(0.99), hist_quantile_us(0.999), (double)hist_max / 1000.0);
  } else {
    printf("\"p50_us\":null,\"p99_us\":null,\"p999_us\":null,\"max_us\":null,");
  }
  printf("\"samples\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"timed_out\":%s}\n", hist_total, a->rejected,
         a->timed_out ? "true" : "false");
  fflush(stdout);
  pn_proactor_free(a->proactor);
  free(a->msg);
  free(a->rbuf);
  return incomplete ? 2 : 0;
}
