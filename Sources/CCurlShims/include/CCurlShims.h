// libcurl for Fusebox's alert sinks. curl_easy_setopt is variadic, which Swift
// cannot call, so each delivery is one C function here: an HTTPS POST (webhook,
// Slack) and an SMTP submission (e-mail, with STARTTLS and AUTH). Both run
// blocking, on a delivery thread of their own, never on an event loop.
#ifndef FUSEBOX_CCURL_SHIMS_H
#define FUSEBOX_CCURL_SHIMS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What one delivery did.
typedef struct {
    /// libcurl's CURLcode: 0 when the exchange completed (for HTTP, whatever the status).
    int curl_code;
    /// The HTTP status, or the SMTP server's last reply code; 0 if none came.
    long status;
    /// A Retry-After the HTTP server sent, in seconds; -1 if none.
    long retry_after_seconds;
    /// libcurl's message when curl_code is not 0.
    char error[256];
} fb_curl_result;

/// Once per process, before any other call (not thread-safe itself).
int fb_curl_global_init(void);

/// POSTs `body` to `url` (https:// or http://) with `header_count` extra
/// header lines ("Name: value"). `ca_file` (nullable) replaces the system CA
/// bundle. Gives up after `timeout_ms` (connecting included). Returns
/// result->curl_code.
int fb_curl_http_post(const char *url, const char *const *headers, size_t header_count, const char *body, size_t body_length,
                      long timeout_ms, const char *ca_file, fb_curl_result *result);

/// Submits `message` (a complete RFC 5322 message, CRLF line ends) over SMTP
/// at `url` (smtp://host:port or smtps://host:port) from `from` to each of
/// `recipients`. With `require_tls`, a plain smtp:// URL must upgrade with
/// STARTTLS or the submission fails. `username` and `password` (nullable)
/// log in with AUTH. Returns result->curl_code.
int fb_curl_smtp_send(const char *url, const char *username, const char *password, const char *from,
                      const char *const *recipients, size_t recipient_count, const char *message, size_t message_length,
                      int require_tls, long timeout_ms, const char *ca_file, fb_curl_result *result);

#ifdef __cplusplus
}
#endif

#endif
