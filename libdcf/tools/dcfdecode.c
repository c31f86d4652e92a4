/* dcfdecode: decode a .dcf file to .safetensors with libdcf, or list its tensors.
 *
 *     dcfdecode IN.dcf -o OUT.safetensors     every tensor and the metadata; the file is byte for
 *                                             byte the one `dcunpack IN.dcf -o OUT.safetensors` writes
 *     dcfdecode --list IN.dcf                 the tensor table
 *
 * The output is written to a hidden temporary file beside the target, fsynced and renamed over it,
 * so a failure leaves the old file or none. Tensors are decoded one at a time into one buffer of
 * the largest tensor's size: memory is the file mapping, that buffer and libdcf's bounded scratch.
 * Exit status: 0 success, 1 a bad input file or a failed write (one line on stderr), 2 usage.
 *
 * What dcunpack writes, reproduced here: the safetensors header JSON (compact, UTF-8, escapes as
 * Python's json.dumps with ensure_ascii=False), tensors laid out by dtype (the safetensors
 * package's order, widest first) then by name, `__metadata__` the dcf metadata followed by the
 * entries of `dcformat.source_metadata` (a JSON object: its entries update the dictionary), names
 * with the prefix recorded in `dcformat.source_layout` put back, the header padded with spaces
 * to a multiple of 8. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dcf.h"

static const char *prog = "dcfdecode";
static const char *in_path;

/* ---- messages ---------------------------------------------------------------------------- */

/* `s` with control characters and non-UTF-8-looking bytes escaped, for one line on a terminal. */
static void put_sanitized(FILE *f, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

static int fail(const char *fmt, const char *detail)
{
    fprintf(stderr, "%s: ", prog);
    if (in_path != NULL) {
        put_sanitized(stderr, in_path, strlen(in_path));
        fputs(": ", stderr);
    }
    fprintf(stderr, fmt, detail);
    fputc('\n', stderr);
    return 1;
}

static int usage_error(const char *what)
{
    fprintf(stderr, "%s: %s (see %s --help)\n", prog, what, prog);
    return 2;
}

/* ---- a growing byte buffer ----------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->p == NULL || b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->n + n + 1)
            cap *= 2;
        p = (char *)realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_u64(buf *b, unsigned long long v)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%llu", v);
    puts_(b, tmp);
}

/* A JSON string as Python's json.dumps(ensure_ascii=False) writes it. */
static void put_json_string(buf *b, const char *s, size_t n)
{
    size_t i;
    put(b, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': put(b, "\\\"", 2); break;
        case '\\': put(b, "\\\\", 2); break;
        case '\n': put(b, "\\n", 2); break;
        case '\r': put(b, "\\r", 2); break;
        case '\t': put(b, "\\t", 2); break;
        case '\b': put(b, "\\b", 2); break;
        case '\f': put(b, "\\f", 2); break;
        default:
            if (c < 0x20) {
                char tmp[8];
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                put(b, tmp, 6);
            } else {
                put(b, (const char *)&s[i], 1);
            }
        }
    }
    put(b, "\"", 1);
}

/* ---- a small JSON reader, for the dcformat.* metadata entries -------------------------------- */

typedef struct json {
    const char *p, *end;
    const char *error;
} json;

static void skip_ws(json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static void put_utf8(buf *b, unsigned long cp)
{
    char t[4];
    if (cp < 0x80) {
        t[0] = (char)cp;
        put(b, t, 1);
    } else if (cp < 0x800) {
        t[0] = (char)(0xC0 | (cp >> 6));
        t[1] = (char)(0x80 | (cp & 0x3F));
        put(b, t, 2);
    } else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | (cp >> 12));
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F));
        put(b, t, 3);
    } else {
        t[0] = (char)(0xF0 | (cp >> 18));
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (char)(0x80 | (cp & 0x3F));
        put(b, t, 4);
    }
}

static int hex4(json *j, unsigned long *v)
{
    int k;
    *v = 0;
    if (j->end - j->p < 4)
        return 0;
    for (k = 0; k < 4; k++) {
        char c = j->p[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return 0;
        *v = *v * 16 + (unsigned long)d;
    }
    j->p += 4;
    return 1;
}

/* A string at j->p (after skip_ws), decoded into `out` (may be NULL to skip). */
static int read_string(json *j, buf *out)
{
    buf scratch = {0};
    buf *o = out ? out : &scratch;
    if (j->p >= j->end || *j->p != '"') {
        j->error = "a string was expected";
        return 0;
    }
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) {
            j->error = "a control character in a string";
            free(scratch.p);
            return 0;
        }
        if (c != '\\') {
            put(o, j->p, 1);
            j->p++;
            continue;
        }
        j->p++;
        if (j->p >= j->end)
            break;
        c = (unsigned char)*j->p++;
        switch (c) {
        case '"': put(o, "\"", 1); break;
        case '\\': put(o, "\\", 1); break;
        case '/': put(o, "/", 1); break;
        case 'b': put(o, "\b", 1); break;
        case 'f': put(o, "\f", 1); break;
        case 'n': put(o, "\n", 1); break;
        case 'r': put(o, "\r", 1); break;
        case 't': put(o, "\t", 1); break;
        case 'u': {
            unsigned long cp, lo;
            if (!hex4(j, &cp)) {
                j->error = "a bad \\u escape";
                free(scratch.p);
                return 0;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
                    j->p += 2;
                    if (!hex4(j, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                        j->error = "a lone surrogate in a string";
                        free(scratch.p);
                        return 0;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    j->error = "a lone surrogate in a string";
                    free(scratch.p);
                    return 0;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                j->error = "a lone surrogate in a string";
                free(scratch.p);
                return 0;
            }
            put_utf8(o, cp);
            break;
        }
        default:
            j->error = "a bad escape in a string";
            free(scratch.p);
            return 0;
        }
    }
    free(scratch.p);
    if (j->p >= j->end) {
        j->error = "an unterminated string";
        return 0;
    }
    j->p++;
    return !o->oom;
}

static int starts(json *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, word, n) == 0) {
        j->p += n;
        return 1;
    }
    return 0;
}

/* Skip a number (RFC 8259 syntax). */
static int skip_number(json *j)
{
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9')) {
        j->error = "a bad number";
        return 0;
    }
    if (*j->p == '0')
        j->p++;
    else
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9')) {
            j->error = "a bad number";
            return 0;
        }
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9')) {
            j->error = "a bad number";
            return 0;
        }
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    return 1;
}

/* Skip any JSON value (Python's json also takes NaN and Infinity). */
static int skip_value(json *j, int depth)
{
    skip_ws(j);
    if (depth > 200) {
        j->error = "nested too deeply";
        return 0;
    }
    if (j->p >= j->end) {
        j->error = "a value was expected";
        return 0;
    }
    if (*j->p == '"')
        return read_string(j, NULL);
    if (starts(j, "true") || starts(j, "false") || starts(j, "null") || starts(j, "NaN") || starts(j, "Infinity")
        || starts(j, "-Infinity"))
        return 1;
    if (*j->p == '{' || *j->p == '[') {
        char close = *j->p == '{' ? '}' : ']';
        int object = *j->p == '{';
        j->p++;
        skip_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 1;
        }
        for (;;) {
            if (object) {
                skip_ws(j);
                if (!read_string(j, NULL))
                    return 0;
                skip_ws(j);
                if (j->p >= j->end || *j->p != ':') {
                    j->error = "':' was expected";
                    return 0;
                }
                j->p++;
            }
            if (!skip_value(j, depth + 1))
                return 0;
            skip_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                return 1;
            }
            j->error = "',' or a closing bracket was expected";
            return 0;
        }
    }
    return skip_number(j);
}

/* ---- the output's metadata ------------------------------------------------------------------ */

typedef struct entry {
    buf key, value;
} entry;

typedef struct metadata {
    entry *e;
    size_t n, cap;
    size_t *table; /* open addressing: entry index + 1, 0 = empty */
    size_t mask;
} metadata;

static size_t hash_key(const char *s, size_t n)
{
    size_t h = 2166136261u, i;
    for (i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Set key to value: an existing key keeps its place (as a Python dict update does). */
static int meta_set(metadata *m, const char *key, size_t kn, const char *value, size_t vn)
{
    size_t h;
    if (2 * (m->n + 1) > m->mask) { /* grow the table and the entries */
        size_t size = m->mask ? 2 * (m->mask + 1) : 64, i;
        size_t *table = (size_t *)calloc(size, sizeof(size_t));
        if (table == NULL)
            return 0;
        for (i = 0; i < m->n; i++) {
            for (h = hash_key(m->e[i].key.p, m->e[i].key.n) & (size - 1); table[h]; h = (h + 1) & (size - 1))
                ;
            table[h] = i + 1;
        }
        free(m->table);
        m->table = table;
        m->mask = size - 1;
    }
    for (h = hash_key(key, kn) & m->mask; m->table[h]; h = (h + 1) & m->mask) {
        entry *e = &m->e[m->table[h] - 1];
        if (e->key.n == kn && memcmp(e->key.p, key, kn) == 0) {
            e->value.n = 0;
            put(&e->value, value, vn);
            return !e->value.oom;
        }
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 16;
        entry *e = (entry *)realloc(m->e, cap * sizeof(entry));
        if (e == NULL)
            return 0;
        m->e = e;
        m->cap = cap;
    }
    memset(&m->e[m->n], 0, sizeof(entry));
    put(&m->e[m->n].key, key, kn);
    put(&m->e[m->n].value, value, vn);
    if (m->e[m->n].key.oom || m->e[m->n].value.oom)
        return 0;
    m->table[h] = m->n + 1;
    m->n++;
    return 1;
}

static void meta_free(metadata *m)
{
    size_t i;
    for (i = 0; i < m->n; i++) {
        free(m->e[i].key.p);
        free(m->e[i].value.p);
    }
    free(m->e);
    free(m->table);
}

/* `dcformat.source_metadata` (spec 4.1.1): when it is JSON text of one object whose member values
 * are all strings, with distinct names and no unpaired surrogate escape, its members update `m`
 * (a name already there keeps its place); anything else restores nothing. Returns 0 only when
 * out of memory. */
static int merge_source_metadata(metadata *m, const char *text, size_t n)
{
    json j;
    metadata members = {0};
    int valid = 1, ok = 1;
    size_t i;
    j.p = text;
    j.end = text + n;
    j.error = NULL;
    skip_ws(&j);
    if (j.p >= j.end || *j.p != '{')
        valid = 0;
    else {
        j.p++;
        skip_ws(&j);
        if (j.p < j.end && *j.p == '}') {
            j.p++;
        } else {
            for (;;) {
                buf key = {0}, value = {0};
                size_t before = members.n;
                skip_ws(&j);
                valid = read_string(&j, &key);
                skip_ws(&j);
                valid = valid && j.p < j.end && *j.p == ':';
                if (valid) {
                    j.p++;
                    skip_ws(&j);
                    valid = j.p < j.end && *j.p == '"' && read_string(&j, &value); /* strings only */
                }
                if (valid && !meta_set(&members, key.p ? key.p : "", key.n, value.p ? value.p : "", value.n))
                    valid = ok = 0;
                if (valid && members.n == before)
                    valid = 0; /* a repeated name */
                free(key.p);
                free(value.p);
                if (!valid)
                    break;
                skip_ws(&j);
                if (j.p < j.end && *j.p == ',') {
                    j.p++;
                    continue;
                }
                if (j.p < j.end && *j.p == '}') {
                    j.p++;
                    break;
                }
                valid = 0;
                break;
            }
        }
        skip_ws(&j);
        valid = valid && j.p == j.end;
    }
    for (i = 0; valid && ok && i < members.n; i++)
        ok = meta_set(m, members.e[i].key.p, members.e[i].key.n, members.e[i].value.p, members.e[i].value.n);
    meta_free(&members);
    return ok;
}

/* The "prefix" of `dcformat.source_layout` into `prefix`. Returns NULL or an error message. */
static const char *layout_prefix(const char *text, size_t n, buf *prefix)
{
    json j;
    j.p = text;
    j.end = text + n;
    j.error = NULL;
    skip_ws(&j);
    if (j.p >= j.end || *j.p != '{') {
        return skip_value(&j, 0) && (skip_ws(&j), j.p == j.end)
                   ? "metadata dcformat.source_layout is not a JSON object"
                   : "metadata dcformat.source_layout is not valid JSON";
    }
    j.p++;
    skip_ws(&j);
    if (j.p < j.end && *j.p == '}') {
        j.p++;
    } else {
        for (;;) {
            buf key = {0};
            int is_prefix;
            skip_ws(&j);
            if (!read_string(&j, &key)) {
                free(key.p);
                return "metadata dcformat.source_layout is not valid JSON";
            }
            is_prefix = key.n == 6 && memcmp(key.p, "prefix", 6) == 0;
            free(key.p);
            skip_ws(&j);
            if (j.p >= j.end || *j.p != ':')
                return "metadata dcformat.source_layout is not valid JSON";
            j.p++;
            skip_ws(&j);
            if (is_prefix) {
                prefix->n = 0;
                if (j.p < j.end && *j.p == '"') {
                    if (!read_string(&j, prefix))
                        return "metadata dcformat.source_layout is not valid JSON";
                } else if (!skip_value(&j, 0)) {
                    return "metadata dcformat.source_layout is not valid JSON";
                } else {
                    return "metadata dcformat.source_layout has a prefix that is not a string";
                }
            } else if (!skip_value(&j, 0)) {
                return "metadata dcformat.source_layout is not valid JSON";
            }
            skip_ws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (j.p < j.end && *j.p == '}') {
                j.p++;
                break;
            }
            return "metadata dcformat.source_layout is not valid JSON";
        }
    }
    skip_ws(&j);
    if (j.p != j.end)
        return "metadata dcformat.source_layout is not valid JSON";
    return NULL;
}

/* ---- the tensors in the output's order ----------------------------------------------------- */

typedef struct slot {
    size_t index;      /* in the dcf file */
    buf name;          /* prefix + name */
    int rank;          /* safetensors order of the dtype */
    uint64_t bytes;
} slot;

/* the safetensors package's dtype order (its enum), by dcf dtype */
static int st_rank(dcf_dtype d)
{
    switch (d) {
    case DCF_BOOL: return 0;
    case DCF_U8: return 1;
    case DCF_I8: return 2;
    case DCF_I16: return 3;
    case DCF_U16: return 4;
    case DCF_F16: return 5;
    case DCF_BF16: return 6;
    case DCF_I32: return 7;
    case DCF_U32: return 8;
    case DCF_F32: return 9;
    case DCF_F64: return 10;
    case DCF_I64: return 11;
    default: return 12; /* U64 */
    }
}

static int slot_cmp(const void *a, const void *b)
{
    const slot *x = (const slot *)a, *y = (const slot *)b;
    size_t n;
    int c;
    if (x->rank != y->rank)
        return x->rank > y->rank ? -1 : 1;
    n = x->name.n < y->name.n ? x->name.n : y->name.n;
    c = memcmp(x->name.p, y->name.p, n);
    if (c != 0)
        return c;
    return x->name.n < y->name.n ? -1 : x->name.n > y->name.n;
}

/* ---- writing ------------------------------------------------------------------------------- */

static int write_all(int fd, const void *data, size_t n)
{
    const char *p = (const char *)data;
    while (n > 0) {
        size_t step = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t w = write(fd, p, step);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return 0;
        }
        p += w;
        n -= (size_t)w;
    }
    return 1;
}

static void to_little_endian(uint8_t *p, uint64_t bytes, size_t esize)
{
    const uint16_t probe = 1;
    uint64_t i;
    if (*(const uint8_t *)&probe == 1 || esize == 1)
        return;
    for (i = 0; i + esize <= bytes; i += esize) {
        size_t a = 0, b = esize - 1;
        while (a < b) {
            uint8_t t = p[i + a];
            p[i + a++] = p[i + b];
            p[i + b--] = t;
        }
    }
}

static int decode_to_safetensors(const char *out_path)
{
    dcf_ctx *ctx = dcf_ctx_new(NULL);
    dcf_error_info err;
    size_t count, i, j, nmeta;
    metadata meta = {0};
    buf prefix = {0}, header = {0}, tmp_path = {0};
    slot *slots = NULL;
    uint64_t largest = 0, offset = 0;
    uint8_t *data = NULL;
    int fd = -1, status = 1;
    const char *problem;
    char detail[512];

    if (ctx == NULL)
        return fail("%s", "out of memory");
    if (dcf_open_file(ctx, in_path, &err) != DCF_OK) {
        status = fail("%s", err.message);
        goto done;
    }
    /* metadata: the file's, then the source's own; names with the source's prefix */
    nmeta = dcf_metadata_count(ctx);
    for (j = 0; j < nmeta; j++) {
        const char *k, *v;
        size_t kn, vn;
        dcf_metadata_get(ctx, j, &k, &kn, &v, &vn);
        if (!meta_set(&meta, k, kn, v, vn)) {
            status = fail("%s", "out of memory");
            goto done;
        }
    }
    {
        const char *v;
        size_t vn;
        if (dcf_metadata_find(ctx, "dcformat.source_layout", 22, &v, &vn) == DCF_OK
            && (problem = layout_prefix(v, vn, &prefix)) != NULL) {
            status = fail("%s", problem);
            goto done;
        }
        if (dcf_metadata_find(ctx, "dcformat.source_metadata", 24, &v, &vn) == DCF_OK
            && !merge_source_metadata(&meta, v, vn)) {
            status = fail("%s", "out of memory");
            goto done;
        }
    }
    count = dcf_tensor_count(ctx);
    slots = (slot *)calloc(count ? count : 1, sizeof(slot));
    if (slots == NULL) {
        status = fail("%s", "out of memory");
        goto done;
    }
    for (i = 0; i < count; i++) {
        dcf_tensor_info t;
        uint64_t bytes;
        dcf_get_tensor_info(ctx, i, &t);
        if (dcf_decoded_size(ctx, i, DCF_OUT_NATIVE, &bytes, &err) != DCF_OK) {
            status = fail("%s", err.message);
            goto done;
        }
        slots[i].index = i;
        slots[i].rank = st_rank(t.dtype);
        slots[i].bytes = bytes;
        put(&slots[i].name, prefix.p ? prefix.p : "", prefix.n);
        put(&slots[i].name, t.name, t.name_length);
        if (slots[i].name.oom) {
            status = fail("%s", "out of memory");
            goto done;
        }
        if (slots[i].name.n == 12 && memcmp(slots[i].name.p, "__metadata__", 12) == 0) {
            status = fail("%s", "'__metadata__' cannot be a tensor name in safetensors");
            goto done;
        }
        largest = bytes > largest ? bytes : largest;
    }
    qsort(slots, count, sizeof(slot), slot_cmp);

    /* the header */
    put(&header, "{", 1);
    if (meta.n) {
        puts_(&header, "\"__metadata__\":{");
        for (j = 0; j < meta.n; j++) {
            if (j)
                put(&header, ",", 1);
            put_json_string(&header, meta.e[j].key.p ? meta.e[j].key.p : "", meta.e[j].key.n);
            put(&header, ":", 1);
            put_json_string(&header, meta.e[j].value.p ? meta.e[j].value.p : "", meta.e[j].value.n);
        }
        put(&header, "}", 1);
    }
    for (i = 0; i < count; i++) {
        dcf_tensor_info t;
        unsigned k;
        dcf_get_tensor_info(ctx, slots[i].index, &t);
        if (i || meta.n)
            put(&header, ",", 1);
        put_json_string(&header, slots[i].name.p, slots[i].name.n);
        puts_(&header, ":{\"dtype\":\"");
        puts_(&header, dcf_dtype_name(t.dtype));
        puts_(&header, "\",\"shape\":[");
        for (k = 0; k < t.rank; k++) {
            if (k)
                put(&header, ",", 1);
            put_u64(&header, t.shape[k]);
        }
        puts_(&header, "],\"data_offsets\":[");
        put_u64(&header, offset);
        put(&header, ",", 1);
        offset += slots[i].bytes;
        put_u64(&header, offset);
        puts_(&header, "]}");
    }
    put(&header, "}", 1);
    while (header.n % 8)
        put(&header, " ", 1);
    if (header.oom) {
        status = fail("%s", "out of memory");
        goto done;
    }

    /* the temporary file beside the target: .NAME.PID.XXXXXXXX.tmp */
    {
        const char *slash = strrchr(out_path, '/');
        size_t dir_len = slash ? (size_t)(slash - out_path) + 1 : 0;
        unsigned long seed = (unsigned long)getpid() * 2654435761u ^ (unsigned long)time(NULL);
        int attempt;
        for (attempt = 0; attempt < 100 && fd < 0; attempt++) {
            char tag[16];
            int c;
            tmp_path.n = 0;
            put(&tmp_path, out_path, dir_len);
            put(&tmp_path, ".", 1);
            puts_(&tmp_path, out_path + dir_len);
            snprintf(tag, sizeof tag, ".%ld.", (long)getpid());
            puts_(&tmp_path, tag);
            for (c = 0; c < 8; c++) {
                seed = seed * 1103515245u + 12345u + (unsigned long)attempt;
                tag[c] = "abcdefghijklmnopqrstuvwxyz0123456789"[(seed >> 16) % 36];
            }
            tag[8] = '\0';
            puts_(&tmp_path, tag);
            puts_(&tmp_path, ".tmp");
            if (tmp_path.oom)
                break;
            fd = open(tmp_path.p, O_WRONLY | O_CREAT | O_EXCL, 0666);
            if (fd < 0 && errno != EEXIST)
                break;
        }
        if (fd < 0) {
            snprintf(detail, sizeof detail, "cannot write %s: %s", out_path, strerror(errno));
            in_path = NULL;
            status = fail("%s", detail);
            goto done;
        }
    }
    {
        uint8_t len8[8];
        uint64_t hn = header.n;
        int b;
        for (b = 0; b < 8; b++)
            len8[b] = (uint8_t)(hn >> (8 * b));
        if (!write_all(fd, len8, 8) || !write_all(fd, header.p, header.n))
            goto write_error;
    }
    data = (uint8_t *)malloc(largest ? (size_t)largest : 1);
    if (data == NULL) {
        status = fail("%s", "out of memory for the largest tensor");
        goto remove_tmp;
    }
    for (i = 0; i < count; i++) {
        dcf_tensor_info t;
        dcf_get_tensor_info(ctx, slots[i].index, &t);
        if (dcf_decode_tensor(ctx, slots[i].index, data, (size_t)largest, DCF_OUT_NATIVE, &err) != DCF_OK) {
            status = fail("%s", err.message);
            goto remove_tmp;
        }
        to_little_endian(data, slots[i].bytes, dcf_dtype_size(t.dtype));
        if (!write_all(fd, data, (size_t)slots[i].bytes))
            goto write_error;
    }
    if (fsync(fd) != 0)
        goto write_error;
    if (close(fd) != 0) {
        fd = -1;
        goto write_error;
    }
    fd = -1;
    if (rename(tmp_path.p, out_path) != 0)
        goto write_error;
    {
        /* make the rename durable: fsync the directory */
        char *dir = (char *)malloc(strlen(out_path) + 2);
        if (dir != NULL) {
            const char *slash = strrchr(out_path, '/');
            int dfd;
            if (slash == NULL) {
                strcpy(dir, ".");
            } else {
                memcpy(dir, out_path, (size_t)(slash - out_path) + 1);
                dir[(slash - out_path) + 1] = '\0';
            }
            dfd = open(dir, O_RDONLY);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    status = 0;
    goto done;

write_error:
    snprintf(detail, sizeof detail, "cannot write %s: %s", out_path, strerror(errno));
    in_path = NULL;
    status = fail("%s", detail);
remove_tmp:
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp_path.p);
done:
    if (fd >= 0) {
        close(fd);
        unlink(tmp_path.p);
    }
    free(data);
    if (slots != NULL)
        for (i = 0; i < count; i++)
            free(slots[i].name.p);
    free(slots);
    free(prefix.p);
    free(header.p);
    free(tmp_path.p);
    meta_free(&meta);
    dcf_ctx_free(ctx);
    return status;
}

/* ---- --list -------------------------------------------------------------------------------- */

static int list(void)
{
    dcf_ctx *ctx = dcf_ctx_new(NULL);
    dcf_error_info err;
    size_t count, i;
    int widths[7] = {4, 5, 5, 6, 5, 13, 12};
    static const char *const heads[7] = {"name", "dtype", "shape", "layout", "numel", "decoded_bytes", "stored_bytes"};
    char (*cells)[7][96];
    int c;

    if (ctx == NULL)
        return fail("%s", "out of memory");
    if (dcf_open_file(ctx, in_path, &err) != DCF_OK) {
        dcf_ctx_free(ctx);
        return fail("%s", err.message);
    }
    count = dcf_tensor_count(ctx);
    cells = (char (*)[7][96])calloc(count ? count : 1, sizeof *cells);
    if (cells == NULL) {
        dcf_ctx_free(ctx);
        return fail("%s", "out of memory");
    }
    for (i = 0; i < count; i++) {
        dcf_tensor_info t;
        unsigned k;
        size_t o = 0, n;
        dcf_get_tensor_info(ctx, i, &t);
        /* the name, control characters escaped, shortened to fit */
        for (n = 0; n < t.name_length && o + 5 < sizeof cells[i][0]; n++) {
            unsigned char ch = (unsigned char)t.name[n];
            if (ch < 0x20 || ch == 0x7F)
                o += (size_t)snprintf(cells[i][0] + o, sizeof cells[i][0] - o, "\\x%02x", ch);
            else
                cells[i][0][o++] = (char)ch;
        }
        cells[i][0][o] = '\0';
        snprintf(cells[i][1], sizeof cells[i][1], "%s", dcf_dtype_name(t.dtype));
        o = 0;
        if (t.rank == 0)
            o += (size_t)snprintf(cells[i][2], sizeof cells[i][2], "()");
        for (k = 0; k < t.rank && o < sizeof cells[i][2]; k++)
            o += (size_t)snprintf(cells[i][2] + o, sizeof cells[i][2] - o, k ? "x%llu" : "%llu",
                                  (unsigned long long)t.shape[k]);
        snprintf(cells[i][3], sizeof cells[i][3], "%s", t.layout == DCF_CSR ? "csr" : "dense");
        if (t.value_coding == DCF_CODEBOOK)
            snprintf(cells[i][3] + strlen(cells[i][3]), sizeof cells[i][3] - strlen(cells[i][3]), "+k%lu",
                     (unsigned long)t.codebook_size);
        snprintf(cells[i][4], sizeof cells[i][4], "%llu", (unsigned long long)t.numel);
        snprintf(cells[i][5], sizeof cells[i][5], "%llu", (unsigned long long)t.decoded_bytes);
        snprintf(cells[i][6], sizeof cells[i][6], "%llu", (unsigned long long)t.stored_bytes);
        for (c = 0; c < 7; c++) {
            int w = (int)strlen(cells[i][c]);
            widths[c] = w > widths[c] ? w : widths[c];
        }
    }
    for (c = 0; c < 7; c++)
        printf(c < 4 ? "%-*s%s" : "%*s%s", widths[c], heads[c], c < 6 ? "  " : "\n");
    for (i = 0; i < count; i++)
        for (c = 0; c < 7; c++)
            printf(c < 4 ? "%-*s%s" : "%*s%s", widths[c], cells[i][c], c < 6 ? "  " : "\n");
    free(cells);
    /* a 1.1 file's aliases were listed above (under their target's facts); its attachments: */
    for (i = 0; i < dcf_attachment_count(ctx); i++) {
        const char *name;
        size_t n;
        uint64_t size;
        dcf_get_attachment_info(ctx, i, &name, &n, &size);
        fputs(i == 0 ? "\nattachment  bytes\n" : "", stdout);
        put_sanitized(stdout, name, n);
        printf("  %llu\n", (unsigned long long)size);
    }
    dcf_ctx_free(ctx);
    return 0;
}

/* ---- --bench ------------------------------------------------------------------------------- */

static double seconds(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Decode every tensor `reps` times on this one thread into one buffer of the largest tensor
 * (touched once before timing), and print the best pass as MB/s of decoded bytes. */
static int bench(int reps, int f32)
{
    dcf_ctx *ctx = dcf_ctx_new(NULL);
    dcf_error_info err;
    size_t count, i;
    uint64_t largest = 0, total = 0;
    double best_wall = 1e300, best_cpu = 1e300;
    uint8_t *data;
    int r;
    if (ctx == NULL)
        return fail("%s", "out of memory");
    if (dcf_open_file(ctx, in_path, &err) != DCF_OK) {
        dcf_ctx_free(ctx);
        return fail("%s", err.message);
    }
    count = dcf_tensor_count(ctx);
    for (i = 0; i < count; i++) {
        dcf_tensor_info t;
        uint64_t bytes;
        int out = DCF_OUT_NATIVE;
        dcf_get_tensor_info(ctx, i, &t);
        if (f32 && (t.dtype == DCF_F32 || t.dtype == DCF_F16 || t.dtype == DCF_BF16 || t.dtype == DCF_F64))
            out = DCF_OUT_F32;
        if (dcf_decoded_size(ctx, i, out, &bytes, &err) != DCF_OK) {
            dcf_ctx_free(ctx);
            return fail("%s", err.message);
        }
        total += bytes;
        largest = bytes > largest ? bytes : largest;
    }
    data = (uint8_t *)malloc(largest ? (size_t)largest : 1);
    if (data == NULL) {
        dcf_ctx_free(ctx);
        return fail("%s", "out of memory for the largest tensor");
    }
    memset(data, 0, largest ? (size_t)largest : 1);
    for (r = 0; r < reps; r++) {
        double w0 = seconds(CLOCK_MONOTONIC), c0 = seconds(CLOCK_THREAD_CPUTIME_ID), w, c;
        for (i = 0; i < count; i++) {
            dcf_tensor_info t;
            int out = DCF_OUT_NATIVE;
            dcf_get_tensor_info(ctx, i, &t);
            if (f32 && (t.dtype == DCF_F32 || t.dtype == DCF_F16 || t.dtype == DCF_BF16 || t.dtype == DCF_F64))
                out = DCF_OUT_F32;
            if (dcf_decode_tensor(ctx, i, data, (size_t)largest, out, &err) != DCF_OK) {
                free(data);
                dcf_ctx_free(ctx);
                return fail("%s", err.message);
            }
        }
        w = seconds(CLOCK_MONOTONIC) - w0;
        c = seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
        best_wall = w < best_wall ? w : best_wall;
        best_cpu = c < best_cpu ? c : best_cpu;
    }
    printf("tensors %lu\ndecoded_bytes %llu\nbest_wall_s %.6f\nbest_cpu_s %.6f\nMB_per_s_wall %.1f\n"
           "MB_per_s_cpu %.1f\n", (unsigned long)count, (unsigned long long)total, best_wall, best_cpu,
           best_wall > 0 ? (double)total / best_wall / 1e6 : 0.0, best_cpu > 0 ? (double)total / best_cpu / 1e6 : 0.0);
    free(data);
    dcf_ctx_free(ctx);
    return 0;
}

/* ---- main ---------------------------------------------------------------------------------- */

static const char *const HELP =
    "usage: dcfdecode IN.dcf -o OUT.safetensors [-f]\n"
    "       dcfdecode --list IN.dcf\n"
    "       dcfdecode --bench [N] [--f32] IN.dcf\n"
    "\n"
    "Decode a .dcf file with libdcf (the C decoder).\n"
    "\n"
    "  -o, --output OUT.safetensors  write every tensor and the metadata, byte for byte the file\n"
    "                                `dcunpack IN.dcf -o OUT.safetensors` writes (atomically:\n"
    "                                a temporary file beside OUT, renamed into place)\n"
    "  -f, --force                   overwrite OUT if it exists (else refused)\n"
    "  -l, --list                    print the tensor table (name, dtype, shape, layout, numel,\n"
    "                                decoded bytes, stored bytes)\n"
    "      --bench [N]               decode every tensor N times (default 5) on one thread and print\n"
    "                                the best pass: decoded bytes, seconds (wall, CPU), MB/s\n"
    "      --f32                     with --bench: floating tensors decoded to float32\n"
    "  -h, --help                    this text\n"
    "      --version                 the version of dcfdecode and libdcf\n"
    "\n"
    "Exit status: 0 done, 1 a bad input file or a failed write (one line on stderr), 2 usage.\n";

int main(int argc, char **argv)
{
    const char *out = NULL;
    int listing = 0, no_more = 0, force = 0, reps = 0, f32 = 0, i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (no_more || a[0] != '-' || a[1] == '\0') {
            if (in_path != NULL)
                return usage_error("more than one input file");
            in_path = a;
        } else if (strcmp(a, "--") == 0) {
            no_more = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(HELP, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("dcfdecode %s (libdcf %s, zstd %s)\n", DCF_LIB_VERSION_STRING, dcf_lib_version(),
                   dcf_has_zstd() ? "built in" : "not built in");
            return 0;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--force") == 0) {
            force = 1;
        } else if (strcmp(a, "--bench") == 0) {
            reps = 5;
            if (i + 1 < argc && argv[i + 1][0] >= '1' && argv[i + 1][0] <= '9' && strspn(argv[i + 1], "0123456789") == strlen(argv[i + 1])) {
                reps = atoi(argv[++i]);
                if (reps < 1 || reps > 1000000)
                    return usage_error("--bench takes 1 ... 1000000 passes");
            }
        } else if (strcmp(a, "--f32") == 0) {
            f32 = 1;
        } else if (strcmp(a, "-l") == 0 || strcmp(a, "--list") == 0) {
            listing = 1;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0 || strncmp(a, "--output=", 9) == 0) {
            if (out != NULL)
                return usage_error("-o given twice");
            if (a[2] == 'o' && a[8] == '=') {
                out = a + 9;
            } else {
                if (i + 1 >= argc)
                    return usage_error("-o needs a file name");
                out = argv[++i];
            }
        } else {
            fprintf(stderr, "%s: unknown option ", prog);
            put_sanitized(stderr, a, strlen(a));
            fprintf(stderr, " (see %s --help)\n", prog);
            return 2;
        }
    }
    if (in_path == NULL)
        return usage_error("no input file");
    if (listing + (reps > 0) + (out != NULL) > 1)
        return usage_error("-o, --list and --bench exclude each other");
    if (f32 && !reps)
        return usage_error("--f32 goes with --bench");
    if (listing)
        return list();
    if (reps)
        return bench(reps, f32);
    if (out == NULL)
        return usage_error("no output file (-o OUT.safetensors)");
    {
        size_t n = strlen(out);
        if (n < 12 || strcmp(out + n - 12, ".safetensors") != 0)
            return usage_error("the output must be a .safetensors file");
    }
    if (!force && access(out, F_OK) == 0) {
        fprintf(stderr, "%s: ", prog);
        put_sanitized(stderr, out, strlen(out));
        fputs(": already exists; use -f/--force to overwrite it\n", stderr);
        return 1;
    }
    return decode_to_safetensors(out);
}
