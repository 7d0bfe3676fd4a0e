#include "CCurlShims.h"

#include <curl/curl.h>
#include <string.h>

int fb_curl_global_init(void) { return (int)curl_global_init(CURL_GLOBAL_DEFAULT); }

/// Replies are not needed: read and dropped.
static size_t discard(char *data, size_t size, size_t count, void *user) {
    (void)data;
    (void)user;
    return size * count;
}

/// A handle for one delivery, with `result` cleared; NULL (and `result` saying
/// so) if libcurl could not make one.
static CURL *start(fb_curl_result *result, char *errbuf) {
    result->curl_code = 0;
    result->status = 0;
    result->retry_after_seconds = -1;
    result->error[0] = 0;
    errbuf[0] = 0;
    CURL *curl = curl_easy_init();
    if (!curl) {
        result->curl_code = (int)CURLE_FAILED_INIT;
        strcpy(result->error, "curl_easy_init failed");
    }
    return curl;
}

static void finish(CURL *curl, CURLcode code, char *errbuf, fb_curl_result *result) {
    result->curl_code = (int)code;
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    result->status = status;
    curl_off_t retry = -1;
    if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry) == CURLE_OK && retry > 0) result->retry_after_seconds = (long)retry;
    if (code != CURLE_OK) {
        const char *message = errbuf[0] ? errbuf : curl_easy_strerror(code);
        strncpy(result->error, message, sizeof(result->error) - 1);
        result->error[sizeof(result->error) - 1] = 0;
    }
}

static void common(CURL *curl, long timeout_ms, const char *ca_file, char *errbuf) {
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (ca_file) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file);
}

int fb_curl_http_post(const char *url, const char *const *headers, size_t header_count, const char *body, size_t body_length,
                      long timeout_ms, const char *ca_file, fb_curl_result *result) {
    char errbuf[CURL_ERROR_SIZE];
    CURL *curl = start(result, errbuf);
    if (!curl) return result->curl_code;
    struct curl_slist *list = NULL;
    for (size_t i = 0; i < header_count; i++) {
        struct curl_slist *next = curl_slist_append(list, headers[i]);
        if (!next) break;
        list = next;
    }
    // Without this, libcurl waits for "100 Continue" before a larger body.
    struct curl_slist *next = curl_slist_append(list, "Expect:");
    if (next) list = next;
    common(curl, timeout_ms, ca_file, errbuf);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_length);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    CURLcode code = curl_easy_perform(curl);
    finish(curl, code, errbuf, result);
    curl_slist_free_all(list);
    curl_easy_cleanup(curl);
    return result->curl_code;
}

struct upload {
    const char *data;
    size_t left;
};

static size_t read_message(char *buffer, size_t size, size_t count, void *user) {
    struct upload *u = (struct upload *)user;
    size_t n = size * count;
    if (n > u->left) n = u->left;
    memcpy(buffer, u->data, n);
    u->data += n;
    u->left -= n;
    return n;
}

int fb_curl_smtp_send(const char *url, const char *username, const char *password, const char *from,
                      const char *const *recipients, size_t recipient_count, const char *message, size_t message_length,
                      int require_tls, long timeout_ms, const char *ca_file, fb_curl_result *result) {
    char errbuf[CURL_ERROR_SIZE];
    CURL *curl = start(result, errbuf);
    if (!curl) return result->curl_code;
    struct curl_slist *rcpt = NULL;
    for (size_t i = 0; i < recipient_count; i++) {
        struct curl_slist *next = curl_slist_append(rcpt, recipients[i]);
        if (!next) break;
        rcpt = next;
    }
    struct upload u = {message, message_length};
    common(curl, timeout_ms, ca_file, errbuf);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    if (require_tls) curl_easy_setopt(curl, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    if (username) curl_easy_setopt(curl, CURLOPT_USERNAME, username);
    if (password) curl_easy_setopt(curl, CURLOPT_PASSWORD, password);
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_message);
    curl_easy_setopt(curl, CURLOPT_READDATA, &u);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    CURLcode code = curl_easy_perform(curl);
    finish(curl, code, errbuf, result);
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(curl);
    return result->curl_code;
}
