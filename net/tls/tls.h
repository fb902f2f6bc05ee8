// net/tls/tls.h
//
// TLS on fibers with OpenSSL 3: tls::Context (certificates, trust, verify
// mode, ALPN) and tls::Stream, a TLS connection over a weft TcpStream whose
// calls park the fiber, never the worker:
//
//   auto ctx = weft::tls::Context::client({.ca_file = "ca.pem"});     // StatusOr<shared_ptr>
//   auto tcp = weft::net::TcpStream::connect("example.test", 443);
//   auto tls = weft::tls::Stream::connect(std::move(*tcp), *ctx, "example.test");
//   (void)tls->write_all("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n");
//   char buf[4096];
//   auto n = tls->read(buf);                                          // 0 at end of stream
//
//   auto sctx = weft::tls::Context::server({.cert_chain_file = "cert.pem",
//                                          .key_file = "key.pem"});
//   auto tls = weft::tls::Stream::accept(std::move(accepted.stream), *sctx);
//
// Design: OpenSSL never touches the socket. Each SSL object has two memory
// BIOs; the Stream moves ciphertext between them and the TcpStream with
// ordinary TcpStream::read/write_all, which park the fiber. So
// SSL_ERROR_WANT_READ means "read more from TCP", nothing in net/ had to
// change, and deadlines and close() work exactly as for TcpStream.
//
// Defaults: TLS 1.2 at least; renegotiation off; a client verifies the
// server's chain (against ca_file/ca_pem, or the system store when neither
// is given) and its name (SNI is sent for DNS names; IP addresses are
// checked against the certificate's IP SANs).
//
// Statuses:
//   read() == 0          the peer sent close_notify, or closed the TCP
//                        connection (a missing close_notify is not an error:
//                        HTTP bodies are delimited anyway; see docs/tls.md;
//                        close_notify_received() tells the two apart)
//   kUnauthenticated     certificate verification failed; the message says
//                        why ("certificate has expired", "hostname mismatch",
//                        "self-signed certificate", ...)
//   kUnavailable         a handshake or record failure (the peer is not
//                        speaking TLS, alert received, ...), with OpenSSL's
//                        error text; ECONNRESET as for TcpStream
//   kDeadlineExceeded    the handshake timeout, or a read/write deadline
//   kInvalidArgument     Context: a bad certificate, key or CA file
//   others               from the TcpStream, unchanged (kCancelled on close)
//
// Threads: one reader and one writer may use a Stream at once, as for a
// TcpStream (an internal mutex guards the SSL object; it is never held
// across socket I/O). close() may be called from any fiber.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/tcp.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace weft::internal {
struct TlsState;
}  // namespace weft::internal

namespace weft::tls {

struct ClientOptions {
  // Trust: PEM CA certificates from a file and/or memory; the system store
  // (SSL_CTX_set_default_verify_paths) when both are empty.
  std::string ca_file = "";
  std::string ca_pem = "";
  // false: no chain or name check at all (tests, pinned peers); a warning
  // in the name.
  bool verify_peer = true;
  // A client certificate, if the server asks for one (PEM).
  std::string cert_chain_file = "";
  std::string key_file = "";
  // ALPN protocols offered, most preferred first ("h2", "http/1.1").
  std::vector<std::string> alpn = {};
};

struct ServerOptions {
  // The certificate chain (leaf first) and private key, PEM, from files or
  // memory (one of each).
  std::string cert_chain_file = "";
  std::string key_file = "";
  std::string cert_chain_pem = "";
  std::string key_pem = "";
  // ALPN protocols accepted, most preferred first; empty: no ALPN.
  std::vector<std::string> alpn = {};
  // Ask for and verify a client certificate against these CAs.
  bool require_client_cert = false;
  std::string client_ca_file = "";
};

// Context: the settings shared by many connections (an SSL_CTX). Create
// once, share with std::shared_ptr; thread-safe once created.
class Context {
 public:
  // Context::client() / server()
  //
  // kInvalidArgument with OpenSSL's reason for an unreadable or mismatched
  // certificate, key or CA.
  static absl::StatusOr<std::shared_ptr<Context>> client(const ClientOptions& opts = {});
  static absl::StatusOr<std::shared_ptr<Context>> server(const ServerOptions& opts);

  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  bool is_server() const { return server_; }
  bool verifies_peer() const { return verify_; }
  SSL_CTX* native_handle() const { return ctx_; }

 private:
  Context(SSL_CTX* ctx, bool server, bool verify, std::vector<unsigned char> alpn_wire);
  friend class Stream;
  friend struct internal::TlsState;
  SSL_CTX* ctx_;
  bool server_;
  bool verify_;
  std::vector<unsigned char> alpn_wire_;  // server: the accepted list, ALPN wire format
};

class Stream {
 public:
  Stream();  // not connected: every call fails with kFailedPrecondition
  ~Stream();
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;

  // Stream::connect()
  //
  // Runs the client handshake over `tcp`, sending SNI for `hostname` (a
  // DNS name) and checking the certificate against it (a DNS name or an IP
  // address) unless the context does not verify. Fails after
  // `handshake_timeout`. Suspends.
  static absl::StatusOr<Stream> connect(net::TcpStream tcp, std::shared_ptr<Context> ctx,
                                        std::string_view hostname,
                                        absl::Duration handshake_timeout = absl::Seconds(10));
  // Stream::accept()
  //
  // Runs the server handshake over an accepted `tcp`. Suspends.
  static absl::StatusOr<Stream> accept(net::TcpStream tcp, std::shared_ptr<Context> ctx,
                                       absl::Duration handshake_timeout = absl::Seconds(10));

  // Stream::read()
  //
  // Reads up to buf.size() bytes of plaintext, parking until at least one
  // is available; 0 at end of stream. Suspends.
  absl::StatusOr<size_t> read(std::span<char> buf);
  // Stream::write() / write_all()
  //
  // Encrypts and sends data; write() sends at most 16 KiB (one record)
  // and returns how many plaintext bytes went. Suspends.
  absl::StatusOr<size_t> write(std::string_view data);
  absl::Status write_all(std::string_view data);

  // Stream::shutdown()
  //
  // Sends close_notify and shuts down the TCP write side; reads go on.
  // Suspends.
  absl::Status shutdown();
  // close() closes the TCP connection (no close_notify), waking parked
  // fibers with kCancelled. Idempotent. Suspends.
  absl::Status close();
  bool is_open() const;
  // close_notify_received() is true once the peer's close_notify has
  // arrived. After read() returned 0 it tells a clean end from a TCP end
  // without close_notify, which data delimited by the close must treat as
  // a possible truncation.
  bool close_notify_received() const;

  // The negotiated ALPN protocol ("" if none), TLS version ("TLSv1.3").
  std::string alpn_protocol() const;
  std::string protocol_version() const;

  // Deadlines and timeouts, as for TcpStream (they apply to the socket).
  absl::Status set_read_deadline(absl::Time deadline);
  absl::Status set_write_deadline(absl::Time deadline);
  void set_read_timeout(absl::Duration timeout);
  void set_write_timeout(absl::Duration timeout);

  net::TcpStream& tcp();

 private:
  explicit Stream(std::unique_ptr<internal::TlsState> state);
  static absl::StatusOr<Stream> handshake(net::TcpStream tcp, std::shared_ptr<Context> ctx, bool server,
                                          std::string_view hostname, absl::Duration timeout);
  std::unique_ptr<internal::TlsState> state_;
};

}  // namespace weft::tls
