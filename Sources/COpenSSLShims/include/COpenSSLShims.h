// Small C functions for OpenSSL macros and callbacks that Swift cannot import
// or express directly. Each is a thin wrapper; see shims.c.
#ifndef FUSEBOX_OPENSSL_SHIMS_H
#define FUSEBOX_OPENSSL_SHIMS_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/x509v3.h>
#include <openssl/evp.h>
#include <stddef.h>

long fb_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
long fb_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version);
/// Options every Fusebox context uses: no renegotiation, no compression,
/// server cipher preference, no session resumption on renegotiation.
void fb_SSL_CTX_set_fusebox_options(SSL_CTX *ctx);
long fb_SSL_CTX_set_mode_release_buffers(SSL_CTX *ctx);
int fb_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *groups);
/// A server context that resumes no sessions: no session cache, no TLS 1.2
/// tickets, and no TLS 1.3 NewSessionTicket messages after the handshake.
void fb_SSL_CTX_disable_session_resumption(SSL_CTX *ctx);
long fb_SSL_set_tlsext_host_name(SSL *ssl, const char *name);
long fb_BIO_set_mem_eof_return(BIO *bio, int value);

/// Installs a server ALPN callback that selects "h2" and refuses the
/// handshake (no_application_protocol) when the client does not offer it.
void fb_SSL_CTX_select_alpn_h2(SSL_CTX *ctx);

int fb_ERR_GET_LIB(unsigned long error);
int fb_ERR_GET_REASON(unsigned long error);

/// Constants that are macros in OpenSSL's headers.
int fb_TLS1_2_VERSION(void);
int fb_TLS1_3_VERSION(void);
int fb_SSL_VERIFY_PEER(void);
int fb_SSL_VERIFY_FAIL_IF_NO_PEER_CERT(void);

/// Calls `visit` for each DNS (type 2), URI (type 6) and IP (type 7, as text)
/// subject alternative name of `cert`.
void fb_X509_visit_sans(X509 *cert, void (*visit)(int type, const char *value, size_t length, void *context), void *context);
/// Copies the subject common name into `buffer` (NUL-terminated); returns its
/// length, or -1 if there is none.
int fb_X509_common_name(X509 *cert, char *buffer, int capacity);

#endif
