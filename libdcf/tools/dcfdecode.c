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
#include <sys/ioctl.h>
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

/* What the packer recorded of the source's shape in `dcformat.source_layout` (a JSON object):
 * the string members "prefix" (put back on every name), "weights" (a folder's weights file) and
 * "index" (a sharded folder's index file), and whether it has an "onnx" object (a file packed from
 * an ONNX model). A member given twice counts as its last value, as in Python's json. */
typedef struct layout {
    buf prefix, weights, index;
    int has_weights, has_index, onnx;
} layout;

static void layout_free(layout *l)
{
    free(l->prefix.p);
    free(l->weights.p);
    free(l->index.p);
}

/* Returns NULL or an error message. */
static const char *read_layout(const char *text, size_t n, layout *l)
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
            int member = 0; /* 1 prefix, 2 weights, 3 index, 4 onnx */
            skip_ws(&j);
            if (!read_string(&j, &key)) {
                free(key.p);
                return "metadata dcformat.source_layout is not valid JSON";
            }
            if (key.n == 6 && memcmp(key.p, "prefix", 6) == 0)
                member = 1;
            else if (key.n == 7 && memcmp(key.p, "weights", 7) == 0)
                member = 2;
            else if (key.n == 5 && memcmp(key.p, "index", 5) == 0)
                member = 3;
            else if (key.n == 4 && memcmp(key.p, "onnx", 4) == 0)
                member = 4;
            free(key.p);
            skip_ws(&j);
            if (j.p >= j.end || *j.p != ':')
                return "metadata dcformat.source_layout is not valid JSON";
            j.p++;
            skip_ws(&j);
            if (member >= 1 && member <= 3 && j.p < j.end && *j.p == '"') {
                buf *target = member == 1 ? &l->prefix : member == 2 ? &l->weights : &l->index;
                target->n = 0;
                if (!read_string(&j, target))
                    return "metadata dcformat.source_layout is not valid JSON";
                put(target, "", 0); /* a NUL-terminated string even when empty */
                if (member == 2)
                    l->has_weights = 1;
                if (member == 3)
                    l->has_index = 1;
            } else {
                int object = j.p < j.end && *j.p == '{';
                if (!skip_value(&j, 0))
                    return "metadata dcformat.source_layout is not valid JSON";
                if (member == 1)
                    return "metadata dcformat.source_layout has a prefix that is not a string";
                if (member == 2)
                    l->has_weights = 0;
                if (member == 3)
                    l->has_index = 0;
                if (member == 4)
                    l->onnx = object;
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
    return l->prefix.oom || l->weights.oom || l->index.oom ? "out of memory" : NULL;
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
    case DCF_F8_E5M2: return 3; /* format 1.2 */
    case DCF_F8_E4M3: return 4;
    case DCF_I16: return 5;
    case DCF_U16: return 6;
    case DCF_F16: return 7;
    case DCF_BF16: return 8;
    case DCF_I32: return 9;
    case DCF_U32: return 10;
    case DCF_F32: return 11;
    case DCF_F64: return 12;
    case DCF_I64: return 13;
    default: return 14; /* U64 */
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

/* A file written atomically inside a folder (a descriptor): a hidden temporary file beside the
 * target, fsynced and renamed over it, the folder fsynced. rename() replaces a symbolic link at
 * the target's name instead of following it. */
typedef struct atomic_file {
    int dir, fd;
    buf tmp;
} atomic_file;

/* Returns 1, or 0 with errno set. */
static int atomic_create(atomic_file *a, int dir, const char *leaf)
{
    unsigned long seed = (unsigned long)getpid() * 2654435761u ^ (unsigned long)time(NULL) ^ (unsigned long)strlen(leaf);
    int attempt;
    a->dir = dir;
    a->fd = -1;
    for (attempt = 0; attempt < 100; attempt++) {
        char tag[24];
        int c;
        a->tmp.n = 0;
        put(&a->tmp, ".", 1);
        puts_(&a->tmp, strlen(leaf) <= 200 ? leaf : "dcfdecode"); /* the temporary name stays short */
        snprintf(tag, sizeof tag, ".%ld.", (long)getpid());
        puts_(&a->tmp, tag);
        for (c = 0; c < 8; c++) {
            seed = seed * 1103515245u + 12345u + (unsigned long)attempt;
            tag[c] = "abcdefghijklmnopqrstuvwxyz0123456789"[(seed >> 16) % 36];
        }
        tag[8] = '\0';
        puts_(&a->tmp, tag);
        puts_(&a->tmp, ".tmp");
        if (a->tmp.oom) {
            errno = ENOMEM;
            return 0;
        }
        a->fd = openat(dir, a->tmp.p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0666);
        if (a->fd >= 0)
            return 1;
        if (errno != EEXIST)
            return 0;
    }
    return 0;
}

static void atomic_discard(atomic_file *a)
{
    int saved = errno;
    if (a->fd >= 0 && a->tmp.p != NULL) {
        close(a->fd);
        unlinkat(a->dir, a->tmp.p, 0);
    }
    a->fd = -1;
    free(a->tmp.p);
    a->tmp.p = NULL;
    a->tmp.n = a->tmp.cap = 0;
    errno = saved;
}

/* fsync, rename over `leaf`, fsync the folder. `st` receives the file's identity. Returns 1, or 0
 * with errno set (the temporary file removed). */
static int atomic_commit(atomic_file *a, const char *leaf, struct stat *st)
{
    int fd = a->fd;
    if (fsync(fd) != 0 || fstat(fd, st) != 0) {
        atomic_discard(a);
        return 0;
    }
    a->fd = -1;
    if (close(fd) != 0 || renameat(a->dir, a->tmp.p, a->dir, leaf) != 0) {
        int saved = errno;
        unlinkat(a->dir, a->tmp.p, 0);
        atomic_discard(a);
        errno = saved;
        return 0;
    }
    fsync(a->dir); /* make the rename durable */
    atomic_discard(a);
    return 1;
}

/* ---- a .safetensors file: the header first, then the tensors -------------------------------- */

typedef struct plan {
    metadata meta;
    slot *slots;
    size_t count;
    buf header;
    uint64_t largest;
} plan;

static void plan_free(plan *p)
{
    size_t i;
    if (p->slots != NULL)
        for (i = 0; i < p->count; i++)
            free(p->slots[i].name.p);
    free(p->slots);
    free(p->header.p);
    meta_free(&p->meta);
}

/* The header of the file dcunpack writes: for a single file (`folder` 0) with the dcf metadata
 * followed by the source's own, for a model folder (`folder` 1) as save_pretrained's shards: the
 * source's own metadata alone, or {"format": "pt"} when it had none. Returns 0, or 1 after
 * printing why. */
static int plan_safetensors(dcf_ctx *ctx, const layout *l, int folder, plan *p)
{
    dcf_error_info err;
    size_t i, j, nmeta;
    uint64_t offset = 0;
    const char *v;
    size_t vn;

    if (!folder) {
        nmeta = dcf_metadata_count(ctx);
        for (j = 0; j < nmeta; j++) {
            const char *k;
            size_t kn;
            dcf_metadata_get(ctx, j, &k, &kn, &v, &vn);
            if (!meta_set(&p->meta, k, kn, v, vn))
                return fail("%s", "out of memory");
        }
    }
    if (dcf_metadata_find(ctx, "dcformat.source_metadata", 24, &v, &vn) == DCF_OK
        && !merge_source_metadata(&p->meta, v, vn))
        return fail("%s", "out of memory");
    if (folder && p->meta.n == 0 && !meta_set(&p->meta, "format", 6, "pt", 2))
        return fail("%s", "out of memory");
    p->count = dcf_tensor_count(ctx);
    p->slots = (slot *)calloc(p->count ? p->count : 1, sizeof(slot));
    if (p->slots == NULL)
        return fail("%s", "out of memory");
    for (i = 0; i < p->count; i++) {
        dcf_tensor_info t;
        uint64_t bytes;
        slot *s = &p->slots[i];
        dcf_get_tensor_info(ctx, i, &t);
        if (dcf_decoded_size(ctx, i, DCF_OUT_NATIVE, &bytes, &err) != DCF_OK)
            return fail("%s", err.message);
        s->index = i;
        s->rank = st_rank(t.dtype);
        s->bytes = bytes;
        put(&s->name, l->prefix.p ? l->prefix.p : "", l->prefix.n);
        put(&s->name, t.name, t.name_length);
        if (s->name.oom)
            return fail("%s", "out of memory");
        if (s->name.n == 12 && memcmp(s->name.p, "__metadata__", 12) == 0)
            return fail("%s", "'__metadata__' cannot be a tensor name in safetensors");
        p->largest = bytes > p->largest ? bytes : p->largest;
    }
    qsort(p->slots, p->count, sizeof(slot), slot_cmp);

    put(&p->header, "{", 1);
    if (p->meta.n) {
        puts_(&p->header, "\"__metadata__\":{");
        for (j = 0; j < p->meta.n; j++) {
            const entry *e = &p->meta.e[j];
            if (j)
                put(&p->header, ",", 1);
            put_json_string(&p->header, e->key.p ? e->key.p : "", e->key.n);
            put(&p->header, ":", 1);
            put_json_string(&p->header, e->value.p ? e->value.p : "", e->value.n);
        }
        put(&p->header, "}", 1);
    }
    for (i = 0; i < p->count; i++) {
        dcf_tensor_info t;
        unsigned k;
        dcf_get_tensor_info(ctx, p->slots[i].index, &t);
        if (i || p->meta.n)
            put(&p->header, ",", 1);
        put_json_string(&p->header, p->slots[i].name.p, p->slots[i].name.n);
        puts_(&p->header, ":{\"dtype\":\"");
        puts_(&p->header, dcf_dtype_name(t.dtype));
        puts_(&p->header, "\",\"shape\":[");
        for (k = 0; k < t.rank; k++) {
            if (k)
                put(&p->header, ",", 1);
            put_u64(&p->header, t.shape[k]);
        }
        puts_(&p->header, "],\"data_offsets\":[");
        put_u64(&p->header, offset);
        put(&p->header, ",", 1);
        offset += p->slots[i].bytes;
        put_u64(&p->header, offset);
        puts_(&p->header, "]}");
    }
    put(&p->header, "}", 1);
    while (p->header.n % 8)
        put(&p->header, " ", 1);
    if (p->header.oom)
        return fail("%s", "out of memory");
    return 0;
}

/* Write the planned file to `fd`, tensor by tensor through one buffer of the largest tensor's
 * size. Returns 0; 1 after printing why (a tensor that does not decode); -1 on a failed write
 * (errno set). */
static int write_safetensors(dcf_ctx *ctx, const plan *p, int fd)
{
    dcf_error_info err;
    uint8_t len8[8], *data;
    size_t i;
    int b;
    for (b = 0; b < 8; b++)
        len8[b] = (uint8_t)((uint64_t)p->header.n >> (8 * b));
    if (!write_all(fd, len8, 8) || !write_all(fd, p->header.p, p->header.n))
        return -1;
    data = (uint8_t *)malloc(p->largest ? (size_t)p->largest : 1);
    if (data == NULL)
        return fail("%s", "out of memory for the largest tensor");
    for (i = 0; i < p->count; i++) {
        dcf_tensor_info t;
        dcf_get_tensor_info(ctx, p->slots[i].index, &t);
        if (dcf_decode_tensor(ctx, p->slots[i].index, data, (size_t)p->largest, DCF_OUT_NATIVE, &err) != DCF_OK) {
            free(data);
            return fail("%s", err.message);
        }
        to_little_endian(data, p->slots[i].bytes, dcf_dtype_size(t.dtype));
        if (!write_all(fd, data, (size_t)p->slots[i].bytes)) {
            int saved = errno;
            free(data);
            errno = saved;
            return -1;
        }
    }
    free(data);
    return 0;
}

/* "cannot write PATH: reason" (the input's name left out: the output is at fault) */
static int write_failed(const char *dir, const char *name)
{
    char detail[640];
    const char *reason = strerror(errno);
    in_path = NULL;
    if (dir != NULL)
        snprintf(detail, sizeof detail, "cannot write %s%s%.300s: %s", dir,
                 dir[0] && dir[strlen(dir) - 1] != '/' ? "/" : "", name, reason);
    else
        snprintf(detail, sizeof detail, "cannot write %.300s: %s", name, reason);
    return fail("%s", detail);
}

/* Open IN.dcf and read its layout: 0, or 1 after printing why. */
static int open_input(dcf_ctx **ctx, layout *l)
{
    dcf_error_info err;
    const char *v, *problem;
    size_t vn;
    *ctx = dcf_ctx_new(NULL);
    if (*ctx == NULL)
        return fail("%s", "out of memory");
    if (dcf_open_file(*ctx, in_path, &err) != DCF_OK)
        return fail("%s", err.message);
    if (dcf_metadata_find(*ctx, "dcformat.source_layout", 22, &v, &vn) == DCF_OK
        && (problem = read_layout(v, vn, l)) != NULL)
        return fail("%s", problem);
    return 0;
}

static int decode_to_safetensors(const char *out_path)
{
    dcf_ctx *ctx = NULL;
    layout l;
    plan p;
    atomic_file a = {0};
    struct stat st;
    const char *slash = strrchr(out_path, '/');
    const char *leaf = slash ? slash + 1 : out_path;
    char *dir_path = NULL;
    int dir = -1, status;

    memset(&l, 0, sizeof l);
    memset(&p, 0, sizeof p);
    a.fd = -1; /* no temporary file yet */
    status = open_input(&ctx, &l);
    if (status == 0)
        status = plan_safetensors(ctx, &l, 0, &p);
    if (status != 0)
        goto done;
    status = 1;
    dir_path = (char *)malloc(strlen(out_path) + 2);
    if (dir_path == NULL) {
        status = fail("%s", "out of memory");
        goto done;
    }
    if (slash == NULL) {
        strcpy(dir_path, ".");
    } else {
        memcpy(dir_path, out_path, (size_t)(slash - out_path) + 1);
        dir_path[(slash - out_path) + 1] = '\0';
    }
    dir = open(dir_path, O_RDONLY | O_DIRECTORY);
    if (dir < 0 || !atomic_create(&a, dir, leaf)) {
        status = write_failed(NULL, out_path);
        goto done;
    }
    status = write_safetensors(ctx, &p, a.fd);
    if (status == 0 && !atomic_commit(&a, leaf, &st))
        status = -1;
    if (status == -1)
        status = write_failed(NULL, out_path);
done:
    atomic_discard(&a);
    if (dir >= 0)
        close(dir);
    free(dir_path);
    plan_free(&p);
    layout_free(&l);
    dcf_ctx_free(ctx);
    return status;
}

/* ---- a model folder: the weights and the attachments ---------------------------------------- */

/* `s` escaped for one line (control bytes as \xNN), shortened, into `out`. */
static void quote_name(char *out, size_t size, const char *s, size_t n)
{
    size_t o = 0, i;
    out[o++] = '\'';
    for (i = 0; i < n && o + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F)
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (i < n && o + 4 < size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '\'';
    out[o] = '\0';
}

/* The folder holding `rel` (a checked attachment name, NUL-terminated, modified in place) below
 * the folder `root`: each folder on the way opened without following a symbolic link
 * (O_NOFOLLOW) and, with `create`, made first. Returns its descriptor (root itself for a name
 * without '/'; close any other) and sets *leaf to the last component; -2 when a folder on the way
 * does not exist (only without `create`); -1 after printing why. */
static int open_parent(int root, char *rel, int create, const char *out_dir, const char **leaf)
{
    int fd = root;
    char *part = rel, *slash;
    while ((slash = strchr(part, '/')) != NULL) {
        int next;
        *slash = '\0';
        if (create && mkdirat(fd, part, 0777) != 0 && errno != EEXIST)
            next = -1;
        else
            next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (next < 0) {
            int saved = errno;
            struct stat st;
            char detail[700];
            int is_link = fstatat(fd, part, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
            *slash = '/';
            if (fd != root)
                close(fd);
            if (saved == ENOENT && !create)
                return -2;
            *slash = '\0';
            snprintf(detail, sizeof detail, "%s%s%.300s: %s", out_dir, out_dir[strlen(out_dir) - 1] == '/' ? "" : "/", rel,
                     is_link ? "a symbolic link in the output folder: not followed"
                     : saved == ENOTDIR || saved == ELOOP ? "not a folder" : strerror(saved));
            *slash = '/';
            in_path = NULL;
            fail("%s", detail);
            return -1;
        }
        *slash = '/';
        if (fd != root)
            close(fd);
        fd = next;
        part = slash + 1;
    }
    *leaf = part;
    return fd;
}

typedef struct written {
    dev_t dev;
    ino_t ino;
    const char *name;
    size_t name_length;
} written;

/* Is the target `leaf` in `dir` writable: not a symbolic link (never followed, never replaced),
 * not a folder, absent unless `force`, and not a file written a moment ago under another name
 * (on a file system that ignores case, or normalizes Unicode, two names can be one file)?
 * Returns 0, or 1 after printing why. */
static int check_target(int dir, const char *leaf, const char *out_dir, const char *rel, int force,
                        const written *done, size_t ndone, const char *name, size_t name_length)
{
    struct stat st;
    char detail[900], a[200], b[200];
    const char *sep = out_dir[strlen(out_dir) - 1] == '/' ? "" : "/";
    size_t k;
    if (fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return 0;
    for (k = 0; k < ndone; k++) {
        if (done[k].dev == st.st_dev && done[k].ino == st.st_ino) {
            quote_name(a, sizeof a, done[k].name, done[k].name_length);
            quote_name(b, sizeof b, name, name_length);
            snprintf(detail, sizeof detail, "%s and %s are one file in %s (a file system that ignores case?): "
                     "%s would replace %s; not written", a, b, out_dir, b, a);
            return fail("%s", detail);
        }
    }
    if (S_ISLNK(st.st_mode))
        snprintf(detail, sizeof detail, "%s%s%.300s: a symbolic link in the output folder: not followed or replaced",
                 out_dir, sep, rel);
    else if (S_ISDIR(st.st_mode))
        snprintf(detail, sizeof detail, "%s%s%.300s: is a folder", out_dir, sep, rel);
    else if (!force)
        snprintf(detail, sizeof detail, "%s%s%.300s: already exists; use -f/--force to overwrite it", out_dir, sep, rel);
    else
        return 0;
    in_path = NULL;
    return fail("%s", detail);
}

/* `path` and the folders above it, as mkdir -p (the user's own path: links in it are followed). */
static int make_folders(const char *path)
{
    char *copy = (char *)malloc(strlen(path) + 1);
    size_t i, n = strlen(path);
    int ok = 1;
    if (copy == NULL) {
        errno = ENOMEM;
        return 0;
    }
    strcpy(copy, path);
    for (i = 1; i <= n && ok; i++) {
        if (i == n || copy[i] == '/') {
            char saved = copy[i];
            copy[i] = '\0';
            if (mkdir(copy, 0777) != 0 && errno != EEXIST)
                ok = 0;
            copy[i] = saved;
        }
    }
    free(copy);
    return ok;
}

/* The weights file's name in a folder, as dcunpack names a one-file safetensors folder: the
 * source's own (layout "weights") for a source that was not a torch file, else BASE.safetensors
 * with BASE from the source's index or weights name ("model" by default). */
static int weights_name(dcf_ctx *ctx, const layout *l, buf *name)
{
    const char *v;
    size_t vn;
    int torch = dcf_metadata_find(ctx, "dcformat.source_format", 22, &v, &vn) == DCF_OK && vn == 5
                && memcmp(v, "torch", 5) == 0;
    static const char tail_index[] = ".safetensors.index.json", tail[] = ".safetensors";
    if (!torch && l->has_weights && memchr(l->weights.p, '/', l->weights.n) == NULL) {
        put(name, l->weights.p, l->weights.n);
    } else {
        if (!torch && l->has_index && l->index.n > sizeof tail_index - 1
            && memcmp(l->index.p + l->index.n - (sizeof tail_index - 1), tail_index, sizeof tail_index - 1) == 0)
            put(name, l->index.p, l->index.n - (sizeof tail_index - 1));
        else if (!torch && l->has_weights && l->weights.n > sizeof tail - 1
                 && memcmp(l->weights.p + l->weights.n - (sizeof tail - 1), tail, sizeof tail - 1) == 0)
            put(name, l->weights.p, l->weights.n - (sizeof tail - 1));
        else
            puts_(name, "model");
        puts_(name, tail);
    }
    put(name, "", 0);
    if (name->oom)
        return fail("%s", "out of memory");
    if (name->n == 0 || memchr(name->p, '/', name->n) != NULL || memchr(name->p, '\0', name->n) != NULL
        || strcmp(name->p, ".") == 0 || strcmp(name->p, "..") == 0) {
        char q[200], detail[300];
        quote_name(q, sizeof q, name->p, name->n);
        snprintf(detail, sizeof detail, "dcformat.source_layout: shard name %s is not a plain file name", q);
        return fail("%s", detail);
    }
    return 0;
}

/* dcfdecode IN.dcf -o DIR/: DIR/model.safetensors (one file, whatever shards the source had) and
 * every attachment, as `dcunpack IN.dcf -o DIR/` writes them for a one-file safetensors folder. */
static int decode_to_folder(const char *out_dir, int force)
{
    dcf_ctx *ctx = NULL;
    layout l;
    plan p;
    atomic_file a = {0};
    buf wname = {0}, rel = {0};
    written *done = NULL;
    size_t ndone = 0, natt = 0, j;
    uint8_t *bytes = NULL;
    struct stat st;
    int root = -1, status;

    memset(&l, 0, sizeof l);
    memset(&p, 0, sizeof p);
    a.fd = -1; /* no temporary file yet */
    status = open_input(&ctx, &l);
    if (status == 0 && l.onnx)
        status = fail("%s", "packed from an ONNX model: dcfdecode does not rebuild the .onnx file (dcunpack -o "
                            "X.onnx does); -o OUT.safetensors writes its initializers");
    if (status == 0)
        status = weights_name(ctx, &l, &wname);
    if (status == 0)
        status = plan_safetensors(ctx, &l, 1, &p);
    if (status != 0)
        goto done;
    status = 1;
    natt = dcf_attachment_count(ctx);
    done = (written *)calloc(natt + 1, sizeof(written));
    if (done == NULL) {
        status = fail("%s", "out of memory");
        goto done;
    }
    /* Before anything is written: every name checked, every target free (or -f), no link on the way. */
    for (j = 0; j < natt; j++) {
        const char *name, *problem;
        size_t n;
        uint64_t size;
        char q[200], detail[400];
        dcf_get_attachment_info(ctx, j, &name, &n, &size);
        quote_name(q, sizeof q, name, n);
        if ((problem = dcf_attachment_name_problem(name, n)) != NULL) { /* again: spec 4.6.1 asks it of a writer */
            snprintf(detail, sizeof detail, "attachment name %s %s (spec 4.6.1); nothing written", q, problem);
            status = fail("%s", detail);
            goto done;
        }
        if (n == wname.n && memcmp(name, wname.p, n) == 0) {
            snprintf(detail, sizeof detail, "attachment %s has the name of the weights file; nothing written", q);
            status = fail("%s", detail);
            goto done;
        }
    }
    if (stat(out_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            status = write_failed(NULL, out_dir);
            goto done;
        }
        root = open(out_dir, O_RDONLY | O_DIRECTORY);
        if (root < 0) {
            status = write_failed(NULL, out_dir);
            goto done;
        }
        for (j = 0; j <= natt; j++) {
            const char *name = wname.p, *leaf = NULL;
            size_t n = wname.n;
            int dir;
            uint64_t size;
            if (j < natt)
                dcf_get_attachment_info(ctx, j, &name, &n, &size);
            rel.n = 0;
            put(&rel, name, n);
            if (rel.oom) {
                status = fail("%s", "out of memory");
                goto done;
            }
            dir = open_parent(root, rel.p, 0, out_dir, &leaf);
            if (dir == -1)
                goto done;
            if (dir == -2)
                continue;
            status = check_target(dir, leaf, out_dir, rel.p, force, NULL, 0, name, n);
            if (dir != root)
                close(dir);
            if (status != 0)
                goto done;
            status = 1;
        }
        close(root);
    }
    /* every attachment decoded once (CRC and codec checked) before anything is written: a bad one,
     * or a ZSTD one without zstd, leaves no folder half written (they are small next to weights) */
    for (j = 0; j < natt; j++) {
        const char *name;
        size_t n;
        uint64_t size;
        dcf_error_info err;
        dcf_get_attachment_info(ctx, j, &name, &n, &size);
        free(bytes);
        bytes = size <= (uint64_t)(size_t)-1 ? (uint8_t *)malloc(size ? (size_t)size : 1) : NULL;
        if (bytes == NULL) {
            status = fail("%s", "out of memory for an attachment");
            goto done;
        }
        if (dcf_decode_attachment(ctx, j, bytes, (size_t)size, &err) != DCF_OK) {
            status = fail("%s", err.message);
            goto done;
        }
    }
    if (!make_folders(out_dir) || (root = open(out_dir, O_RDONLY | O_DIRECTORY)) < 0) {
        status = write_failed(NULL, out_dir);
        goto done;
    }

    /* the weights */
    if (!atomic_create(&a, root, wname.p)) {
        status = write_failed(out_dir, wname.p);
        goto done;
    }
    status = write_safetensors(ctx, &p, a.fd);
    if (status == 0 && !atomic_commit(&a, wname.p, &st))
        status = -1;
    if (status == -1)
        status = write_failed(out_dir, wname.p);
    if (status != 0)
        goto done;
    status = 1;
    done[0].dev = st.st_dev;
    done[0].ino = st.st_ino;
    done[0].name = wname.p;
    done[0].name_length = wname.n;
    ndone = 1;

    /* the attachments, each decoded (and its CRC checked) before a byte of it is written */
    for (j = 0; j < natt; j++) {
        const char *name, *leaf = NULL;
        size_t n;
        uint64_t size;
        dcf_error_info err;
        int dir;
        dcf_get_attachment_info(ctx, j, &name, &n, &size);
        free(bytes);
        bytes = (uint8_t *)malloc(size ? (size_t)size : 1); /* size fits: checked above */
        if (bytes == NULL) {
            status = fail("%s", "out of memory for an attachment");
            goto done;
        }
        if (dcf_decode_attachment(ctx, j, bytes, (size_t)size, &err) != DCF_OK) {
            status = fail("%s", err.message);
            goto done;
        }
        rel.n = 0;
        put(&rel, name, n);
        if (rel.oom) {
            status = fail("%s", "out of memory");
            goto done;
        }
        dir = open_parent(root, rel.p, 1, out_dir, &leaf);
        if (dir < 0)
            goto done;
        if (check_target(dir, leaf, out_dir, rel.p, force, done, ndone, name, n) != 0) {
            if (dir != root)
                close(dir);
            goto done;
        }
        if (!atomic_create(&a, dir, leaf) || !write_all(a.fd, bytes, (size_t)size) || !atomic_commit(&a, leaf, &st)) {
            atomic_discard(&a);
            if (dir != root)
                close(dir);
            status = write_failed(out_dir, rel.p);
            goto done;
        }
        if (dir != root)
            close(dir);
        done[ndone].dev = st.st_dev;
        done[ndone].ino = st.st_ino;
        done[ndone].name = name;
        done[ndone].name_length = n;
        ndone++;
    }
    status = 0;
done:
    atomic_discard(&a);
    if (root >= 0)
        close(root);
    free(bytes);
    free(done);
    free(rel.p);
    free(wname.p);
    plan_free(&p);
    layout_free(&l);
    dcf_ctx_free(ctx);
    return status;
}

/* ---- --list -------------------------------------------------------------------------------- */

#define LIST_COLUMNS 7
#define LIST_MIN_NAME 12 /* the name column is never cut below this */

/* Columns a line may take: the terminal's (when stdout is one), else COLUMNS, else 80; >= 40. */
static int output_width(void)
{
    const char *columns = getenv("COLUMNS");
    long w = 0;
#ifdef TIOCGWINSZ
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        w = ws.ws_col;
#endif
    if (w == 0 && columns != NULL && *columns != '\0') {
        char *end;
        w = strtol(columns, &end, 10);
        if (*end != '\0')
            w = 0;
    }
    if (w <= 0)
        w = 80;
    return w < 40 ? 40 : w > 100000 ? 100000 : (int)w;
}

/* Characters (UTF-8 code points) of the `n` bytes at `s`: what a terminal shows of them. */
static size_t span_width(const char *s, size_t n)
{
    size_t w = 0, i;
    for (i = 0; i < n; i++)
        w += ((unsigned char)s[i] & 0xC0) != 0x80;
    return w;
}

static size_t text_width(const char *s)
{
    return span_width(s, strlen(s));
}

/* The byte offset of the `k`-th code point of `s` (its length if it has fewer). */
static size_t code_point_offset(const char *s, size_t k)
{
    size_t i = 0;
    for (; s[i] && k > 0; k--)
        for (i++; ((unsigned char)s[i] & 0xC0) == 0x80; i++)
            ;
    return i;
}

/* `s` cut to `width` characters by replacing its middle with "...", into `out` (>= strlen(s)+1). */
static void elide_middle(char *out, const char *s, size_t width)
{
    size_t n = text_width(s), keep, head, tail_from;
    if (n <= width || width <= 3) {
        size_t take = n <= width ? strlen(s) : code_point_offset(s, width);
        memmove(out, s, take);
        out[take] = '\0';
        return;
    }
    keep = width - 3;
    head = code_point_offset(s, (keep + 1) / 2);
    tail_from = code_point_offset(s, n - keep / 2);
    memmove(out, s, head);
    memcpy(out + head, "...", 3);
    memmove(out + head + 3, s + tail_from, strlen(s + tail_from) + 1);
}

/* A dotted tensor name shortened to `width` as dcinfo does: segments from the left cut to their
 * first letter (numbers and the last two segments whole) until it fits, then the middle elided.
 * `out` holds at least strlen(s) + 1 bytes. */
static void shorten_name(char *out, const char *s, size_t width)
{
    size_t segments = 1, seg = 0, o = 0, shown = 0, i = 0, total = text_width(s);
    int cut = 1;
    const char *p;
    for (p = s; *p; p++)
        segments += *p == '.';
    while (s[i] != '\0') {
        size_t end = i, k;
        int digits = 1;
        while (s[end] != '\0' && s[end] != '.')
            end++;
        for (k = i; k < end; k++)
            digits &= s[k] >= '0' && s[k] <= '9';
        if (cut && shown + (total - span_width(s, i)) <= width)
            cut = 0; /* the rest fits whole */
        if (cut && seg + 2 < segments && !digits && end - i > 1) {
            size_t first = code_point_offset(s + i, 1);
            memcpy(out + o, s + i, first);
            o += first;
            shown += 1;
        } else {
            memcpy(out + o, s + i, end - i);
            o += end - i;
            shown += span_width(s + i, end - i);
        }
        if (s[end] == '.') {
            out[o++] = '.';
            shown++;
            end++;
        }
        i = end;
        seg++;
    }
    out[o] = '\0';
    elide_middle(out, out, width);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

/* Row names shortened to `width`, each still telling its row apart: where two shortened names
 * read the same, both are elided in the middle from the whole name instead. */
static int shorten_names(char **names, char **whole, size_t count, size_t width)
{
    char ***order = (char ***)malloc((count ? count : 1) * sizeof *order);
    size_t i, j;
    if (order == NULL)
        return -1;
    for (i = 0; i < count; i++) {
        shorten_name(names[i], whole[i], width);
        order[i] = &names[i];
    }
    qsort(order, count, sizeof *order, compare_strings);
    for (i = 0; i < count; i = j) {
        for (j = i + 1; j < count && strcmp(*order[i], *order[j]) == 0; j++)
            ;
        if (j - i > 1) {
            size_t k;
            for (k = i; k < j; k++) {
                size_t row = (size_t)(order[k] - names);
                elide_middle(names[row], whole[row], width);
            }
        }
    }
    free(order);
    return 0;
}

/* The tensor table. It fits the output's width (output_width): when the whole table is wider,
 * numel and decoded_bytes are left out (a note says so) and the names shortened to fit; `wide`
 * prints every column and the whole names. */
static int list(int wide)
{
    dcf_ctx *ctx = dcf_ctx_new(NULL);
    dcf_error_info err;
    size_t count, i;
    int widths[LIST_COLUMNS] = {4, 5, 5, 6, 5, 13, 12}, shown[LIST_COLUMNS] = {1, 1, 1, 1, 1, 1, 1};
    static const char *const heads[LIST_COLUMNS] = {"name", "dtype", "shape", "layout", "numel", "decoded_bytes",
                                                    "stored_bytes"};
    char (*cells)[LIST_COLUMNS][96];
    char **whole = NULL, **names = NULL;
    int c, status = 0, total, width = output_width(), last;

    if (ctx == NULL)
        return fail("%s", "out of memory");
    if (dcf_open_file(ctx, in_path, &err) != DCF_OK) {
        dcf_ctx_free(ctx);
        return fail("%s", err.message);
    }
    count = dcf_tensor_count(ctx);
    cells = (char (*)[LIST_COLUMNS][96])calloc(count ? count : 1, sizeof *cells);
    whole = (char **)calloc(count ? count : 1, sizeof *whole);
    names = (char **)calloc(count ? count : 1, sizeof *names);
    if (cells == NULL || whole == NULL || names == NULL) {
        status = fail("%s", "out of memory");
        goto done;
    }
    for (i = 0; i < count; i++) {
        dcf_tensor_info t;
        unsigned k;
        size_t o = 0, n;
        dcf_get_tensor_info(ctx, i, &t);
        /* the name whole, control characters escaped (4 bytes each at most) */
        whole[i] = (char *)malloc(4 * t.name_length + 1);
        names[i] = (char *)malloc(4 * t.name_length + 1);
        if (whole[i] == NULL || names[i] == NULL) {
            status = fail("%s", "out of memory");
            goto done;
        }
        for (n = 0; n < t.name_length; n++) {
            unsigned char ch = (unsigned char)t.name[n];
            if (ch < 0x20 || ch == 0x7F)
                o += (size_t)snprintf(whole[i] + o, 5, "\\x%02x", ch);
            else
                whole[i][o++] = (char)ch;
        }
        whole[i][o] = '\0';
        strcpy(names[i], whole[i]);
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
        for (c = 0; c < LIST_COLUMNS; c++) {
            int w = (int)(c == 0 ? text_width(whole[i]) : strlen(cells[i][c]));
            widths[c] = w > widths[c] ? w : widths[c];
        }
    }
    total = 2 * (LIST_COLUMNS - 1);
    for (c = 0; c < LIST_COLUMNS; c++)
        total += widths[c];
    if (!wide && total > width) {
        shown[4] = shown[5] = 0;
        total -= widths[4] + widths[5] + 4;
        if (total > width) {
            int name_width = widths[0] - (total - width);
            widths[0] = name_width < LIST_MIN_NAME ? LIST_MIN_NAME : name_width;
            if (shorten_names(names, whole, count, (size_t)widths[0]) != 0) {
                status = fail("%s", "out of memory");
                goto done;
            }
        }
    }
    for (last = LIST_COLUMNS - 1; !shown[last]; last--)
        ;
    for (c = 0; c < LIST_COLUMNS; c++)
        if (shown[c])
            printf(c < 4 ? "%-*s%s" : "%*s%s", widths[c], heads[c], c < last ? "  " : "\n");
    for (i = 0; i < count; i++) {
        for (c = 0; c < LIST_COLUMNS; c++) {
            if (!shown[c])
                continue;
            if (c == 0) /* padded by characters, not bytes */
                printf("%s%*s  ", names[i], widths[0] - (int)text_width(names[i]), "");
            else
                printf(c < 4 ? "%-*s%s" : "%*s%s", widths[c], cells[i][c], c < last ? "  " : "\n");
        }
    }
    if (!shown[4])
        puts("(--wide: numel, decoded_bytes, whole names)");
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
done:
    for (i = 0; i < count && whole != NULL && names != NULL; i++) {
        free(whole[i]);
        free(names[i]);
    }
    free(whole);
    free(names);
    free(cells);
    dcf_ctx_free(ctx);
    return status;
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
    "       dcfdecode IN.dcf -o FOLDER/ [-f]\n"
    "       dcfdecode --list IN.dcf\n"
    "       dcfdecode --bench [N] [--f32] IN.dcf\n"
    "\n"
    "Decode a .dcf file with libdcf (the C decoder).\n"
    "\n"
    "  -o, --output OUT.safetensors  write every tensor and the metadata, byte for byte the file\n"
    "                                `dcunpack IN.dcf -o OUT.safetensors` writes (atomically:\n"
    "                                a temporary file beside OUT, renamed into place)\n"
    "  -o, --output FOLDER/          a model folder (a name ending in /, an existing folder, or a\n"
    "                                name without a suffix): the weights as ONE safetensors file\n"
    "                                (model.safetensors, or the source's own name; never shards:\n"
    "                                the same file as `dcunpack IN.dcf -o FOLDER/ --format\n"
    "                                safetensors --max-shard-size 1000TB`) and every attachment\n"
    "                                (config.json, tokenizer files, ...) byte-exact, each CRC-checked\n"
    "                                before it is written. Names are checked by the spec's rules\n"
    "                                (relative, no '..', nothing outside FOLDER) and a symbolic link\n"
    "                                inside FOLDER is never followed or replaced\n"
    "  -f, --force                   overwrite existing output files (else refused, and nothing\n"
    "                                is written)\n"
    "  -l, --list                    print the tensor table (name, dtype, shape, layout, numel,\n"
    "                                decoded bytes, stored bytes) and the attachments, fitted to\n"
    "                                the terminal (or COLUMNS, or 80 columns)\n"
    "  -w, --wide                    with --list: every column and the whole names, however wide\n"
    "      --bench [N]               decode every tensor N times (default 5) on one thread and print\n"
    "                                the best pass: decoded bytes, seconds (wall, CPU), MB/s\n"
    "      --f32                     with --bench: floating tensors decoded to float32\n"
    "  -h, --help                    this text\n"
    "      --version                 the version of dcfdecode and libdcf\n"
    "\n"
    "Exit status: 0 done, 1 a bad input file or a failed write (one line on stderr), 2 usage.\n";

/* A folder output, as dcunpack decides: a name ending in '/', an existing folder, or a name whose
 * last component has no suffix (leading dots do not count, as in Python's os.path.splitext). */
static int is_folder_output(const char *out)
{
    struct stat st;
    const char *base = strrchr(out, '/');
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == '/')
        return 1;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return 1;
    base = base ? base + 1 : out;
    while (*base == '.')
        base++;
    return strchr(base, '.') == NULL;
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    int listing = 0, no_more = 0, force = 0, reps = 0, f32 = 0, wide = 0, i;
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
        } else if (strcmp(a, "-w") == 0 || strcmp(a, "--wide") == 0) {
            wide = 1;
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
    if (wide && !listing)
        return usage_error("--wide goes with --list");
    if (listing)
        return list(wide);
    if (reps)
        return bench(reps, f32);
    if (out == NULL)
        return usage_error("no output (-o OUT.safetensors or -o FOLDER/)");
    if (out[0] == '\0')
        return usage_error("-o needs a file name");
    if (is_folder_output(out))
        return decode_to_folder(out, force);
    {
        size_t n = strlen(out);
        struct stat st;
        if (n < 12 || strcmp(out + n - 12, ".safetensors") != 0)
            return usage_error("the output must be a .safetensors file or a folder (FOLDER/)");
        if (!force && lstat(out, &st) == 0) {
            fprintf(stderr, "%s: ", prog);
            put_sanitized(stderr, out, strlen(out));
            fputs(": already exists; use -f/--force to overwrite it\n", stderr);
            return 1;
        }
    }
    return decode_to_safetensors(out);
}
