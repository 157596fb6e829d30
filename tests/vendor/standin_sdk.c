/* A stand-in for libWeWorkFinanceSdk_C.so: the same C ABI for the functions the pipeline
 * uses (spec §1), implementing the project's open scheme (spec §3) with OpenSSL.
 * Compiled by tests/test_vendor.py; never shipped. */
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

typedef struct { char *buf; int len; } Slice_t;

Slice_t *NewSlice(void) { return calloc(1, sizeof(Slice_t)); }
void FreeSlice(Slice_t *s) { if (s) { free(s->buf); free(s); } }
char *GetContentFromSlice(Slice_t *s) { return s->buf; }
int GetSliceLen(Slice_t *s) { return s->len; }

int DecryptData(const char *encrypt_key, const char *encrypt_msg, Slice_t *out) {
    size_t klen = strlen(encrypt_key), mlen = strlen(encrypt_msg);
    if (klen != 32) return 10008;
    if (mlen == 0 || mlen % 4 != 0) return 10002;
    unsigned char *ct = malloc(mlen);
    int n = EVP_DecodeBlock(ct, (const unsigned char *)encrypt_msg, (int)mlen);
    if (n < 0) { free(ct); return 10002; }
    if (encrypt_msg[mlen - 1] == '=') n--;
    if (encrypt_msg[mlen - 2] == '=') n--;
    unsigned char *pt = malloc((size_t)n + 32);
    int l1 = 0, l2 = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ok = EVP_DecryptInit_ex(c, EVP_aes_256_cbc(), NULL, (const unsigned char *)encrypt_key,
                                (const unsigned char *)encrypt_key)
             && EVP_DecryptUpdate(c, pt, &l1, ct, n) && EVP_DecryptFinal_ex(c, pt + l1, &l2);
    EVP_CIPHER_CTX_free(c);
    free(ct);
    if (!ok) { free(pt); return 10006; }
    free(out->buf);
    out->buf = (char *)pt;
    out->len = l1 + l2;
    return 0;
}
