// net/tls/tls.cc
//
// The memory-BIO design, step by step:
//   1. Each SSL object gets two memory BIOs: `rbio` (ciphertext from the
//      network, which we fill) and `wbio` (ciphertext for the network,
//      which we empty). Both return "retry" when empty, so OpenSSL reports
//      SSL_ERROR_WANT_READ instead of end of stream.
//   2. Every SSL call runs under ssl_mu. Whatever it left in wbio is taken
//      out before ssl_mu is released, and written to the TcpStream under
//      write_mu, which is taken before ssl_mu is released: records reach
//      the socket in the order OpenSSL made them, and no mutex other than
//      write_mu is held across socket I/O.
//   3. SSL_ERROR_WANT_READ: read from the TcpStream (parking the fiber),
//      put the bytes into rbio, call again. With memory BIOs OpenSSL never
//      wants to write: wbio grows, and step 2 empties it after each call.
//   4. The handshake runs the same loop with read and write deadlines on
//      the socket, cleared afterwards.
#include "net/tls/tls.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <mutex>
#include <utility>

#include "runtime/platform/check.h"
#include "sync/mutex.h"

namespace weft::tls {

namespace {

constexpr size_t kRecord = 16 * 1024;

// openssl_errors() drains OpenSSL's error queue of this thread into text.
std::string openssl_errors() {
  std::string out;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error recorded" : out;
}

absl::Status invalid(std::string_view what) {
  return absl::InvalidArgumentError("tls::Context: " + std::string(what) + ": " + openssl_errors());
}

std::vector<unsigned char> alpn_wire(const std::vector<std::string>& protos) {
  std::vector<unsigned char> wire;
  for (const std::string& p : protos) {
    if (p.empty() || p.size() > 255) continue;
    wire.push_back(static_cast<unsigned char>(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  return wire;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

absl::Status add_ca_pem(SSL_CTX* ctx, const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return invalid("ca_pem");
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
    ++added;
  }
  BIO_free(bio);
  ERR_clear_error();  // the read that ended the loop
  if (added == 0) return absl::InvalidArgumentError("tls::Context: ca_pem holds no PEM certificate");
  return absl::OkStatus();
}

absl::Status use_chain_pem(SSL_CTX* ctx, const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return invalid("cert_chain_pem");
  X509* leaf = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  if (leaf == nullptr || SSL_CTX_use_certificate(ctx, leaf) != 1) {
    X509_free(leaf);
    BIO_free(bio);
    return invalid("cert_chain_pem: no usable certificate");
  }
  X509_free(leaf);
  while (X509* extra = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {  // takes ownership on success
      X509_free(extra);
      BIO_free(bio);
      return invalid("cert_chain_pem: chain certificate");
    }
  }
  ERR_clear_error();
  BIO_free(bio);
  return absl::OkStatus();
}

absl::Status use_key_pem(SSL_CTX* ctx, const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return invalid("key_pem");
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) return invalid("key_pem: no usable private key");
  int ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (ok != 1) return invalid("key_pem");
  return absl::OkStatus();
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void* arg) {
  auto* wire = static_cast<std::vector<unsigned char>*>(arg);
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, wire->data(), static_cast<unsigned>(wire->size()), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no common protocol: go on without ALPN
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// A context with what both sides share: TLS 1.2 at least, no renegotiation.
SSL_CTX* new_ctx(const SSL_METHOD* method) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (ctx == nullptr) return nullptr;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  return ctx;
}

}  // namespace

// ---------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------

Context::Context(SSL_CTX* ctx, bool server, bool verify, std::vector<unsigned char> alpn)
    : ctx_(ctx), server_(server), verify_(verify), alpn_wire_(std::move(alpn)) {}

Context::~Context() { SSL_CTX_free(ctx_); }

absl::StatusOr<std::shared_ptr<Context>> Context::client(const ClientOptions& opts) {
  SSL_CTX* ctx = new_ctx(TLS_client_method());
  if (ctx == nullptr) return invalid("SSL_CTX_new");
  std::shared_ptr<Context> c(new Context(ctx, false, opts.verify_peer, alpn_wire(opts.alpn)));
  if (opts.verify_peer) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!opts.ca_file.empty() && SSL_CTX_load_verify_locations(ctx, opts.ca_file.c_str(), nullptr) != 1) {
      return invalid("ca_file " + opts.ca_file);
    }
    if (!opts.ca_pem.empty()) {
      if (absl::Status s = add_ca_pem(ctx, opts.ca_pem); !s.ok()) return s;
    }
    if (opts.ca_file.empty() && opts.ca_pem.empty() && SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return invalid("the system trust store");
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!opts.cert_chain_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, opts.cert_chain_file.c_str()) != 1) {
      return invalid("cert_chain_file " + opts.cert_chain_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, opts.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return invalid("key_file " + opts.key_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) return invalid("the key does not match the certificate");
  }
  if (!c->alpn_wire_.empty() &&
      SSL_CTX_set_alpn_protos(ctx, c->alpn_wire_.data(), static_cast<unsigned>(c->alpn_wire_.size())) != 0) {
    return invalid("alpn");
  }
  return c;
}

absl::StatusOr<std::shared_ptr<Context>> Context::server(const ServerOptions& opts) {
  SSL_CTX* ctx = new_ctx(TLS_server_method());
  if (ctx == nullptr) return invalid("SSL_CTX_new");
  std::shared_ptr<Context> c(new Context(ctx, true, opts.require_client_cert, alpn_wire(opts.alpn)));
  if (!opts.cert_chain_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, opts.cert_chain_file.c_str()) != 1) {
      return invalid("cert_chain_file " + opts.cert_chain_file);
    }
  } else if (!opts.cert_chain_pem.empty()) {
    if (absl::Status s = use_chain_pem(ctx, opts.cert_chain_pem); !s.ok()) return s;
  } else {
    return absl::InvalidArgumentError("tls::Context::server: no certificate (cert_chain_file or cert_chain_pem)");
  }
  if (!opts.key_file.empty()) {
    if (SSL_CTX_use_PrivateKey_file(ctx, opts.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return invalid("key_file " + opts.key_file);
    }
  } else if (!opts.key_pem.empty()) {
    if (absl::Status s = use_key_pem(ctx, opts.key_pem); !s.ok()) return s;
  } else {
    return absl::InvalidArgumentError("tls::Context::server: no private key (key_file or key_pem)");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) return invalid("the key does not match the certificate");
  if (opts.require_client_cert) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    if (opts.client_ca_file.empty() ||
        SSL_CTX_load_verify_locations(ctx, opts.client_ca_file.c_str(), nullptr) != 1) {
      return invalid("client_ca_file '" + opts.client_ca_file + "'");
    }
  }
  if (!c->alpn_wire_.empty()) SSL_CTX_set_alpn_select_cb(ctx, select_alpn, &c->alpn_wire_);
  return c;
}

// ---------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------

}  // namespace weft::tls

namespace weft::internal {

struct TlsState {
  net::TcpStream tcp;
  std::shared_ptr<tls::Context> ctx;
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;  // network -> OpenSSL
  BIO* wbio = nullptr;  // OpenSSL -> network
  Mutex ssl_mu;         // guards ssl and both BIOs
  Mutex write_mu;       // orders ciphertext writes to tcp
  std::unique_ptr<char[]> in = std::make_unique<char[]>(tls::kRecord + 512);  // the reader's

  ~TlsState() { SSL_free(ssl); }  // frees the BIOs too

  // take_output() empties wbio. Requires ssl_mu.
  std::string take_output() {
    std::string out;
    size_t pending = BIO_ctrl_pending(wbio);
    if (pending > 0) {
      out.resize(pending);
      int n = BIO_read(wbio, out.data(), static_cast<int>(pending));
      out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    }
    return out;
  }

  // failure() turns the SSL error of a failed call into a status. OpenSSL
  // records a verify result even when it was told not to verify: only a
  // verifying context's is a reason to fail.
  absl::Status failure(std::string_view op, int err) {
    if (ctx->verifies_peer() && SSL_get_verify_result(ssl) != X509_V_OK) {
      ERR_clear_error();
      return absl::UnauthenticatedError("tls: " + std::string(op) + ": certificate verify failed: " +
                                        X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
    }
    std::string why = err == SSL_ERROR_SYSCALL ? "unexpected end of the connection" : tls::openssl_errors();
    ERR_clear_error();
    return absl::UnavailableError("tls: " + std::string(op) + ": " + why);
  }
};

}  // namespace weft::internal

namespace weft::tls {

using State = internal::TlsState;

Stream::Stream() = default;
Stream::~Stream() = default;
Stream::Stream(Stream&&) noexcept = default;
Stream& Stream::operator=(Stream&&) noexcept = default;
Stream::Stream(std::unique_ptr<internal::TlsState> state) : state_(std::move(state)) {}

namespace {
absl::Status not_open(std::string_view op) {
  return absl::FailedPreconditionError("tls::Stream::" + std::string(op) + ": not connected");
}
}  // namespace

// Runs fn() (an SSL call) under ssl_mu, then writes what it produced, in
// order, under write_mu. Returns {result, SSL_get_error} or the write error.
template <class Fn>
static absl::StatusOr<std::pair<int, int>> run_ssl(State& st, Fn fn) {
  std::unique_lock ssl_lock(st.ssl_mu);
  ERR_clear_error();
  int r = fn();
  int err = r > 0 ? SSL_ERROR_NONE : SSL_get_error(st.ssl, r);
  std::string out = st.take_output();
  if (out.empty()) return std::make_pair(r, err);
  std::unique_lock write_lock(st.write_mu);
  ssl_lock.unlock();
  absl::Status s = st.tcp.write_all(out);
  if (!s.ok()) return s;
  return std::make_pair(r, err);
}

// feed() reads ciphertext from the socket into rbio. 0 bytes: end of stream.
static absl::StatusOr<size_t> feed(State& st) {
  absl::StatusOr<size_t> n = st.tcp.read(std::span<char>(st.in.get(), kRecord + 512));
  if (!n.ok() || *n == 0) return n;
  std::unique_lock lock(st.ssl_mu);
  BIO_write(st.rbio, st.in.get(), static_cast<int>(*n));
  return n;
}

absl::StatusOr<Stream> Stream::handshake(net::TcpStream tcp, std::shared_ptr<Context> ctx, bool server,
                                         std::string_view hostname, absl::Duration timeout) {
  using State = internal::TlsState;
  const char* op = server ? "accept" : "connect";
  if (ctx == nullptr) return absl::InvalidArgumentError(std::string("tls::Stream::") + op + ": no context");
  if (ctx->is_server() != server) {
    return absl::InvalidArgumentError(std::string("tls::Stream::") + op + ": the context is for the " +
                                      (ctx->is_server() ? "server" : "client") + " side");
  }
  auto st = std::make_unique<State>();
  st->tcp = std::move(tcp);
  st->ctx = std::move(ctx);
  st->ssl = SSL_new(st->ctx->ctx_);
  st->rbio = BIO_new(BIO_s_mem());
  st->wbio = BIO_new(BIO_s_mem());
  if (st->ssl == nullptr || st->rbio == nullptr || st->wbio == nullptr) {
    BIO_free(st->rbio);
    BIO_free(st->wbio);
    st->rbio = st->wbio = nullptr;
    return absl::ResourceExhaustedError(std::string("tls::Stream::") + op + ": " + openssl_errors());
  }
  BIO_set_mem_eof_return(st->rbio, -1);  // empty means "retry", not end of stream
  BIO_set_mem_eof_return(st->wbio, -1);
  SSL_set_bio(st->ssl, st->rbio, st->wbio);
  if (server) {
    SSL_set_accept_state(st->ssl);
  } else {
    SSL_set_connect_state(st->ssl);
    std::string host(hostname);
    if (!host.empty() && !is_ip_literal(host)) SSL_set_tlsext_host_name(st->ssl, host.c_str());
    if (st->ctx->verifies_peer()) {
      if (host.empty()) {
        return absl::InvalidArgumentError("tls::Stream::connect: a verifying context needs the host name");
      }
      if (is_ip_literal(host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(st->ssl), host.c_str());
      } else {
        SSL_set1_host(st->ssl, host.c_str());
      }
    }
  }
  const absl::Time deadline = absl::Now() + timeout;
  if (absl::Status s = st->tcp.set_read_deadline(deadline); !s.ok()) return s;
  if (absl::Status s = st->tcp.set_write_deadline(deadline); !s.ok()) return s;
  const std::string prefix = std::string("tls::Stream::") + op + ": handshake: ";
  for (;;) {
    auto r = run_ssl(*st, [&] { return SSL_do_handshake(st->ssl); });
    if (!r.ok()) return absl::Status(r.status().code(), prefix + std::string(r.status().message()));
    if (r->first == 1) break;
    if (r->second != SSL_ERROR_WANT_READ) {
      std::unique_lock lock(st->ssl_mu);
      absl::Status s = st->failure("handshake", r->second);
      return absl::Status(s.code(), std::string("tls::Stream::") + op + ": " + std::string(s.message()).substr(5));
    }
    absl::StatusOr<size_t> n = feed(*st);
    if (!n.ok()) return absl::Status(n.status().code(), prefix + std::string(n.status().message()));
    if (*n == 0) return absl::UnavailableError(prefix + "the peer closed the connection");
  }
  if (absl::Status s = st->tcp.set_read_deadline(absl::InfiniteFuture()); !s.ok()) return s;
  if (absl::Status s = st->tcp.set_write_deadline(absl::InfiniteFuture()); !s.ok()) return s;
  return Stream(std::move(st));
}

absl::StatusOr<Stream> Stream::connect(net::TcpStream tcp, std::shared_ptr<Context> ctx, std::string_view hostname,
                                       absl::Duration handshake_timeout) {
  return handshake(std::move(tcp), std::move(ctx), false, hostname, handshake_timeout);
}

absl::StatusOr<Stream> Stream::accept(net::TcpStream tcp, std::shared_ptr<Context> ctx,
                                      absl::Duration handshake_timeout) {
  return handshake(std::move(tcp), std::move(ctx), true, "", handshake_timeout);
}

absl::StatusOr<size_t> Stream::read(std::span<char> buf) {
  if (!state_) return not_open("read");
  if (buf.empty()) return 0;
  State& st = *state_;
  const int want = static_cast<int>(std::min<size_t>(buf.size(), 1 << 30));
  for (;;) {
    auto r = run_ssl(st, [&] { return SSL_read(st.ssl, buf.data(), want); });
    if (!r.ok()) return r.status();
    if (r->first > 0) return static_cast<size_t>(r->first);
    if (r->second == SSL_ERROR_ZERO_RETURN) return 0;  // close_notify
    if (r->second != SSL_ERROR_WANT_READ) {
      std::unique_lock lock(st.ssl_mu);
      return st.failure("read", r->second);
    }
    absl::StatusOr<size_t> n = feed(st);
    if (!n.ok()) return n.status();
    if (*n == 0) return 0;  // TCP end of stream without close_notify
  }
}

absl::StatusOr<size_t> Stream::write(std::string_view data) {
  if (!state_) return not_open("write");
  if (data.empty()) return 0;
  State& st = *state_;
  const int n = static_cast<int>(std::min(data.size(), kRecord));
  auto r = run_ssl(st, [&] { return SSL_write(st.ssl, data.data(), n); });
  if (!r.ok()) return r.status();
  if (r->first <= 0) {
    std::unique_lock lock(st.ssl_mu);
    return st.failure("write", r->second);
  }
  return static_cast<size_t>(r->first);
}

absl::Status Stream::write_all(std::string_view data) {
  while (!data.empty()) {
    absl::StatusOr<size_t> n = write(data);
    if (!n.ok()) return n.status();
    data.remove_prefix(*n);
  }
  return absl::OkStatus();
}

absl::Status Stream::shutdown() {
  if (!state_) return not_open("shutdown");
  State& st = *state_;
  auto r = run_ssl(st, [&] { return SSL_shutdown(st.ssl); });
  if (!r.ok()) return r.status();
  return st.tcp.shutdown(net::Shutdown::kWrite);
}

absl::Status Stream::close() {
  if (!state_) return absl::OkStatus();
  return state_->tcp.close();
}

bool Stream::is_open() const { return state_ && state_->tcp.is_open(); }

bool Stream::close_notify_received() const {
  if (!state_) return false;
  std::unique_lock lock(state_->ssl_mu);
  return (SSL_get_shutdown(state_->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
}

std::string Stream::alpn_protocol() const {
  if (!state_) return "";
  std::unique_lock lock(state_->ssl_mu);
  const unsigned char* p = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(state_->ssl, &p, &len);
  return p == nullptr ? "" : std::string(reinterpret_cast<const char*>(p), len);
}

std::string Stream::protocol_version() const {
  if (!state_) return "";
  std::unique_lock lock(state_->ssl_mu);
  return SSL_get_version(state_->ssl);
}

absl::Status Stream::set_read_deadline(absl::Time d) {
  return state_ ? state_->tcp.set_read_deadline(d) : not_open("set_read_deadline");
}
absl::Status Stream::set_write_deadline(absl::Time d) {
  return state_ ? state_->tcp.set_write_deadline(d) : not_open("set_write_deadline");
}
void Stream::set_read_timeout(absl::Duration t) {
  if (state_) state_->tcp.set_read_timeout(t);
}
void Stream::set_write_timeout(absl::Duration t) {
  if (state_) state_->tcp.set_write_timeout(t);
}

net::TcpStream& Stream::tcp() {
  WEFT_CHECK(state_ != nullptr, "tls::Stream::tcp() on a stream that is not connected");
  return state_->tcp;
}

}  // namespace weft::tls
