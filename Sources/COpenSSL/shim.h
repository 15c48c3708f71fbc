/// The system OpenSSL (libssl-dev 3.x) for CairnTLS. Cairn uses the
/// distribution's OpenSSL, never BoringSSL, so operators get its security
/// updates, FIPS provider and crypto policy. OpenSSL exposes several APIs as
/// function-like macros, which Swift cannot import; the small inline wrappers
/// below give them real function signatures.
#ifndef CAIRN_COPENSSL_SHIM_H
#define CAIRN_COPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>

static inline int cairn_SSL_CTX_set_min_proto_version(SSL_CTX *context, int version) {
    return (int)SSL_CTX_set_min_proto_version(context, version);
}

static inline int cairn_SSL_CTX_set_max_proto_version(SSL_CTX *context, int version) {
    return (int)SSL_CTX_set_max_proto_version(context, version);
}

static inline long cairn_SSL_CTX_set_options(SSL_CTX *context, uint64_t options) {
    return (long)SSL_CTX_set_options(context, options);
}

static inline int cairn_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

static inline size_t cairn_BIO_pending(BIO *bio) {
    return (size_t)BIO_pending(bio);
}

static inline int cairn_BIO_set_mem_eof_return(BIO *bio, int value) {
    return (int)BIO_set_mem_eof_return(bio, value);
}

static inline uint64_t cairn_SSL_OP_NO_RENEGOTIATION(void) {
    return (uint64_t)SSL_OP_NO_RENEGOTIATION;
}

static inline uint64_t cairn_SSL_OP_NO_COMPRESSION(void) {
    return (uint64_t)SSL_OP_NO_COMPRESSION;
}

static inline uint64_t cairn_SSL_OP_CIPHER_SERVER_PREFERENCE(void) {
    return (uint64_t)SSL_OP_CIPHER_SERVER_PREFERENCE;
}

static inline int cairn_SSL_CTX_set_session_cache_mode(SSL_CTX *context, long mode) {
    return (int)SSL_CTX_set_session_cache_mode(context, mode);
}

/// Returns the SAN entries of a certificate as a stack the caller frees with
/// `cairn_GENERAL_NAMES_free`, or NULL when there is no SAN extension.
static inline GENERAL_NAMES *cairn_X509_subject_alt_names(X509 *certificate) {
    return (GENERAL_NAMES *)X509_get_ext_d2i(certificate, NID_subject_alt_name, NULL, NULL);
}

static inline void cairn_GENERAL_NAMES_free(GENERAL_NAMES *names) {
    GENERAL_NAMES_free(names);
}

static inline int cairn_GENERAL_NAMES_count(GENERAL_NAMES *names) {
    return sk_GENERAL_NAME_num(names);
}

static inline GENERAL_NAME *cairn_GENERAL_NAMES_at(GENERAL_NAMES *names, int index) {
    return sk_GENERAL_NAME_value(names, index);
}

/// The SAN entry's kind (GEN_DNS, GEN_IPADD, GEN_URI...) and its raw bytes;
/// for an IP address the bytes are the 4 or 16 octets.
static inline int cairn_GENERAL_NAME_type(const GENERAL_NAME *name) {
    return name->type;
}

static inline const unsigned char *cairn_GENERAL_NAME_data(const GENERAL_NAME *name, int *length) {
    const ASN1_STRING *value = NULL;
    switch (name->type) {
    case GEN_DNS: value = name->d.dNSName; break;
    case GEN_URI: value = name->d.uniformResourceIdentifier; break;
    case GEN_IPADD: value = name->d.iPAddress; break;
    case GEN_EMAIL: value = name->d.rfc822Name; break;
    default: *length = 0; return NULL;
    }
    *length = ASN1_STRING_length(value);
    return ASN1_STRING_get0_data(value);
}

#endif
