#include "COpenSSLShims.h"
#include <string.h>
#include <stdio.h>
#include <arpa/inet.h>

long fb_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) { return SSL_CTX_set_min_proto_version(ctx, version); }
long fb_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) { return SSL_CTX_set_max_proto_version(ctx, version); }

void fb_SSL_CTX_set_fusebox_options(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE
                                 | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
}

long fb_SSL_CTX_set_mode_release_buffers(SSL_CTX *ctx) { return SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); }
int fb_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *groups) { return (int)SSL_CTX_set1_groups_list(ctx, groups); }
void fb_SSL_CTX_disable_session_resumption(SSL_CTX *ctx) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
}
long fb_SSL_set_tlsext_host_name(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }
long fb_BIO_set_mem_eof_return(BIO *bio, int value) { return BIO_set_mem_eof_return(bio, value); }

static int select_h2(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                     unsigned int inlen, void *arg) {
    (void)ssl;
    (void)arg;
    static const unsigned char h2[] = {2, 'h', '2'};
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, h2, sizeof(h2), in, inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

void fb_SSL_CTX_select_alpn_h2(SSL_CTX *ctx) { SSL_CTX_set_alpn_select_cb(ctx, select_h2, NULL); }

int fb_ERR_GET_LIB(unsigned long error) { return ERR_GET_LIB(error); }
int fb_ERR_GET_REASON(unsigned long error) { return ERR_GET_REASON(error); }

int fb_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }
int fb_TLS1_3_VERSION(void) { return TLS1_3_VERSION; }
int fb_SSL_VERIFY_PEER(void) { return SSL_VERIFY_PEER; }
int fb_SSL_VERIFY_FAIL_IF_NO_PEER_CERT(void) { return SSL_VERIFY_FAIL_IF_NO_PEER_CERT; }

void fb_X509_visit_sans(X509 *cert, void (*visit)(int, const char *, size_t, void *), void *context) {
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) return;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        if (name->type == GEN_DNS || name->type == GEN_URI) {
            const ASN1_IA5STRING *s = name->type == GEN_DNS ? name->d.dNSName : name->d.uniformResourceIdentifier;
            visit(name->type, (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s), context);
        } else if (name->type == GEN_IPADD) {
            char text[INET6_ADDRSTRLEN] = {0};
            int length = ASN1_STRING_length(name->d.iPAddress);
            const unsigned char *bytes = ASN1_STRING_get0_data(name->d.iPAddress);
            if ((length == 4 && inet_ntop(AF_INET, bytes, text, sizeof(text)))
                || (length == 16 && inet_ntop(AF_INET6, bytes, text, sizeof(text)))) {
                visit(name->type, text, strlen(text), context);
            }
        }
    }
    GENERAL_NAMES_free(names);
}

int fb_X509_common_name(X509 *cert, char *buffer, int capacity) {
    X509_NAME *subject = X509_get_subject_name(cert);
    if (subject == NULL) return -1;
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index < 0) return -1;
    ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
    unsigned char *utf8 = NULL;
    int length = ASN1_STRING_to_UTF8(&utf8, data);
    if (length < 0) return -1;
    int copied = length < capacity - 1 ? length : capacity - 1;
    memcpy(buffer, utf8, (size_t)copied);
    buffer[copied] = 0;
    OPENSSL_free(utf8);
    return copied;
}
