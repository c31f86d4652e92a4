/*
 * lenet: run a LeNet-300-100 or LeNet-5 stored in a .dcf file on MNIST digits, in plain C99.
 *
 *     lenet MODEL.dcf IMAGES-idx3-ubyte LABELS-idx1-ubyte [--predictions OUT.txt]
 *
 * MODEL.dcf is a file written by `python -m dcformat.torch.reproduce` (lenet-300-100.dcf or
 * lenet-5.dcf); the two IDX files are the digits to classify (libdcf/examples/export_digits.py
 * writes the reproduction's held-out digits). The weights are decoded with libdcf, converted to
 * float32, into buffers this program allocates; the network is recognised by its tensor names
 * (ip1/ip2/ip3: LeNet-300-100; conv1/conv2/ip1/ip2: LeNet-5), and every shape is checked.
 * The layers follow torch: a Linear weight is (out, in), y = W x + b; a Conv2d weight is
 * (out, in, kh, kw), stride 1, no padding; max-pooling 2x2, stride 2; pixels are byte / 255.
 * Sums are accumulated in double and rounded to float once per output.
 *
 * Prints the accuracy ("accuracy 94.60% (946/1000)") on stdout; with --predictions, writes the
 * predicted class of every digit, one per line. Errors: one line on stderr, exit status 1.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcf.h"

#define PIXELS 784
#define CLASSES 10

static const char *prog = "lenet";

static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: error: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ---- weights from the .dcf file ---- */

typedef struct {
    float *data;
    uint64_t numel;
} tensor;

/* Decode the tensor `name` to float32 into a new buffer; its shape must be `rank` dims `dims`. */
static tensor load(dcf_ctx *ctx, const char *name, unsigned rank, const uint64_t *dims)
{
    size_t i;
    dcf_tensor_info info;
    dcf_error_info err;
    uint64_t bytes;
    tensor t;
    unsigned d;

    if (dcf_find_tensor(ctx, name, strlen(name), &i) != DCF_OK)
        die("the model has no tensor '%s'", name);
    if (dcf_get_tensor_info(ctx, i, &info) != DCF_OK)
        die("tensor '%s': cannot read its entry", name);
    if (info.rank != rank)
        die("tensor '%s' has rank %u, expected %u", name, info.rank, rank);
    for (d = 0; d < rank; d++)
        if (info.shape[d] != dims[d])
            die("tensor '%s': dimension %u is %llu, expected %llu", name, d,
                (unsigned long long)info.shape[d], (unsigned long long)dims[d]);
    if (dcf_decoded_size(ctx, i, DCF_OUT_F32, &bytes, &err) != DCF_OK)
        die("tensor '%s': %s", name, err.message);
    t.numel = info.numel;
    t.data = malloc(bytes ? (size_t)bytes : 1);
    if (!t.data)
        die("out of memory for tensor '%s'", name);
    if (dcf_decode_tensor(ctx, i, t.data, (size_t)bytes, DCF_OUT_F32, &err) != DCF_OK)
        die("%s", err.message);
    return t;
}

static int has_tensor(dcf_ctx *ctx, const char *name)
{
    size_t i;
    return dcf_find_tensor(ctx, name, strlen(name), &i) == DCF_OK;
}

/* ---- IDX files (LeCun's MNIST format): 00 00 08 ndim, big-endian u32 dims, bytes ---- */

static uint8_t *read_idx(const char *path, unsigned ndim, uint32_t *dims)
{
    FILE *f = fopen(path, "rb");
    uint8_t head[4], be[4];
    uint64_t total = 1;
    unsigned d;
    uint8_t *data;
    int extra;

    if (!f)
        die("%s: %s", path, strerror(errno));
    if (fread(head, 1, 4, f) != 4 || head[0] != 0 || head[1] != 0)
        die("%s: not an IDX file", path);
    if (head[2] != 0x08)
        die("%s: IDX element type 0x%02x, expected unsigned bytes (0x08)", path, head[2]);
    if (head[3] != ndim)
        die("%s: %u dimensions, expected %u", path, head[3], ndim);
    for (d = 0; d < ndim; d++) {
        if (fread(be, 1, 4, f) != 4)
            die("%s: IDX header truncated", path);
        dims[d] = (uint32_t)be[0] << 24 | (uint32_t)be[1] << 16 | (uint32_t)be[2] << 8 | be[3];
        total *= dims[d];
        if (total > ((uint64_t)1 << 31))
            die("%s: IDX dimensions too large", path);
    }
    data = malloc(total ? (size_t)total : 1);
    if (!data)
        die("out of memory reading %s", path);
    if (fread(data, 1, (size_t)total, f) != total)
        die("%s: IDX data truncated", path);
    extra = fgetc(f);
    fclose(f);
    if (extra != EOF)
        die("%s: bytes after the IDX data", path);
    return data;
}

/* ---- layers ---- */

/* y[o] = b[o] + sum_i W[o][i] x[i], W of shape (out, in) (torch's Linear), then ReLU if asked. */
static void linear(const tensor *w, const tensor *b, const float *x, size_t in, size_t out, float *y,
                   int relu)
{
    size_t o, i;
    for (o = 0; o < out; o++) {
        const float *row = w->data + o * in;
        double s = b->data[o];
        for (i = 0; i < in; i++)
            s += (double)row[i] * x[i];
        y[o] = (float)s;
        if (relu && y[o] < 0.0f)
            y[o] = 0.0f;
    }
}

/* Valid 2-D convolution, stride 1: x (cin, h, w), weight (cout, cin, k, k) -> y (cout, h-k+1, w-k+1). */
static void conv2d(const tensor *w, const tensor *b, const float *x, size_t cin, size_t h, size_t wd,
                   size_t cout, size_t k, float *y)
{
    size_t oh = h - k + 1, ow = wd - k + 1, co, ci, r, c, i, j;
    for (co = 0; co < cout; co++)
        for (r = 0; r < oh; r++)
            for (c = 0; c < ow; c++) {
                double s = b->data[co];
                for (ci = 0; ci < cin; ci++) {
                    const float *kern = w->data + ((co * cin + ci) * k) * k;
                    const float *plane = x + ci * h * wd;
                    for (i = 0; i < k; i++)
                        for (j = 0; j < k; j++)
                            s += (double)kern[i * k + j] * plane[(r + i) * wd + c + j];
                }
                y[(co * oh + r) * ow + c] = (float)s;
            }
}

/* 2x2 max-pooling, stride 2: x (ch, h, w) -> y (ch, h/2, w/2). */
static void maxpool2(const float *x, size_t ch, size_t h, size_t w, float *y)
{
    size_t c, r, q, oh = h / 2, ow = w / 2;
    for (c = 0; c < ch; c++)
        for (r = 0; r < oh; r++)
            for (q = 0; q < ow; q++) {
                const float *p = x + (c * h + 2 * r) * w + 2 * q;
                float m = p[0];
                if (p[1] > m) m = p[1];
                if (p[w] > m) m = p[w];
                if (p[w + 1] > m) m = p[w + 1];
                y[(c * oh + r) * ow + q] = m;
            }
}

static int argmax(const float *v, size_t n)
{
    size_t i, best = 0;
    for (i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return (int)best;
}

/* ---- the two networks ---- */

typedef struct {
    int lenet5;
    tensor w[4], b[4];
} model;

static model load_model(dcf_ctx *ctx)
{
    model m;
    memset(&m, 0, sizeof m);
    m.lenet5 = has_tensor(ctx, "conv1.weight");
    if (!m.lenet5) { /* LeNet-300-100: 784-300-100-10 */
        static const uint64_t w1[] = {300, 784}, w2[] = {100, 300}, w3[] = {10, 100};
        static const uint64_t b1[] = {300}, b2[] = {100}, b3[] = {10};
        m.w[0] = load(ctx, "ip1.weight", 2, w1); m.b[0] = load(ctx, "ip1.bias", 1, b1);
        m.w[1] = load(ctx, "ip2.weight", 2, w2); m.b[1] = load(ctx, "ip2.bias", 1, b2);
        m.w[2] = load(ctx, "ip3.weight", 2, w3); m.b[2] = load(ctx, "ip3.bias", 1, b3);
    } else { /* LeNet-5: conv 20 5x5, pool, conv 50 5x5, pool, fc 500, ReLU, fc 10 */
        static const uint64_t c1[] = {20, 1, 5, 5}, c2[] = {50, 20, 5, 5}, f1[] = {500, 800}, f2[] = {10, 500};
        static const uint64_t b1[] = {20}, b2[] = {50}, b3[] = {500}, b4[] = {10};
        m.w[0] = load(ctx, "conv1.weight", 4, c1); m.b[0] = load(ctx, "conv1.bias", 1, b1);
        m.w[1] = load(ctx, "conv2.weight", 4, c2); m.b[1] = load(ctx, "conv2.bias", 1, b2);
        m.w[2] = load(ctx, "ip1.weight", 2, f1); m.b[2] = load(ctx, "ip1.bias", 1, b3);
        m.w[3] = load(ctx, "ip2.weight", 2, f2); m.b[3] = load(ctx, "ip2.bias", 1, b4);
    }
    return m;
}

static int predict(const model *m, const float *x)
{
    float logits[CLASSES];
    if (!m->lenet5) {
        float h1[300], h2[100];
        linear(&m->w[0], &m->b[0], x, PIXELS, 300, h1, 1);
        linear(&m->w[1], &m->b[1], h1, 300, 100, h2, 1);
        linear(&m->w[2], &m->b[2], h2, 100, CLASSES, logits, 0);
    } else {
        static float c1[20 * 24 * 24], p1[20 * 12 * 12], c2[50 * 8 * 8], p2[50 * 4 * 4], h[500];
        conv2d(&m->w[0], &m->b[0], x, 1, 28, 28, 20, 5, c1);
        maxpool2(c1, 20, 24, 24, p1);
        conv2d(&m->w[1], &m->b[1], p1, 20, 12, 12, 50, 5, c2);
        maxpool2(c2, 50, 8, 8, p2);
        linear(&m->w[2], &m->b[2], p2, 800, 500, h, 1);
        linear(&m->w[3], &m->b[3], h, 500, CLASSES, logits, 0);
    }
    return argmax(logits, CLASSES);
}

int main(int argc, char **argv)
{
    const char *paths[3] = {NULL, NULL, NULL}, *predictions = NULL;
    int npaths = 0, a;
    dcf_ctx *ctx;
    dcf_error_info err;
    uint32_t idims[3], ldims[1];
    uint8_t *images, *labels;
    model m;
    size_t n, k, correct = 0, t;
    FILE *out = NULL;

    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--predictions") == 0 && a + 1 < argc)
            predictions = argv[++a];
        else if (argv[a][0] == '-' && argv[a][1] != '\0') {
            fprintf(stderr, "usage: %s MODEL.dcf IMAGES-idx3-ubyte LABELS-idx1-ubyte [--predictions OUT]\n", prog);
            return 2;
        } else if (npaths < 3)
            paths[npaths++] = argv[a];
        else
            npaths = 4;
    }
    if (npaths != 3) {
        fprintf(stderr, "usage: %s MODEL.dcf IMAGES-idx3-ubyte LABELS-idx1-ubyte [--predictions OUT]\n", prog);
        return 2;
    }

    ctx = dcf_ctx_new(NULL);
    if (!ctx)
        die("out of memory");
    if (dcf_open_file(ctx, paths[0], &err) != DCF_OK)
        die("%s: %s", paths[0], err.message);
    m = load_model(ctx);

    images = read_idx(paths[1], 3, idims);
    labels = read_idx(paths[2], 1, ldims);
    if (idims[1] != 28 || idims[2] != 28)
        die("%s: images of %ux%u pixels, expected 28x28", paths[1], idims[1], idims[2]);
    if (ldims[0] != idims[0])
        die("%u images but %u labels", idims[0], ldims[0]);
    n = idims[0];
    if (predictions && !(out = fopen(predictions, "w")))
        die("%s: %s", predictions, strerror(errno));
    for (k = 0; k < n; k++) {
        float x[PIXELS];
        size_t p;
        int label;
        for (p = 0; p < PIXELS; p++)
            x[p] = (float)images[k * PIXELS + p] / 255.0f;
        label = predict(&m, x);
        if (labels[k] > 9)
            die("%s: label %u of digit %lu is not 0..9", paths[2], labels[k], (unsigned long)k);
        correct += label == labels[k];
        if (out)
            fprintf(out, "%d\n", label);
    }
    if (out && fclose(out) != 0)
        die("%s: %s", predictions, strerror(errno));
    printf("%s: %s, %lu digits\n", paths[0], m.lenet5 ? "LeNet-5" : "LeNet-300-100", (unsigned long)n);
    printf("accuracy %.2f%% (%lu/%lu)\n", n ? 100.0 * (double)correct / (double)n : 0.0, (unsigned long)correct,
           (unsigned long)n);
    for (t = 0; t < 4; t++) {
        free(m.w[t].data);
        free(m.b[t].data);
    }
    free(images);
    free(labels);
    dcf_ctx_free(ctx);
    return 0;
}
