// net/tls/test_certs.h
//
// Certificates made at test time with OpenSSL's API, for TLS and HTTPS
// tests: a CA, leaves it signed (any validity window, any subjectAltName),
// and self-signed ones. Test-only.
#pragma once

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

namespace weft::tls::testing {

struct KeyCert {
  std::string key_pem;
  std::string cert_pem;
  EVP_PKEY* key = nullptr;  // owned; for signing leaves
  X509* cert = nullptr;     // owned
  ~KeyCert() {
    EVP_PKEY_free(key);
    X509_free(cert);
  }
};

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  REQUIRE(ext != nullptr);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// make_cert() makes a P-256 key and a certificate for `cn` with `san`
// ("DNS:localhost,IP:127.0.0.1"), valid from now+not_before to
// now+not_after seconds, signed by `issuer` (self-signed if null).
inline std::unique_ptr<KeyCert> make_cert(const char* cn, const char* san, const KeyCert* issuer, long not_before,
                                   long not_after, bool ca) {
  auto kc = std::make_unique<KeyCert>();
  kc->key = EVP_EC_gen("P-256");
  REQUIRE(kc->key != nullptr);
  X509* cert = X509_new();
  kc->cert = cert;
  X509_set_version(cert, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), not_before);
  X509_gmtime_adj(X509_getm_notAfter(cert), not_after);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer->cert) : name);
  X509_set_pubkey(cert, kc->key);
  X509* issuer_cert = issuer ? issuer->cert : cert;
  add_ext(cert, issuer_cert, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (ca) add_ext(cert, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  if (san != nullptr) add_ext(cert, issuer_cert, NID_subject_alt_name, san);
  REQUIRE(X509_sign(cert, issuer ? issuer->key : kc->key, EVP_sha256()) > 0);
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, kc->key, nullptr, nullptr, 0, nullptr, nullptr);
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  kc->key_pem.assign(p, static_cast<size_t>(n));
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, cert);
  n = BIO_get_mem_data(b, &p);
  kc->cert_pem.assign(p, static_cast<size_t>(n));
  BIO_free(b);
  return kc;
}

inline constexpr long kDay = 24 * 3600;

// Pki: a CA, a leaf for localhost/127.0.0.1 signed by it, an expired leaf
// and a self-signed one. pki() makes them once per process.
struct Pki {
  std::unique_ptr<KeyCert> ca = make_cert("weft test CA", nullptr, nullptr, -kDay, 30 * kDay, true);
  std::unique_ptr<KeyCert> leaf =
      make_cert("localhost", "DNS:localhost,IP:127.0.0.1", ca.get(), -kDay, 30 * kDay, false);
  std::unique_ptr<KeyCert> expired =
      make_cert("localhost", "DNS:localhost,IP:127.0.0.1", ca.get(), -10 * kDay, -kDay, false);
  std::unique_ptr<KeyCert> self_signed =
      make_cert("localhost", "DNS:localhost,IP:127.0.0.1", nullptr, -kDay, 30 * kDay, false);
};

inline Pki& pki() {
  static Pki p;
  return p;
}

// tmp_file() writes content to $TEST_TMPDIR/name and returns the path.
inline std::string tmp_file(const std::string& name, const std::string& content) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << content;
  return path;
}

}  // namespace weft::tls::testing
