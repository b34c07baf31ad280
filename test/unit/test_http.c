/* HTTP server against libcurl on 127.0.0.1: routing, 404/405/413, bodies, TLS, certificate
 * rotation for new connections, and a close that does not wait for idle keep-alive clients.
 * The server runs on the test's loop; the client runs in a second thread (blocking curl). */
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "co/error.h"
#include "co/http.h"
#include "co_test.h"

/* ---- certificates ---- */

typedef struct {
  char *cert;
  char *key;
} pem_t;

static char *bio_string(BIO *bio) {
  char *data;
  long n = BIO_get_mem_data(bio, &data);
  char *s = calloc(1, (size_t)n + 1);
  memcpy(s, data, (size_t)n);
  return s;
}

static pem_t make_cert(const char *cn, long serial) {
  pem_t p = {NULL, NULL};
  EVP_PKEY *k = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, k);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, n);
  X509_sign(x, k, EVP_sha256());
  BIO *b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  p.cert = bio_string(b);
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
  p.key = bio_string(b);
  BIO_free(b);
  X509_free(x);
  EVP_PKEY_free(k);
  return p;
}

static void pem_free(pem_t *p) {
  free(p->cert);
  free(p->key);
}

/* ---- client ---- */

typedef struct {
  long status;
  char body[20000];
  size_t len;
  char ctype[128];
  char allow[128];
  char subject[512];
  long connects; /* new connections made by this request (0: reused) */
  long version;  /* CURL_HTTP_VERSION_* the response came with */
  CURLcode code;
} resp_t;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  resp_t *r = ud;
  size_t len = size * n;
  if (r->len + len >= sizeof(r->body))
    return 0;
  memcpy(r->body + r->len, p, len);
  r->len += len;
  r->body[r->len] = '\0';
  return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  resp_t *r = ud;
  size_t len = size * n;
  if (len > 6 && strncasecmp(p, "allow:", 6) == 0) {
    size_t v = len - 7 < sizeof(r->allow) - 1 ? len - 7 : sizeof(r->allow) - 1;
    memcpy(r->allow, p + 7, v);
    r->allow[v] = '\0';
    r->allow[strcspn(r->allow, "\r\n")] = '\0';
  }
  return len;
}

static void request(CURL *h, const char *method, const char *url, const char *body, size_t blen,
                    resp_t *r) {
  memset(r, 0, sizeof(*r));
  curl_easy_reset(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
  struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
  hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  if (body != NULL) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)blen);
  }
  r->code = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
  curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r->connects);
  curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &r->version);
  char *ct = NULL;
  if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL)
    snprintf(r->ctype, sizeof(r->ctype), "%s", ct);
  struct curl_certinfo *ci = NULL;
  if (curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) == CURLE_OK && ci != NULL &&
      ci->num_of_certs > 0)
    for (struct curl_slist *s = ci->certinfo[0]; s != NULL; s = s->next)
      if (strncmp(s->data, "Subject:", 8) == 0)
        snprintf(r->subject, sizeof(r->subject), "%s", s->data);
  curl_slist_free_all(hdrs);
}

/* ---- harness: the server on the loop, a script in a thread ---- */

typedef struct fixture_s fixture_t;
typedef void (*script_fn)(fixture_t *f);

struct fixture_s {
  uv_loop_t loop;
  co_http_server_t srv;
  uv_async_t done;
  pthread_t thread;
  script_fn script;
  int plain_port, tls_port;
  pem_t certs[2];
  atomic_int closed;
  int close_calls;
  uint64_t close_started_ms, closed_ms;
  CURL *keep, *keep_tls; /* connections left open across the close */
  int raw;               /* a TCP connection that never starts its TLS handshake */
  pthread_t uploads[3];  /* clients stuck in the middle of a request body */
  int nuploads;
};

static void on_closed(co_http_server_t *srv) {
  fixture_t *f = srv->data;
  f->close_calls++;
  f->closed_ms = uv_now(&f->loop);
  atomic_store(&f->closed, 1);
  uv_close((uv_handle_t *)&f->done, NULL);
}

static void on_done(uv_async_t *a) {
  fixture_t *f = a->data;
  uv_update_time(&f->loop);
  f->close_started_ms = uv_now(&f->loop);
  co_http_server_close(&f->srv, on_closed);
}

static void *thread_main(void *arg) {
  fixture_t *f = arg;
  f->script(f);
  uv_async_send(&f->done);
  /* keep the script's connections open until the server has closed (10 s at most: a close
   * that waits for them fails the duration check in run()) */
  for (int i = 0; i < 2000 && !atomic_load(&f->closed); i++)
    uv_sleep(5);
  if (f->keep != NULL)
    curl_easy_cleanup(f->keep);
  if (f->keep_tls != NULL)
    curl_easy_cleanup(f->keep_tls);
  if (f->raw > 0)
    close(f->raw);
  for (int i = 0; i < f->nuploads; i++)
    pthread_join(f->uploads[i], NULL);
  return NULL;
}

static void h_hello(co_http_request_t *req, void *data) {
  char out[256];
  int n = snprintf(out, sizeof(out), "hello %.*s tls=%d", (int)req->query_len,
                   req->query ? req->query : "", req->tls);
  co_http_respond(req, 200, "text/plain; charset=utf-8", out, (size_t)n);
}

static void h_echo(co_http_request_t *req, void *data) {
  char ct[128];
  snprintf(ct, sizeof(ct), "%.*s", (int)req->content_type_len, req->content_type);
  co_http_respond(req, 201, ct, req->body, req->body_len);
}

static void h_silent(co_http_request_t *req, void *data) {}

static void h_swap(co_http_request_t *req, void *data) {
  fixture_t *f = data;
  int rc = co_http_server_set_cert(&f->srv, f->certs[1].cert, f->certs[1].key);
  CO_CHECK_INT(rc, ==, 0);
  /* unusable material is refused and leaves the current certificate in place */
  CO_CHECK_INT(co_http_server_set_cert(&f->srv, f->certs[0].cert, f->certs[1].key), ==, CO_ETLS);
  CO_CHECK_INT(co_http_server_set_cert(&f->srv, "garbage", "garbage"), ==, CO_ETLS);
  co_http_respond(req, 200, NULL, NULL, 0);
}

static void run(script_fn script) {
  fixture_t f;
  memset(&f, 0, sizeof(f));
  f.script = script;
  f.certs[0] = make_cert("one.test", 1);
  f.certs[1] = make_cert("two.test", 2);
  uv_loop_init(&f.loop);
  CO_CHECK_INT(co_http_server_init(&f.loop, &f.srv), ==, 0);
  f.srv.data = &f;
  co_http_route_opts_t post_small = {CO_HTTP_POST | CO_HTTP_PUT, 100};
  co_http_route_opts_t post_big = {CO_HTTP_POST, 4096};
  co_http_route_opts_t post_none = {CO_HTTP_POST, 0};
  CO_CHECK_INT(co_http_server_route(&f.srv, "/hello", NULL, h_hello, &f), ==, 0);
  CO_CHECK_INT(co_http_server_route(&f.srv, "/echo", &post_small, h_echo, &f), ==, 0);
  CO_CHECK_INT(co_http_server_route(&f.srv, "/big", &post_big, h_echo, &f), ==, 0);
  CO_CHECK_INT(co_http_server_route(&f.srv, "/silent", NULL, h_silent, &f), ==, 0);
  CO_CHECK_INT(co_http_server_route(&f.srv, "/swap", &post_none, h_swap, &f), ==, 0);
  CO_CHECK_INT(co_http_server_route(&f.srv, "/hello", NULL, h_hello, &f), ==, CO_EEXIST);
  CO_CHECK_INT(co_http_server_route(&f.srv, "nope", NULL, h_hello, &f), ==, CO_EINVAL);
  CO_CHECK_INT(co_http_server_listen(&f.srv, "127.0.0.1:notaport", NULL), ==, CO_EINVAL);
  CO_CHECK_INT(co_http_server_listen(&f.srv, "127.0.0.1", NULL), ==, CO_EINVAL);
  co_http_tls_t bad = {f.certs[0].cert, f.certs[1].key};
  CO_CHECK_INT(co_http_server_listen(&f.srv, "127.0.0.1:0", &bad), ==, CO_ETLS);
  CO_CHECK_INT(co_http_server_set_cert(&f.srv, f.certs[0].cert, f.certs[0].key), ==, CO_EINVAL);
  CO_CHECK_INT(co_http_server_listen(&f.srv, "127.0.0.1:0", NULL), ==, 0);
  co_http_tls_t tls = {f.certs[0].cert, f.certs[0].key};
  CO_CHECK_INT(co_http_server_listen(&f.srv, "127.0.0.1:0", &tls), ==, 0);
  f.plain_port = co_http_server_port(&f.srv, 0);
  f.tls_port = co_http_server_port(&f.srv, 1);
  CO_CHECK(f.plain_port > 0 && f.tls_port > 0 && f.plain_port != f.tls_port);
  CO_CHECK_INT(co_http_server_port(&f.srv, 2), ==, -1);
  /* the same port twice cannot be bound */
  char again[64];
  snprintf(again, sizeof(again), "127.0.0.1:%d", f.plain_port);
  CO_CHECK_INT(co_http_server_listen(&f.srv, again, NULL), ==, CO_EIO);

  uv_async_init(&f.loop, &f.done, on_done);
  f.done.data = &f;
  pthread_create(&f.thread, NULL, thread_main, &f);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  pthread_join(f.thread, NULL);
  CO_CHECK_INT(f.close_calls, ==, 1);
  CO_CHECK_INT(f.closed_ms - f.close_started_ms, <, 2000);
  CO_CHECK(f.srv.impl == NULL);
  CO_CHECK_INT(uv_loop_close(&f.loop), ==, 0);
  pem_free(&f.certs[0]);
  pem_free(&f.certs[1]);
}

static void url(char *out, size_t cap, const fixture_t *f, int tls, const char *path) {
  snprintf(out, cap, "%s://127.0.0.1:%d%s", tls ? "https" : "http",
           tls ? f->tls_port : f->plain_port, path);
}

/* ---- tests ---- */

static void script_routes(fixture_t *f) {
  CURL *h = curl_easy_init();
  resp_t r;
  char u[256];
  url(u, sizeof(u), f, 0, "/hello?x=1&y=%20");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.code, ==, CURLE_OK);
  CO_CHECK_INT(r.status, ==, 200);
  CO_CHECK_STR(r.body, "hello x=1&y=%20 tls=0");
  CO_CHECK_STR(r.ctype, "text/plain; charset=utf-8");
  url(u, sizeof(u), f, 0, "/hello");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_STR(r.body, "hello  tls=0");
  CO_CHECK_INT(r.connects, ==, 0); /* keep-alive */

  url(u, sizeof(u), f, 0, "/nope");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.status, ==, 404);
  url(u, sizeof(u), f, 0, "/hello/more");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.status, ==, 404);
  url(u, sizeof(u), f, 0, "/hello");
  request(h, "POST", u, "{}", 2, &r);
  CO_CHECK_INT(r.status, ==, 405);
  CO_CHECK_STR(r.allow, "GET");
  url(u, sizeof(u), f, 0, "/echo");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.status, ==, 405);
  CO_CHECK_STR(r.allow, "POST, PUT");

  request(h, "POST", u, "{\"a\":1}", 7, &r);
  CO_CHECK_INT(r.status, ==, 201);
  CO_CHECK_STR(r.body, "{\"a\":1}");
  CO_CHECK_STR(r.ctype, "application/json");
  request(h, "PUT", u, "x", 1, &r);
  CO_CHECK_INT(r.status, ==, 201);

  /* over the route's bound (100) but within the server's (4096, from /big) */
  static char body[10000];
  memset(body, 'b', sizeof(body));
  request(h, "POST", u, body, 101, &r);
  CO_CHECK_INT(r.status, ==, 413);
  request(h, "POST", u, body, 100, &r);
  CO_CHECK_INT(r.status, ==, 201);
  CO_CHECK_INT(r.len, ==, 100);
  url(u, sizeof(u), f, 0, "/big");
  request(h, "POST", u, body, 4096, &r);
  CO_CHECK_INT(r.status, ==, 201);
  CO_CHECK_INT(r.len, ==, 4096);
  /* over every route's bound: refused before the body is read */
  request(h, "POST", u, body, sizeof(body), &r);
  CO_CHECK_INT(r.status, ==, 413);
  url(u, sizeof(u), f, 0, "/swap");
  request(h, "POST", u, "x", 1, &r);
  CO_CHECK_INT(r.status, ==, 413);

  url(u, sizeof(u), f, 0, "/silent");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.status, ==, 500);

  /* the TLS listener serves the same routes */
  url(u, sizeof(u), f, 1, "/hello?t");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.code, ==, CURLE_OK);
  CO_CHECK_STR(r.body, "hello t tls=1");
  /* the same bounds over HTTP/2 */
  url(u, sizeof(u), f, 1, "/echo");
  request(h, "POST", u, body, 101, &r);
  CO_CHECK_INT(r.version, ==, CURL_HTTP_VERSION_2_0);
  CO_CHECK_INT(r.status, ==, 413);
  request(h, "POST", u, body, 100, &r);
  CO_CHECK_INT(r.status, ==, 201);
  /* over every route's bound, HTTP/2: libh2o resets the stream instead of reading the body */
  url(u, sizeof(u), f, 1, "/big");
  request(h, "POST", u, body, sizeof(body), &r);
  CO_CHECK(r.code != CURLE_OK && r.status == 0);
  url(u, sizeof(u), f, 1, "/hello?t");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_STR(r.body, "hello t tls=1");
  /* plaintext on the TLS port fails */
  char plain_on_tls[128];
  snprintf(plain_on_tls, sizeof(plain_on_tls), "http://127.0.0.1:%d/hello", f->tls_port);
  request(h, "GET", plain_on_tls, NULL, 0, &r);
  CO_CHECK(r.code != CURLE_OK || r.status != 200);
  curl_easy_cleanup(h);
}

static void test_routes(void) { run(script_routes); }

static void script_cert_swap(fixture_t *f) {
  CURL *h = curl_easy_init();
  resp_t r;
  char u[256];
  url(u, sizeof(u), f, 1, "/hello");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.code, ==, CURLE_OK);
  CO_CHECK_INT(r.status, ==, 200);
  CO_CHECK_CONTAINS(r.subject, "one.test");
  /* the swap happens while this connection serves a request: it completes, and the connection
   * keeps working with the certificate it was opened with */
  url(u, sizeof(u), f, 1, "/swap");
  request(h, "POST", u, NULL, 0, &r);
  CO_CHECK_INT(r.status, ==, 200);
  CO_CHECK_INT(r.connects, ==, 0);
  url(u, sizeof(u), f, 1, "/hello");
  request(h, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.status, ==, 200);
  CO_CHECK_INT(r.connects, ==, 0);
  /* a new connection sees the new certificate */
  CURL *h2 = curl_easy_init();
  request(h2, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.code, ==, CURLE_OK);
  CO_CHECK_INT(r.status, ==, 200);
  CO_CHECK_INT(r.connects, ==, 1);
  CO_CHECK_CONTAINS(r.subject, "two.test");
  curl_easy_cleanup(h2);
  curl_easy_cleanup(h);
}

static void test_cert_swap(void) { run(script_cert_swap); }

/* Idle keep-alive connections (plain HTTP/1.1 and TLS HTTP/2) and one stuck before its TLS
 * handshake do not hold the close back: it ends long before libh2o's 10 s request and handshake
 * timeouts. */
static void script_idle(fixture_t *f) {
  resp_t r;
  char u[256];
  f->keep = curl_easy_init();
  url(u, sizeof(u), f, 0, "/hello");
  request(f->keep, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.status, ==, 200);
  CO_CHECK_INT(r.version, ==, CURL_HTTP_VERSION_1_1);
  /* TLS offers HTTP/2 by ALPN: the idle connection is an HTTP/2 one */
  f->keep_tls = curl_easy_init();
  url(u, sizeof(u), f, 1, "/hello");
  request(f->keep_tls, "GET", u, NULL, 0, &r);
  CO_CHECK_INT(r.status, ==, 200);
  CO_CHECK_INT(r.version, ==, CURL_HTTP_VERSION_2_0);
  f->raw = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", f->tls_port, &sa);
  CO_CHECK_INT(connect(f->raw, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
  uv_sleep(100); /* let the server accept it */
}

static void test_close_idle(void) { run(script_idle); }

/* ---- a close while clients are in the middle of sending a request body ---- */

typedef struct {
  fixture_t *f;
  int tls;
  long version;
  atomic_int sent;
} upload_t;

static upload_t uploads[3];

/* Sends the first 10 of 50 announced bytes, then nothing until the server has closed (5 s at
 * most, then the upload is given up: the close took too long and run() says so). */
static size_t on_slow_read(char *buf, size_t size, size_t n, void *ud) {
  upload_t *u = ud;
  if (!atomic_load(&u->sent) && size * n >= 10) {
    memset(buf, 'x', 10);
    atomic_store(&u->sent, 1);
    return 10;
  }
  for (int i = 0; i < 500 && !atomic_load(&u->f->closed); i++)
    uv_sleep(10);
  return CURL_READFUNC_ABORT;
}

static void *upload_main(void *arg) {
  upload_t *u = arg;
  CURL *h = curl_easy_init();
  char u_[256];
  url(u_, sizeof(u_), u->f, u->tls, "/echo");
  curl_easy_setopt(h, CURLOPT_URL, u_);
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 50L);
  curl_easy_setopt(h, CURLOPT_READFUNCTION, on_slow_read);
  curl_easy_setopt(h, CURLOPT_READDATA, u);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, u->version);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_perform(h); /* fails: the server closes the connection, or the upload gives up */
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  return NULL;
}

/* HTTP/1.1 in plaintext and over TLS, and an HTTP/2 stream over TLS, each with a request body
 * half received: the close does not wait for the rest (it ends long before libh2o's 10 s
 * request timeout, and before the clients give up). */
static void script_partial_body(fixture_t *f) {
  const struct {
    int tls;
    long version;
  } cases[] = {{0, CURL_HTTP_VERSION_1_1}, {1, CURL_HTTP_VERSION_1_1}, {1, CURL_HTTP_VERSION_2TLS}};
  for (int i = 0; i < 3; i++) {
    uploads[i] = (upload_t){.f = f, .tls = cases[i].tls, .version = cases[i].version};
    pthread_create(&f->uploads[i], NULL, upload_main, &uploads[i]);
    f->nuploads++;
  }
  for (int i = 0; i < 3; i++)
    for (int t = 0; t < 500 && !atomic_load(&uploads[i].sent); t++)
      uv_sleep(10);
  for (int i = 0; i < 3; i++)
    CO_CHECK(atomic_load(&uploads[i].sent));
  uv_sleep(200); /* the server has read the partial bodies */
}

static void test_close_partial_body(void) { run(script_partial_body); }

/* A client that sends pipelined requests and never reads the answers: the server's writes
 * stall on a full socket (libh2o has no write timeout), which must not hold the close back. */
static void script_stalled_reader(fixture_t *f) {
  f->raw = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(f->raw, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", f->plain_port, &sa);
  CO_CHECK_INT(connect(f->raw, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
  static const char req[] = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
  char batch[64 * (sizeof(req) - 1)];
  for (size_t i = 0; i < 64; i++)
    memcpy(batch + i * (sizeof(req) - 1), req, sizeof(req) - 1);
  /* until the server no longer takes requests for a while: its answers fill both buffers */
  int stalled_ms = 0;
  for (int i = 0; i < 4000 && stalled_ms < 500; i++) {
    ssize_t n = send(f->raw, batch, sizeof(batch), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      stalled_ms = 0;
      continue;
    }
    uv_sleep(10);
    stalled_ms += 10;
  }
  CO_CHECK_INT(stalled_ms, >=, 500);
}

static void test_close_stalled_reader(void) { run(script_stalled_reader); }

static int open_fds(void) {
  uv_fs_t req;
  int n = uv_fs_scandir(NULL, &req, "/proc/self/fd", 0, NULL);
  uv_fs_req_cleanup(&req);
  return n;
}

/* TLS clients that reset their connection (RST) in the middle of a request: libh2o leaves such
 * a connection dead (see sweep_dead in the server); the server releases it within two sweeps,
 * and a close later does not wait for it. */
static void script_reset_tls(fixture_t *f) {
  SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
  int before = open_fds();
  for (int i = 0; i < 5; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", f->tls_port, &sa);
    CO_CHECK_INT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    SSL *ssl = SSL_new(cctx);
    SSL_set_fd(ssl, fd);
    CO_CHECK_INT(SSL_connect(ssl), ==, 1);
    static const char part[] = "GET /hello HTTP/1.1\r\nHost: t\r\n";
    CO_CHECK_INT(SSL_write(ssl, part, sizeof(part) - 1), ==, (int)sizeof(part) - 1);
    uv_sleep(50); /* the server has read it and waits for the rest */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    SSL_free(ssl);
    close(fd); /* RST */
  }
  SSL_CTX_free(cctx);
  /* every server-side socket is released within two sweeps */
  int after = 0;
  for (int t = 0; t < 40 && (after = open_fds()) > before; t++)
    uv_sleep(100);
  CO_CHECK_INT(after, <=, before);
}

static void test_reset_tls_released(void) { run(script_reset_tls); }

/* ---- certificate rotation while TLS handshakes are in flight ---- */

/* The server rotates its certificate every millisecond among ROT_CERTS while client threads
 * open connections, each in one of three ways: ClientHello at once, a pause (rotations happen
 * while the server handshakes with the context current at accept), then the rest of the
 * handshake and a request; or nothing sent until a dozen rotations have passed (libh2o makes
 * the connection's SSL from the accept-time context only when the first bytes arrive), then
 * the same; or a ClientHello and then nothing (the server frees the SSL). Most handshakes
 * complete on a context replaced while they ran: under ASan, a context freed before every
 * connection accepted with it is gone shows here as a use-after-free. */
#define ROT_CERTS 4
#define ROT_CLIENTS 4
#define ROT_CONNS 40

typedef struct {
  uv_loop_t loop;
  co_http_server_t srv;
  uv_timer_t rotate;
  uv_async_t done;
  pem_t certs[ROT_CERTS];
  int port;
  atomic_int rotations; /* certificates installed after the first */
  atomic_int clients_left;
  atomic_int handshakes, abandoned, stale, answered, failures;
} rot_t;

static void on_rotate(uv_timer_t *t) {
  rot_t *r = t->data;
  int n = atomic_load(&r->rotations) + 1;
  CO_CHECK_INT(
      co_http_server_set_cert(&r->srv, r->certs[n % ROT_CERTS].cert, r->certs[n % ROT_CERTS].key),
      ==, 0);
  atomic_store(&r->rotations, n);
}

static void on_rot_done(uv_async_t *a) {
  rot_t *r = a->data;
  uv_close((uv_handle_t *)&r->rotate, NULL);
  uv_close((uv_handle_t *)&r->done, NULL);
  co_http_server_close(&r->srv, NULL);
}

/* Index of the served certificate (its CN is "rot-<i>"), or -1. */
static int served_cert(SSL *ssl) {
  X509 *peer = SSL_get1_peer_certificate(ssl);
  if (peer == NULL)
    return -1;
  char cn[64] = "";
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
  X509_free(peer);
  return strncmp(cn, "rot-", 4) == 0 ? cn[4] - '0' : -1;
}

static void set_blocking(int fd, int blocking) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK);
}

static void rot_connection(rot_t *r, SSL_CTX *cctx, int i) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", r->port, &sa);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    atomic_fetch_add(&r->failures, 1);
    close(fd);
    return;
  }
  if (i % 5 == 3) { /* silent until the accept-time context is a dozen rotations old */
    int from = atomic_load(&r->rotations);
    for (int t = 0; t < 2000 && atomic_load(&r->rotations) < from + 12; t++)
      uv_sleep(1);
  }
  SSL *ssl = SSL_new(cctx);
  SSL_set_fd(ssl, fd);
  set_blocking(fd, 0);
  /* sends the ClientHello, then usually wants the server's answer (a fast server may have
   * answered already: the handshake then completes at once) */
  int rc = SSL_connect(ssl);
  uv_sleep((unsigned)(i % 3)); /* rotations happen meanwhile */
  if (i % 5 == 4) {
    atomic_fetch_add(&r->abandoned, 1);
    goto out;
  }
  set_blocking(fd, 1);
  if (rc != 1 && SSL_connect(ssl) != 1) {
    atomic_fetch_add(&r->failures, 1);
    goto out;
  }
  atomic_fetch_add(&r->handshakes, 1);
  int served = served_cert(ssl), now = atomic_load(&r->rotations);
  CO_CHECK(served >= 0);
  /* the context current now is now's or, during a rotation, the next one */
  if (served != now % ROT_CERTS && served != (now + 1) % ROT_CERTS)
    atomic_fetch_add(&r->stale, 1);
  /* the connection serves on, its context long replaced */
  static const char req[] = "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  char buf[1024];
  size_t len = 0;
  int n;
  if (SSL_write(ssl, req, sizeof(req) - 1) == (int)sizeof(req) - 1)
    while (len < sizeof(buf) - 1 &&
           (n = SSL_read(ssl, buf + len, (int)(sizeof(buf) - 1 - len))) > 0)
      len += (size_t)n;
  buf[len] = '\0';
  if (strstr(buf, "HTTP/1.1 200") != NULL && strstr(buf, "hello") != NULL)
    atomic_fetch_add(&r->answered, 1);
out:
  SSL_free(ssl);
  close(fd);
}

static void *rot_client(void *arg) {
  rot_t *r = arg;
  SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
  for (int i = 0; i < ROT_CONNS; i++)
    rot_connection(r, cctx, i);
  SSL_CTX_free(cctx);
  if (atomic_fetch_sub(&r->clients_left, 1) == 1)
    uv_async_send(&r->done);
  return NULL;
}

static void test_rotation_during_handshakes(void) {
  static rot_t r;
  memset(&r, 0, sizeof(r));
  for (int i = 0; i < ROT_CERTS; i++) {
    char cn[16];
    snprintf(cn, sizeof(cn), "rot-%d", i);
    r.certs[i] = make_cert(cn, 100 + i);
  }
  uv_loop_init(&r.loop);
  CO_CHECK_INT(co_http_server_init(&r.loop, &r.srv), ==, 0);
  CO_CHECK_INT(co_http_server_route(&r.srv, "/hello", NULL, h_hello, NULL), ==, 0);
  co_http_tls_t tls = {r.certs[0].cert, r.certs[0].key};
  CO_CHECK_INT(co_http_server_listen(&r.srv, "127.0.0.1:0", &tls), ==, 0);
  r.port = co_http_server_port(&r.srv, 0);
  uv_timer_init(&r.loop, &r.rotate);
  r.rotate.data = &r;
  uv_timer_start(&r.rotate, on_rotate, 1, 1);
  uv_async_init(&r.loop, &r.done, on_rot_done);
  r.done.data = &r;
  atomic_store(&r.clients_left, ROT_CLIENTS);
  pthread_t th[ROT_CLIENTS];
  for (int i = 0; i < ROT_CLIENTS; i++)
    pthread_create(&th[i], NULL, rot_client, &r);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  for (int i = 0; i < ROT_CLIENTS; i++)
    pthread_join(th[i], NULL);
  CO_CHECK(r.srv.impl == NULL);
  CO_CHECK_INT(uv_loop_close(&r.loop), ==, 0);
  int total = ROT_CLIENTS * ROT_CONNS;
  fprintf(stderr, "# rotations %d, handshakes %d (%d on a replaced context), abandoned %d\n",
          atomic_load(&r.rotations), atomic_load(&r.handshakes), atomic_load(&r.stale),
          atomic_load(&r.abandoned));
  CO_CHECK_INT(atomic_load(&r.failures), ==, 0);
  CO_CHECK_INT(atomic_load(&r.abandoned), ==, total / 5);
  CO_CHECK_INT(atomic_load(&r.handshakes), ==, total - total / 5);
  CO_CHECK_INT(atomic_load(&r.answered), ==, atomic_load(&r.handshakes));
  CO_CHECK_INT(atomic_load(&r.rotations), >=, 50);
  /* the test is only worth something when handshakes do outlive their context's turn */
  CO_CHECK_INT(atomic_load(&r.stale), >=, total / 10);
  for (int i = 0; i < ROT_CERTS; i++)
    pem_free(&r.certs[i]);
}

static void test_close_unused(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  co_http_server_t srv;
  CO_CHECK_INT(co_http_server_init(&loop, &srv), ==, 0);
  co_http_server_close(&srv, NULL);
  co_http_server_close(&srv, NULL); /* ignored */
  uv_run(&loop, UV_RUN_DEFAULT);
  CO_CHECK(srv.impl == NULL);
  CO_CHECK_INT(uv_loop_close(&loop), ==, 0);
}

CO_TEST_MAIN(CO_TEST(test_routes), CO_TEST(test_cert_swap), CO_TEST(test_close_idle),
             CO_TEST(test_close_partial_body), CO_TEST(test_close_stalled_reader),
             CO_TEST(test_reset_tls_released), CO_TEST(test_rotation_during_handshakes),
             CO_TEST(test_close_unused))
