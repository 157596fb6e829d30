/* A stand-in for libWeWorkFinanceSdk_C.so: the C ABI of the vendor's header (spec
 * wecom-archive.md §1), serving a simulated enterprise from files and decrypting with the
 * project's open scheme (§3). Built by scrm_fast.wecom.standin with the system compiler
 * for the tests and the demo; never a replacement for the real library.
 *
 * Environment:
 *   STANDIN_SDK_DATA     directory with chatdata.txt ("<seq> <item JSON>" lines, seq order;
 *                        re-read when it grows) and media/<hex of sdkfileid>
 *   STANDIN_FAIL_EVERY   every Nth GetChatData call fails with STANDIN_FAIL_CODE (10001)
 *   STANDIN_ABORT_MSG    DecryptData aborts the process on a message starting with one of
 *                        these comma-separated prefixes
 *   STANDIN_CORRUPT_MEDIA  a sdkfileid whose second chunk is served with one byte flipped
 *   STANDIN_CHUNK        media chunk size in bytes (default 512 KiB, as the vendor's)
 *   STANDIN_MEDIA_DELAY_MS  each GetMediaData call takes this long (a slow network)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/evp.h>

typedef struct { char *buf; int len; } Slice_t;
typedef struct { char *outindexbuf; int out_len; char *data; int data_len; int is_finish; } MediaData_t;
typedef struct { int inited; } WeWorkFinanceSdk_t;

Slice_t *NewSlice(void) { return calloc(1, sizeof(Slice_t)); }
void FreeSlice(Slice_t *s) { if (s) { free(s->buf); free(s); } }
char *GetContentFromSlice(Slice_t *s) { return s->buf; }
int GetSliceLen(Slice_t *s) { return s->len; }

MediaData_t *NewMediaData(void) { return calloc(1, sizeof(MediaData_t)); }
void FreeMediaData(MediaData_t *m) { if (m) { free(m->outindexbuf); free(m->data); free(m); } }
char *GetOutIndexBuf(MediaData_t *m) { return m->outindexbuf; }
char *GetData(MediaData_t *m) { return m->data; }
int GetIndexLen(MediaData_t *m) { return m->out_len; }
int GetDataLen(MediaData_t *m) { return m->data_len; }
int IsMediaDataFinish(MediaData_t *m) { return m->is_finish; }

WeWorkFinanceSdk_t *NewSdk(void) { return calloc(1, sizeof(WeWorkFinanceSdk_t)); }
void DestroySdk(WeWorkFinanceSdk_t *sdk) { free(sdk); }
int Init(WeWorkFinanceSdk_t *sdk, const char *corpid, const char *secret) {
    if (!sdk || !corpid || !secret) return 10000;
    sdk->inited = 1;
    return 0;
}

/* the feed: the whole chatdata.txt in memory, with the start of each line */
static char *feed;
static size_t feed_size, n_lines;
static size_t *line_at;
static unsigned long long *line_seq;
static long calls;

static const char *data_dir(void) {
    const char *d = getenv("STANDIN_SDK_DATA");
    return d ? d : ".";
}

static int load_feed(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/chatdata.txt", data_dir());
    struct stat st;
    if (stat(path, &st) != 0) return 10001;
    if ((size_t)st.st_size == feed_size && feed) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 10001;
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    /* only whole lines: a writer may be appending */
    while (got > 0 && buf[got - 1] != '\n') got--;
    buf[got] = 0;
    size_t n = 0;
    for (size_t i = 0; i < got; i++) if (buf[i] == '\n') n++;
    size_t *at = malloc((n + 1) * sizeof *at);
    unsigned long long *seq = malloc((n + 1) * sizeof *seq);
    size_t k = 0, start = 0;
    for (size_t i = 0; i < got; i++) {
        if (buf[i] == '\n') {
            at[k] = start;
            seq[k] = strtoull(buf + start, NULL, 10);
            k++;
            start = i + 1;
        }
    }
    free(feed); free(line_at); free(line_seq);
    feed = buf; feed_size = (size_t)st.st_size; n_lines = k; line_at = at; line_seq = seq;
    return 0;
}

int GetChatData(WeWorkFinanceSdk_t *sdk, unsigned long long seq, unsigned int limit, const char *proxy,
                const char *passwd, int timeout, Slice_t *out) {
    (void)proxy; (void)passwd; (void)timeout;
    if (!sdk || !sdk->inited || !out) return 10000;
    if (limit == 0 || limit > 1000) return 10000;
    calls++;
    const char *every = getenv("STANDIN_FAIL_EVERY");
    if (every && atol(every) > 0 && calls % atol(every) == 0) {
        const char *code = getenv("STANDIN_FAIL_CODE");
        return code ? atoi(code) : 10001;
    }
    int rc = load_feed();
    if (rc) return rc;
    size_t lo = 0, hi = n_lines; /* first line with seq > requested */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (line_seq[mid] <= seq) lo = mid + 1; else hi = mid;
    }
    size_t end = lo + limit < n_lines ? lo + limit : n_lines;
    size_t cap = 64;
    for (size_t i = lo; i < end; i++) {
        size_t next = i + 1 < n_lines ? line_at[i + 1] : feed_size;
        cap += next - line_at[i] + 1;
    }
    char *buf = malloc(cap);
    size_t len = (size_t)sprintf(buf, "{\"errcode\":0,\"errmsg\":\"ok\",\"chatdata\":[");
    for (size_t i = lo; i < end; i++) {
        const char *line = feed + line_at[i];
        const char *json = strchr(line, ' ');
        const char *nl = strchr(line, '\n');
        if (!json || !nl || json > nl) continue;
        json++;
        if (i > lo) buf[len++] = ',';
        memcpy(buf + len, json, (size_t)(nl - json));
        len += (size_t)(nl - json);
    }
    len += (size_t)sprintf(buf + len, "]}");
    free(out->buf);
    out->buf = buf;
    out->len = (int)len;
    return 0;
}

int GetMediaData(WeWorkFinanceSdk_t *sdk, const char *indexbuf, const char *sdkfileid, const char *proxy,
                 const char *passwd, int timeout, MediaData_t *out) {
    (void)proxy; (void)passwd; (void)timeout;
    if (!sdk || !sdk->inited || !out || !sdkfileid || !*sdkfileid) return 10000;
    size_t idlen = strlen(sdkfileid);
    if (idlen > 1000) return 10005;
    char path[4096];
    int p = snprintf(path, sizeof path, "%s/media/", data_dir());
    for (size_t i = 0; i < idlen; i++) p += snprintf(path + p, sizeof path - (size_t)p, "%02x", (unsigned char)sdkfileid[i]);
    const char *delay = getenv("STANDIN_MEDIA_DELAY_MS");
    if (delay && atol(delay) > 0) {
        struct timespec ts = {atol(delay) / 1000, (atol(delay) % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    FILE *f = fopen(path, "rb");
    if (!f) return 10005;
    long offset = indexbuf && *indexbuf ? atol(indexbuf) : 0;
    const char *c = getenv("STANDIN_CHUNK");
    long chunk = c && atol(c) > 0 ? atol(c) : 512 * 1024;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    if (offset < 0 || offset > size) { fclose(f); return 10000; }
    fseek(f, offset, SEEK_SET);
    long n = size - offset < chunk ? size - offset : chunk;
    char *data = malloc((size_t)n + 1);
    size_t got = fread(data, 1, (size_t)n, f);
    fclose(f);
    const char *bad = getenv("STANDIN_CORRUPT_MEDIA");
    if (bad && strcmp(bad, sdkfileid) == 0 && offset > 0 && got > 0) data[0] ^= 0x5a;
    free(out->data); free(out->outindexbuf);
    out->data = data;
    out->data_len = (int)got;
    out->outindexbuf = malloc(32);
    out->out_len = sprintf(out->outindexbuf, "%ld", offset + (long)got);
    out->is_finish = offset + (long)got >= size;
    return 0;
}

int DecryptData(const char *encrypt_key, const char *encrypt_msg, Slice_t *out) {
    size_t klen = strlen(encrypt_key), mlen = strlen(encrypt_msg);
    const char *poison = getenv("STANDIN_ABORT_MSG");
    while (poison && *poison) {
        const char *comma = strchr(poison, ',');
        size_t n = comma ? (size_t)(comma - poison) : strlen(poison);
        if (n > 0 && strncmp(encrypt_msg, poison, n) == 0) abort();
        poison = comma ? comma + 1 : NULL;
    }
    if (klen != 32) return 10008;
    if (mlen == 0 || mlen % 4 != 0) return 10002;
    unsigned char *ct = malloc(mlen);
    int n = EVP_DecodeBlock(ct, (const unsigned char *)encrypt_msg, (int)mlen);
    if (n < 0) { free(ct); return 10002; }
    if (encrypt_msg[mlen - 1] == '=') n--;
    if (encrypt_msg[mlen - 2] == '=') n--;
    unsigned char *pt = malloc((size_t)n + 32);
    int l1 = 0, l2 = 0;
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    int ok = EVP_DecryptInit_ex(cx, EVP_aes_256_cbc(), NULL, (const unsigned char *)encrypt_key,
                                (const unsigned char *)encrypt_key)
             && EVP_DecryptUpdate(cx, pt, &l1, ct, n) && EVP_DecryptFinal_ex(cx, pt + l1, &l2);
    EVP_CIPHER_CTX_free(cx);
    free(ct);
    if (!ok) { free(pt); return 10006; }
    free(out->buf);
    out->buf = (char *)pt;
    out->len = l1 + l2;
    return 0;
}
