/*
 * models._fastscore: the incremental scorer's inner loop, compiled.
 *
 * The pure-Python scorer (models/scorer.py) is the specification; this file
 * does the same arithmetic, in the same order and with the same formulas, so
 * its results are bit-for-bit those of the Python path (tests/test_fastscore.py
 * checks it on random streams). It does four things the Python path does with
 * a list of term objects and two dicts:
 *
 *   1. split a text into terms exactly as models.tokenize.Tokenizer does
 *      (letters and digits as CPython's regular expressions define them,
 *      joined by apostrophes that have one on both sides; terms longer than
 *      the tokenizer's limit dropped), lower-casing ASCII text on the fly;
 *   2. look each term up in an open-addressing table of the vocabulary,
 *      without creating a Python object per term;
 *   3. count the writing's in-vocabulary terms, in order of first appearance
 *      (the URL token, if any, last: where the tokenizer puts it);
 *   4. fold the counts into the user's running sums and their count dict.
 *
 * Text with URLs, or non-ASCII text, is normalised by the tokenizer in Python
 * first (URL removal, Unicode lower-casing), then scanned here.
 *
 * Tokenizer version 2 features (negation scope, lexicon pseudo-terms; see
 * models/tokenize.py) run here too when the Vocab is given them: the table
 * then also holds "extra" keys (negation cues, scope enders, lexicon entries
 * joined by one space, and the proper suffixes of multi-word entries) with
 * flags, the id of their negated term ("neg:KEY") and, for entries, the
 * (term id, negated term id) pairs they count for. Per word: one lookup;
 * then lexicon entries ending at the word: matching extends backwards one
 * word at a time only while the words so far are a suffix of some entry and
 * the word before may precede them in one (a bit set of adjacent word
 * pairs), and emits hits shortest first, as the Python path does.
 *
 * Built as an optional extension: if it cannot be compiled, the scorer falls
 * back to the Python path, which gives the same numbers, only slower.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LOG_TABLE 4096 /* must equal len(models.scorer._LOG_TF) */
#define MAX_TERM_BYTES 1024 /* max_len is capped so that max_len * 4 fits */
#define MAX_PHRASE 8 /* must equal models.tokenize.MAX_PHRASE_WORDS; a power of two */

/* Flags of a key of the table (version 2 features). */
#define F_CUE 1     /* a negation cue */
#define F_ENDER 2   /* a word that ends a negation scope */
#define F_SUFFIX 4  /* a proper suffix of a multi-word lexicon entry */
#define F_HIT 8     /* a lexicon entry: hits to count */

static double LOG_TF[LOG_TABLE];
static double LOG_TF_SQ[LOG_TABLE];

static inline double log_tf(long c) { return c ? 1.0 + log((double)c) : 0.0; }

/* ASCII letters and digits (apostrophes are handled apart), and lower-casing. */
static unsigned char IS_ALNUM[128];
static unsigned char LOWER[128];
/* Clause boundaries (models.tokenize.CLAUSE_BOUNDARIES), ASCII part. */
static unsigned char IS_BOUND[128];
static const char ASCII_BOUNDARIES[] = ".,;:!?()[]{}\"\n";

static inline int is_bound(Py_UCS4 ch)
{
    if (ch < 128)
        return IS_BOUND[ch];
    return ch == 0x2026 || ch == 0x2013 || ch == 0x2014 || ch == 0x201C || ch == 0x201D;
}

/* A slot of the table: 16 bytes, so a probe touches one cache line. It holds
 * the key's first eight bytes (zero-padded), its length and its flags: for a
 * key of up to eight bytes (most words) a probe decides without reading
 * anything else; longer keys compare the rest of their bytes in blob. */
typedef struct {
    uint64_t head;        /* the key's first 8 bytes (see key_hash), zero-padded */
    int32_t key;          /* -1: empty */
    uint16_t len;
    uint8_t flags;        /* the key's F_* (a copy of KeyRef.flags) */
    uint8_t pad;
} Slot;

/* A key: where its bytes are in blob, and what tokenizer version 2 features
 * need of it, together so one word costs one more cache line at most. */
typedef struct {
    uint32_t off;
    uint16_t len;
    uint8_t flags;        /* F_* */
    uint8_t hit_n;        /* number of hits (lexicon entries) */
    int32_t hit_off;      /* first of its hits in hits[] */
    int32_t neg_of;       /* term id of "neg:KEY", -1 if none */
} KeyRef;

/* What scoring needs of a term, together: one cache line for a term's
 * weights and key. */
typedef struct {
    double w;             /* coef * idf */
    double q;             /* idf ** 2 */
    PyObject *id;         /* its id as a Python int, made once */
    void *pad;            /* 32 bytes: two to a cache line */
} TermInfo;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n_terms;   /* keys 0 .. n_terms - 1 are the vocabulary's terms */
    Py_ssize_t n_keys;    /* and n_terms .. n_keys - 1 extra keys (features) */
    uint64_t mask;        /* table size - 1 (a power of two) */
    Slot *slots;          /* open addressing, linear probing */
    KeyRef *keys;         /* per key */
    char *blob;
    TermInfo *term;       /* per term id */
    int32_t url_id;       /* id of the URL token, -1 if not in the vocabulary */
    int max_len;          /* longest term the tokenizer keeps */
    int sublinear;
    /* version 2 features */
    int featureful;       /* negation or lexicons on: the feature scanner */
    int neg_window;       /* words in a negation's scope (0: no negation) */
    int has_lex;          /* lexicon entries to match */
    int32_t *hits;        /* (term id, negated term id) pairs; -1 if not a term */
    uint64_t *pairs;      /* bit set: (key, next key) adjacent in some lexicon entry */
    uint64_t pair_mask;   /* bits - 1 */
} Vocab;

/* Bit of the pair (a, b) of keys in the adjacency bit set. */
static inline uint64_t pair_bit(const Vocab *v, int32_t a, int32_t b)
{
    uint64_t x = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ULL;
    return (x >> 29) & v->pair_mask;
}

static inline int pair_maybe(const Vocab *v, int32_t a, int32_t b)
{
    uint64_t bit = pair_bit(v, a, b);
    return (int)(v->pairs[bit >> 6] >> (bit & 63) & 1);
}

/* Hash of a key's bytes (the table's own: any good mix will do), and in
 * *head its first eight bytes (see Slot). Eight bytes at a time, so a word
 * costs a multiply or two, not one per byte. */
static inline uint64_t key_hash(const unsigned char *s, Py_ssize_t n, uint64_t *head)
{
    uint64_t h = (uint64_t)n * 0x9E3779B97F4A7C15ULL;
    int short_key = n < 8;
    if (!short_key)
        memcpy(head, s, 8);
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        h = (h ^ x) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t x = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        x |= (uint64_t)s[i] << (8 * i);
    if (short_key)
        *head = x;
    h = (h ^ x) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 29;
    h *= 0x94D049BB133111EBULL;
    h ^= h >> 32;
    return h;
}

/* memcmp(a, b, n) == 0 for the short keys of a vocabulary, without a call. */
static inline int same_bytes(const char *a, const unsigned char *b, Py_ssize_t n)
{
    while (n >= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y)
            return 0;
        a += 8;
        b += 8;
        n -= 8;
    }
    while (n > 0) {
        if ((unsigned char)*a++ != *b++)
            return 0;
        n--;
    }
    return 1;
}

/* The key of bytes s[0..n), -1 if none; *flags: its flags (0 if none). */
static inline int32_t vocab_find_flags(const Vocab *v, const unsigned char *s, Py_ssize_t n,
                                       unsigned char *flags)
{
    uint64_t head;
    uint64_t i = key_hash(s, n, &head) & v->mask;
    for (;;) {
        const Slot *slot = &v->slots[i];
        if (slot->key < 0) {
            *flags = 0;
            return -1;
        }
        if (slot->head == head && slot->len == n
            && (n <= 8 || same_bytes(v->blob + v->keys[slot->key].off + 8, s + 8, n - 8))) {
            *flags = slot->flags;
            return slot->key;
        }
        i = (i + 1) & v->mask;
    }
}

static int32_t vocab_find(const Vocab *v, const unsigned char *s, Py_ssize_t n)
{
    unsigned char flags;
    return vocab_find_flags(v, s, n, &flags);
}

static void Vocab_dealloc(Vocab *v)
{
    if (v->term) {
        for (Py_ssize_t i = 0; i < v->n_terms; i++)
            Py_XDECREF(v->term[i].id);
    }
    PyMem_Free(v->term);
    PyMem_Free(v->slots);
    PyMem_Free(v->keys);
    PyMem_Free(v->blob);
    PyMem_Free(v->hits);
    PyMem_Free(v->pairs);
    Py_TYPE(v)->tp_free((PyObject *)v);
}

/* Insert key bytes [pos, pos + len) as key k (which must not be present). */
static void table_insert(Vocab *v, int32_t k, const char *pos, Py_ssize_t len)
{
    v->keys[k].off = (uint32_t)(pos - v->blob);
    v->keys[k].len = (uint16_t)len;
    v->keys[k].flags = 0;
    v->keys[k].hit_n = 0;
    v->keys[k].hit_off = 0;
    v->keys[k].neg_of = -1;
    uint64_t head;
    uint64_t s = key_hash((const unsigned char *)pos, len, &head) & v->mask;
    while (v->slots[s].key >= 0)
        s = (s + 1) & v->mask;
    v->slots[s].key = k;
    v->slots[s].head = head;
    v->slots[s].len = (uint16_t)len;
    v->slots[s].flags = 0;
    v->slots[s].pad = 0;
}

/* Vocab(terms, w, q, url_term, max_len, sublinear, negation_window=0, extra=None,
 *       pairs=None):
 * terms is a list whose item i is the UTF-8 (surrogatepass) bytes of term i;
 * w and q are lists of floats of the same length. extra (tokenizer version 2
 * features) is a list of (key: bytes, flags: int, hits: list of int,
 * negated: int) where hits holds (term id, negated term id) pairs, flat, and
 * negated is the term id of "neg:KEY" (-1 if none); a key may repeat a term
 * (its flags and hits are then the term's). pairs lists (key, next key)
 * byte pairs adjacent in some lexicon entry (both must be keys): phrase
 * matching extends backwards over a word only if the pair may be one. */
static int Vocab_init(Vocab *v, PyObject *args, PyObject *kwds)
{
    PyObject *terms, *w, *q, *extra = NULL, *pairs = NULL;
    const char *url;
    Py_ssize_t url_len;
    int max_len, sublinear, neg_window = 0;
    static char *kwlist[] = {"terms", "w", "q", "url_term", "max_len", "sublinear",
                             "negation_window", "extra", "pairs", NULL};

    if (v->n_terms || v->slots) {
        PyErr_SetString(PyExc_RuntimeError, "Vocab is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!y#ip|iO!O!", kwlist, &PyList_Type,
                                     &terms, &PyList_Type, &w, &PyList_Type, &q, &url, &url_len,
                                     &max_len, &sublinear, &neg_window, &PyList_Type, &extra,
                                     &PyList_Type, &pairs))
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(terms);
    Py_ssize_t n_extra = extra ? PyList_GET_SIZE(extra) : 0;
    if (PyList_GET_SIZE(w) != n || PyList_GET_SIZE(q) != n) {
        PyErr_SetString(PyExc_ValueError, "terms, w and q must have the same length");
        return -1;
    }
    if (n + n_extra >= INT32_MAX / 4) {
        PyErr_SetString(PyExc_ValueError, "vocabulary too large");
        return -1;
    }
    if (neg_window < 0) {
        PyErr_SetString(PyExc_ValueError, "negation_window must be >= 0");
        return -1;
    }
    Py_ssize_t blob_size = 0, n_hits = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(terms, i);
        if (!PyBytes_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "terms must be bytes");
            return -1;
        }
        if (PyBytes_GET_SIZE(t) > 0xFFFF) {
            PyErr_SetString(PyExc_ValueError, "term too long");
            return -1;
        }
        blob_size += PyBytes_GET_SIZE(t);
    }
    for (Py_ssize_t i = 0; i < n_extra; i++) {
        PyObject *e = PyList_GET_ITEM(extra, i);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 4
            || !PyBytes_Check(PyTuple_GET_ITEM(e, 0)) || !PyLong_Check(PyTuple_GET_ITEM(e, 1))
            || !PyList_Check(PyTuple_GET_ITEM(e, 2))
            || PyList_GET_SIZE(PyTuple_GET_ITEM(e, 2)) % 2
            || !PyLong_Check(PyTuple_GET_ITEM(e, 3))) {
            PyErr_SetString(PyExc_TypeError, "extra items must be (key: bytes, flags: int, "
                                             "hits: list of pairs, negated: int)");
            return -1;
        }
        if (PyBytes_GET_SIZE(PyTuple_GET_ITEM(e, 0)) > 0xFFFF) {
            PyErr_SetString(PyExc_ValueError, "key too long");
            return -1;
        }
        blob_size += PyBytes_GET_SIZE(PyTuple_GET_ITEM(e, 0));
        n_hits += PyList_GET_SIZE(PyTuple_GET_ITEM(e, 2));
    }
    if (blob_size >= (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "vocabulary too large");
        return -1;
    }
    Py_ssize_t n_cap = n + n_extra;
    uint64_t cap = 16;
    while (cap < (uint64_t)n_cap * 2 + 1)
        cap <<= 1;
    v->mask = cap - 1;
    v->slots = PyMem_Malloc(cap * sizeof(Slot));
    v->keys = PyMem_Calloc(n_cap ? n_cap : 1, sizeof(KeyRef));
    v->blob = PyMem_Malloc(blob_size ? blob_size : 1);
    v->term = PyMem_Calloc(n ? n : 1, sizeof(TermInfo));
    v->hits = PyMem_Malloc((n_hits ? n_hits : 1) * sizeof(int32_t));
    Py_ssize_t n_pairs = pairs ? PyList_GET_SIZE(pairs) : 0;
    uint64_t pair_bits = 1 << 12;
    while (pair_bits < (uint64_t)n_pairs * 16)
        pair_bits <<= 1;
    v->pair_mask = pair_bits - 1;
    v->pairs = PyMem_Calloc(pair_bits / 64, sizeof(uint64_t));
    if (!v->slots || !v->keys || !v->blob || !v->term || !v->hits
        || !v->pairs) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint64_t i = 0; i < cap; i++) {
        memset(&v->slots[i], 0, sizeof(Slot));
        v->slots[i].key = -1;
    }

    v->n_terms = n;
    v->n_keys = 0;
    char *pos = v->blob;
    for (Py_ssize_t i = 0; i < n; i++) {
        v->term[i].w = PyFloat_AsDouble(PyList_GET_ITEM(w, i));
        v->term[i].q = PyFloat_AsDouble(PyList_GET_ITEM(q, i));
        if (PyErr_Occurred())
            return -1;
        v->term[i].id = PyLong_FromSsize_t(i);
        if (!v->term[i].id)
            return -1;
        PyObject *t = PyList_GET_ITEM(terms, i);
        Py_ssize_t len = PyBytes_GET_SIZE(t);
        memcpy(pos, PyBytes_AS_STRING(t), len);
        if (vocab_find(v, (const unsigned char *)pos, len) >= 0) {
            PyErr_SetString(PyExc_ValueError, "duplicate term in vocabulary");
            return -1;
        }
        table_insert(v, (int32_t)i, pos, len);
        v->n_keys++;
        pos += len;
    }
    Py_ssize_t hit_pos = 0;
    for (Py_ssize_t i = 0; i < n_extra; i++) {
        PyObject *e = PyList_GET_ITEM(extra, i);
        PyObject *key = PyTuple_GET_ITEM(e, 0), *hl = PyTuple_GET_ITEM(e, 2);
        long fl = PyLong_AsLong(PyTuple_GET_ITEM(e, 1));
        if (fl == -1 && PyErr_Occurred())
            return -1;
        Py_ssize_t len = PyBytes_GET_SIZE(key);
        int32_t k = vocab_find(v, (const unsigned char *)PyBytes_AS_STRING(key), len);
        if (k < 0) {
            memcpy(pos, PyBytes_AS_STRING(key), len);
            k = (int32_t)v->n_keys++;
            table_insert(v, k, pos, len);
            pos += len;
        } else if (k >= n || v->keys[k].flags || v->keys[k].hit_n || v->keys[k].neg_of >= 0) {
            PyErr_SetString(PyExc_ValueError, "duplicate extra key");
            return -1;
        }
        if (fl < 0 || fl > 0xFF) {
            PyErr_SetString(PyExc_ValueError, "flags out of range");
            return -1;
        }
        v->keys[k].flags = (uint8_t)fl;
        long neg = PyLong_AsLong(PyTuple_GET_ITEM(e, 3));
        if (neg == -1 && PyErr_Occurred())
            return -1;
        if (neg < -1 || neg >= n) {
            PyErr_SetString(PyExc_ValueError, "negated term id out of range");
            return -1;
        }
        v->keys[k].neg_of = (int32_t)neg;
        Py_ssize_t nh = PyList_GET_SIZE(hl);
        if (nh / 2 > 0xFF) {
            PyErr_SetString(PyExc_ValueError, "too many hits for one key");
            return -1;
        }
        v->keys[k].hit_off = (int32_t)hit_pos;
        v->keys[k].hit_n = (uint8_t)(nh / 2);
        for (Py_ssize_t j = 0; j < nh; j++) {
            long id = PyLong_AsLong(PyList_GET_ITEM(hl, j));
            if (id == -1 && PyErr_Occurred())
                return -1;
            if (id < -1 || id >= n) {
                PyErr_SetString(PyExc_ValueError, "hit term id out of range");
                return -1;
            }
            v->hits[hit_pos++] = (int32_t)id;
        }
        if (nh)
            v->keys[k].flags |= F_HIT;
        if (v->keys[k].flags & (F_SUFFIX | F_HIT))
            v->has_lex = 1;
    }
    for (Py_ssize_t i = 0; i < n_pairs; i++) {
        PyObject *pr = PyList_GET_ITEM(pairs, i);
        if (!PyTuple_Check(pr) || PyTuple_GET_SIZE(pr) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(pr, 0))
            || !PyBytes_Check(PyTuple_GET_ITEM(pr, 1))) {
            PyErr_SetString(PyExc_TypeError, "pairs items must be (bytes, bytes)");
            return -1;
        }
        PyObject *a = PyTuple_GET_ITEM(pr, 0), *b = PyTuple_GET_ITEM(pr, 1);
        int32_t ka = vocab_find(v, (const unsigned char *)PyBytes_AS_STRING(a), PyBytes_GET_SIZE(a));
        int32_t kb = vocab_find(v, (const unsigned char *)PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
        if (ka < 0 || kb < 0) {
            PyErr_SetString(PyExc_ValueError, "both words of a pair must be keys");
            return -1;
        }
        uint64_t bit = pair_bit(v, ka, kb);
        v->pairs[bit >> 6] |= 1ULL << (bit & 63);
    }
    for (uint64_t i = 0; i <= v->mask; i++) {
        if (v->slots[i].key >= 0)
            v->slots[i].flags = v->keys[v->slots[i].key].flags;
    }
    v->neg_window = neg_window;
    v->featureful = neg_window > 0 || v->has_lex;
    v->url_id = vocab_find(v, (const unsigned char *)url, url_len);
    if (v->url_id >= n)
        v->url_id = -1;
    if (max_len < 0 || max_len > MAX_TERM_BYTES / 4) {
        PyErr_SetString(PyExc_ValueError, "max_len out of range");
        return -1;
    }
    v->max_len = max_len;
    v->sublinear = sublinear;
    return 0;
}

/* The distinct in-vocabulary terms of one writing, in order of first appearance.
 * Sized for the words a text can hold; lexicon pseudo-terms can add more
 * distinct ids than words, so the bag grows (doubling) when half full. */
typedef struct {
    int32_t *id;     /* distinct ids, in order */
    long *count;     /* their counts */
    Py_ssize_t n;
    int32_t *slot;   /* open addressing: index into id/count, -1 if empty */
    uint64_t mask;   /* slots - 1; id and count hold as many entries as slots */
    int on_stack;    /* the arrays are the caller's stack buffers */
    int failed;      /* growing failed (out of memory): the caller raises */
} Bag;

static int bag_init(Bag *b, Py_ssize_t max_terms, int32_t *stack_slot, int32_t *stack_id,
                    long *stack_count, Py_ssize_t stack_cap)
{
    uint64_t cap = 16;
    while (cap < (uint64_t)max_terms * 2 + 1)
        cap <<= 1;
    b->n = 0;
    b->mask = cap - 1;
    b->failed = 0;
    if ((Py_ssize_t)cap <= stack_cap) {
        b->slot = stack_slot;
        b->id = stack_id;
        b->count = stack_count;
        b->on_stack = 1;
    } else {
        b->slot = PyMem_Malloc(cap * sizeof(int32_t));
        b->id = PyMem_Malloc(cap * sizeof(int32_t));
        b->count = PyMem_Malloc(cap * sizeof(long));
        b->on_stack = 0;
        if (!b->slot || !b->id || !b->count) {
            PyMem_Free(b->slot);
            PyMem_Free(b->id);
            PyMem_Free(b->count);
            PyErr_NoMemory();
            return -1;
        }
    }
    memset(b->slot, 0xff, cap * sizeof(int32_t));
    return 0;
}

static void bag_free(Bag *b)
{
    if (!b->on_stack) {
        PyMem_Free(b->slot);
        PyMem_Free(b->id);
        PyMem_Free(b->count);
    }
}

static inline uint64_t bag_home(const Bag *b, int32_t id)
{
    return ((uint64_t)id * 0x9E3779B97F4A7C15ULL) >> 20 & b->mask;
}

/* Double the bag, keeping its entries and their order. */
static void bag_grow(Bag *b)
{
    uint64_t cap = (b->mask + 1) * 2;
    int32_t *slot = PyMem_Malloc(cap * sizeof(int32_t));
    int32_t *id = PyMem_Malloc(cap * sizeof(int32_t));
    long *count = PyMem_Malloc(cap * sizeof(long));
    if (!slot || !id || !count) {
        PyMem_Free(slot);
        PyMem_Free(id);
        PyMem_Free(count);
        b->failed = 1;
        return;
    }
    memcpy(id, b->id, b->n * sizeof(int32_t));
    memcpy(count, b->count, b->n * sizeof(long));
    bag_free(b);
    b->slot = slot;
    b->id = id;
    b->count = count;
    b->on_stack = 0;
    b->mask = cap - 1;
    memset(slot, 0xff, cap * sizeof(int32_t));
    for (Py_ssize_t k = 0; k < b->n; k++) {
        uint64_t i = bag_home(b, id[k]);
        while (slot[i] >= 0)
            i = (i + 1) & b->mask;
        slot[i] = (int32_t)k;
    }
}

static inline void bag_add(Bag *b, int32_t id, long d)
{
    uint64_t i = bag_home(b, id);
    for (;;) {
        int32_t k = b->slot[i];
        if (k < 0) {
            if ((uint64_t)(b->n + 1) * 2 > b->mask + 1) {
                if (b->failed)
                    return;
                bag_grow(b);
                if (b->failed)
                    return;
                i = bag_home(b, id);
                while (b->slot[i] >= 0)
                    i = (i + 1) & b->mask;
            }
            b->slot[i] = (int32_t)b->n;
            b->id[b->n] = id;
            b->count[b->n] = d;
            b->n++;
            return;
        }
        if (b->id[k] == id) {
            b->count[k] += d;
            return;
        }
        i = (i + 1) & b->mask;
    }
}

#define STACK_SLOTS 1024

/* Is ch (a code point of a lower-cased text) a letter or digit, as the
 * tokenizer's regular expression [^\W_] decides? For str patterns that is
 * exactly Py_UNICODE_ISALNUM (the definition of \w in CPython's sre, minus '_'). */
static inline int is_alnum(Py_UCS4 ch)
{
    return ch < 128 ? IS_ALNUM[ch] : Py_UNICODE_ISALNUM(ch);
}

/* Case-insensitive search of an ASCII text for "http" or "www.": where the
 * tokenizer looks for URLs (after lower-casing). */
static int may_have_url(const unsigned char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i + 3 < n; i++) {
        unsigned char c = s[i] | 0x20;
        if (c == 'h') {
            if ((s[i + 1] | 0x20) == 't' && (s[i + 2] | 0x20) == 't' && (s[i + 3] | 0x20) == 'p')
                return 1;
        } else if (c == 'w') {
            if ((s[i + 1] | 0x20) == 'w' && (s[i + 2] | 0x20) == 'w' && s[i + 3] == '.')
                return 1;
        }
    }
    return 0;
}

/* UTF-8 of one code point (surrogates as "surrogatepass" writes them). */
static inline int utf8_put(unsigned char *out, Py_UCS4 ch)
{
    if (ch < 0x80) {
        out[0] = (unsigned char)ch;
        return 1;
    }
    if (ch < 0x800) {
        out[0] = (unsigned char)(0xC0 | (ch >> 6));
        out[1] = (unsigned char)(0x80 | (ch & 0x3F));
        return 2;
    }
    if (ch < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (ch >> 12));
        out[1] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (ch & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (ch >> 18));
    out[1] = (unsigned char)(0x80 | ((ch >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (ch & 0x3F));
    return 4;
}

/* The current clause, for negation scope and lexicon phrases (version 2). */
#define KEY_CAP (MAX_PHRASE * (MAX_TERM_BYTES + 1))
typedef struct {
    int scope;          /* words left in the current negation's scope */
    int n_clause;       /* words of the clause so far, at most MAX_PHRASE */
    int head;           /* ring slot of the next word */
    int wlen[MAX_PHRASE];
    int32_t wkey[MAX_PHRASE];   /* the word's key, -1 if it has none */
    unsigned char wscoped[MAX_PHRASE];
    const unsigned char *wptr[MAX_PHRASE];  /* the word's bytes (in the scan's buffer) */
    unsigned char key[KEY_CAP];
} Clause;

static inline void clause_end(Clause *cl)
{
    cl->scope = 0;
    cl->n_clause = 0;
}

/* One word (lower-cased UTF-8 at term[0..len), which stays in place for the
 * rest of the scan): count its term and the lexicon entries ending at it,
 * as models.tokenize.Tokenizer._features does. */
#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

static ALWAYS_INLINE void feature_word(const Vocab *v, Clause *cl, Bag *bag,
                                       const unsigned char *term, Py_ssize_t len)
{
    unsigned char fl;
    int32_t k = vocab_find_flags(v, term, len, &fl);
    int in_scope = 0;
    if (v->neg_window) {
        if ((fl & F_CUE)
            || (len >= 3 && term[len - 3] == 'n' && term[len - 2] == '\'' && term[len - 1] == 't'))
            cl->scope = v->neg_window;
        else if (fl & F_ENDER)
            cl->scope = 0;
        else if (cl->scope) {
            cl->scope--;
            in_scope = 1;
        }
    }
    if (in_scope) {
        /* "neg:WORD": every WORD with a negated term is a key (see extra). */
        int32_t nk = k >= 0 ? v->keys[k].neg_of : -1;
        if (nk >= 0)
            bag_add(bag, nk, 1);
    } else if (k >= 0 && k < v->n_terms) {
        bag_add(bag, k, 1);
    }
    if (!v->has_lex)
        return;
    int slot = cl->head;
    cl->wptr[slot] = term;
    cl->wlen[slot] = (int)len;
    cl->wkey[slot] = k;
    cl->wscoped[slot] = (unsigned char)in_scope;
    cl->head = (slot + 1) & (MAX_PHRASE - 1);
    if (cl->n_clause < MAX_PHRASE)
        cl->n_clause++;
    /* Entries ending at this word, shortest first: extend backwards while the
     * words so far are a suffix of some entry (and the word before may
     * precede the first of them in an entry). */
    Py_ssize_t kpos = KEY_CAP;
    int n_words = 1, s = slot;
    for (;;) {
        if (fl & F_HIT) {
            const int32_t *h = v->hits + v->keys[k].hit_off;
            int neg = cl->wscoped[s];
            for (int t = 0; t < v->keys[k].hit_n; t++) {
                int32_t id = h[2 * t + neg];
                if (id >= 0)
                    bag_add(bag, id, 1);
            }
        }
        if (!(fl & F_SUFFIX) || n_words >= cl->n_clause)
            break;
        int p = (s - 1) & (MAX_PHRASE - 1);
        if (cl->wkey[p] < 0 || !pair_maybe(v, cl->wkey[p], cl->wkey[s]))
            break;
        if (kpos == KEY_CAP) {
            kpos -= len;
            memcpy(cl->key + kpos, term, len);
        }
        s = p;
        kpos -= cl->wlen[s] + 1;
        memcpy(cl->key + kpos, cl->wptr[s], cl->wlen[s]);
        cl->key[kpos + cl->wlen[s]] = ' ';
        n_words++;
        k = vocab_find_flags(v, cl->key + kpos, KEY_CAP - kpos, &fl);
    }
}

/* feature_scan's loop for normalised (lower-cased) text with non-ASCII characters. */
static void feature_scan_unicode(const Vocab *v, Clause *cl, Bag *bag, int kind,
                                 const void *data, Py_ssize_t n, unsigned char *term)
{
    Py_ssize_t i = 0;
    while (i < n) {
        Py_UCS4 ch;
        while (i < n && !is_alnum(ch = PyUnicode_READ(kind, data, i))) {
            if (is_bound(ch))
                clause_end(cl);
            i++;
        }
        if (i >= n)
            break;
        Py_ssize_t start = i;
        for (;;) {
            while (i < n && is_alnum(PyUnicode_READ(kind, data, i)))
                i++;
            if (i + 1 < n && PyUnicode_READ(kind, data, i) == '\''
                && is_alnum(PyUnicode_READ(kind, data, i + 1))) {
                i++;
                continue;
            }
            break;
        }
        Py_ssize_t len = i - start;
        if (len <= v->max_len) {
            int nbytes = 0;
            for (Py_ssize_t k = start; k < i; k++)
                nbytes += utf8_put(term + nbytes, PyUnicode_READ(kind, data, k));
            feature_word(v, cl, bag, term, nbytes);
            term += nbytes;
        }
    }
}

#define SCAN_STACK 4096

/* The feature scanner's pass over a text: the same word splitting as the
 * plain loops of Vocab_update, plus clause boundaries. Words are written,
 * lower-cased (UTF-8), one after the other into a buffer that lasts the
 * whole scan, so phrase matching can read the words before the current one.
 * Returns -1 (MemoryError set) if that buffer cannot be had. */
static int feature_scan(const Vocab *v, Bag *bag, PyObject *text, int ascii)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Clause cl;
    cl.scope = 0;
    cl.n_clause = 0;
    cl.head = 0;
    unsigned char stack_buf[SCAN_STACK];
    Py_ssize_t need = (ascii ? n : 4 * n) + 1;
    unsigned char *buf = need <= SCAN_STACK ? stack_buf : PyMem_Malloc(need);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    unsigned char *term = buf;
    Py_ssize_t i = 0;
    if (ascii) {
        const unsigned char *s = (const unsigned char *)data;
        while (i < n) {
            while (i < n && !IS_ALNUM[s[i]]) {
                if (IS_BOUND[s[i]])
                    clause_end(&cl);
                i++;
            }
            if (i >= n)
                break;
            Py_ssize_t start = i;
            for (;;) {
                while (i < n && IS_ALNUM[s[i]])
                    i++;
                if (i + 1 < n && s[i] == '\'' && IS_ALNUM[s[i + 1]]) {
                    i++;
                    continue;
                }
                break;
            }
            Py_ssize_t len = i - start;
            if (len <= v->max_len) {
                for (Py_ssize_t k = 0; k < len; k++)
                    term[k] = LOWER[s[start + k]];
                feature_word(v, &cl, bag, term, len);
                term += len;
            }
        }
    } else {
        feature_scan_unicode(v, &cl, bag, kind, data, n, term);
    }
    if (buf != stack_buf)
        PyMem_Free(buf);
    return 0;
}

/* Prefetching the user's count dict. The dict of a user with a long history
 * is far bigger than the caches, and one writing touches some tens of its
 * terms: looked up one after the other, each costs two cache misses (its
 * index slot, then its entry) paid in series. Knowing CPython 3.11's dict
 * layout, the loop below asks for all the index slots at once, then for all
 * the entries, so the misses overlap; counts_get then reads the counts and
 * PyDict_SetItem writes them. A
 * prefetch never faults and changes no result; the only reads are of the
 * dict's header and its index table, both valid memory. Other Python
 * versions (another layout) skip it. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && defined(__GNUC__)
#define PREFETCH_COUNTS 1
typedef struct {             /* struct _dictkeysobject of CPython 3.11 */
    Py_ssize_t dk_refcnt;
    uint8_t dk_log2_size;
    uint8_t dk_log2_index_bytes;
    uint8_t dk_kind;         /* 0: DICT_KEYS_GENERAL (any keys, 24-byte entries) */
    uint32_t dk_version;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
} DictKeys311;

typedef struct {
    Py_hash_t me_hash;
    PyObject *me_key;
    PyObject *me_value;
} DictEntry311;

static inline Py_ssize_t dict_index(const DictKeys311 *dk, int ib, size_t i)
{
    switch (ib) {
    case 0: return ((const int8_t *)dk->dk_indices)[i];
    case 1: return ((const int16_t *)dk->dk_indices)[i];
    case 2: return ((const int32_t *)dk->dk_indices)[i];
    default: return (Py_ssize_t)((const int64_t *)dk->dk_indices)[i];
    }
}

/* Prefetch the first probe of each id of ids[0..n) in counts (an int's hash
 * is itself for ids this small), and then its entry. */
static void prefetch_counts(const Vocab *v, PyObject *counts, const int32_t *ids,
                            Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++)
        __builtin_prefetch(&v->term[ids[k]]);
    const DictKeys311 *dk = (const DictKeys311 *)((PyDictObject *)counts)->ma_keys;
    if (((PyDictObject *)counts)->ma_values != NULL || dk->dk_kind != 0 || n < 2)
        return;
    int ib = dk->dk_log2_index_bytes - dk->dk_log2_size;
    if (ib < 0 || ib > 3)
        return;
    size_t mask = ((size_t)1 << dk->dk_log2_size) - 1;
    for (Py_ssize_t k = 0; k < n; k++)
        __builtin_prefetch(dk->dk_indices + (((size_t)ids[k] & mask) << ib));
    const DictEntry311 *ep =
        (const DictEntry311 *)(dk->dk_indices + ((size_t)1 << dk->dk_log2_index_bytes));
    Py_ssize_t n_entries = dk->dk_nentries;
    for (Py_ssize_t k = 0; k < n; k++) {
        __builtin_prefetch(v->term[ids[k]].id);  /* PyDict_SetItem increfs it */
        Py_ssize_t ix = dict_index(dk, ib, (size_t)ids[k] & mask);
        if (ix >= 0 && ix < n_entries)
            __builtin_prefetch(&ep[ix]);
    }
    /* Prefetches have no effect GCC must keep: without this, it finds the
     * function pure and drops the call. */
    __asm__ __volatile__("" : : : "memory");
}

/* The value of key (the int id, whose hash is id itself) in counts, found as
 * CPython 3.11's lookup finds it (same probe sequence), in the entries just
 * prefetched and without a call: 1 and *value (borrowed) if there, 0 if not,
 * -1 if this cannot tell (another table kind, or a key of equal hash that is
 * not an int) and PyDict_GetItemWithError must. Reads only. */
static inline int counts_get(PyObject *counts, PyObject *key, int32_t id, PyObject **value)
{
    const DictKeys311 *dk = (const DictKeys311 *)((PyDictObject *)counts)->ma_keys;
    if (((PyDictObject *)counts)->ma_values != NULL || dk->dk_kind != 0)
        return -1;
    int ib = dk->dk_log2_index_bytes - dk->dk_log2_size;
    if (ib < 0 || ib > 3)
        return -1;
    size_t mask = ((size_t)1 << dk->dk_log2_size) - 1;
    const DictEntry311 *ep0 =
        (const DictEntry311 *)(dk->dk_indices + ((size_t)1 << dk->dk_log2_index_bytes));
    size_t i = (size_t)id & mask, perturb = (size_t)id;
    for (;;) {
        Py_ssize_t ix = dict_index(dk, ib, i);
        if (ix == -1) {   /* DKIX_EMPTY */
            *value = NULL;
            return 0;
        }
        if (ix >= 0) {
            const DictEntry311 *ep = &ep0[ix];
            if (ep->me_key == key) {
                *value = ep->me_value;
                return 1;
            }
            if (ep->me_hash == (Py_hash_t)id) {
                if (!PyLong_CheckExact(ep->me_key))
                    return -1;
                int overflow;
                long other = PyLong_AsLongAndOverflow(ep->me_key, &overflow);
                if (!overflow && other == id) {
                    *value = ep->me_value;
                    return 1;
                }
            }
        }
        perturb >>= 5;  /* PERTURB_SHIFT */
        i = (i * 5 + perturb + 1) & mask;
    }
}
#endif

/* Vocab.update(text, n_urls, counts, u1, u2) -> (t1, t2, u1, u2), or None
 *
 * text: a writing (str). With n_urls >= 0 it has been through
 * Tokenizer.normalize (lower-cased, URLs blanked, curly apostrophes
 * straightened) and had n_urls URLs. With n_urls == -1 it is raw: if it is
 * ASCII and has no "http" or "www." in it, normalising would only lower-case
 * it, which the scan does on the fly; otherwise the answer is None and the
 * caller normalises it and asks again.
 * counts: the user's {term id: count} dict, updated in place; u1, u2: the
 * user's running sums. Returns the writing's own sums and the user's new ones. */
static PyObject *Vocab_update(Vocab *v, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "update(text, n_urls, counts, u1, u2)");
        return NULL;
    }
    if (!PyUnicode_Check(args[0]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "update: text must be a str and counts a dict");
        return NULL;
    }
    PyObject *text = args[0];
    if (PyUnicode_READY(text) < 0)
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    long n_urls = PyLong_AsLong(args[1]);
    PyObject *counts = args[2];
    double u1 = PyFloat_AsDouble(args[3]);
    double u2 = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred())
        return NULL;
    int ascii = PyUnicode_IS_ASCII(text);
    if (n_urls < 0) {
        if (!ascii || may_have_url((const unsigned char *)data, n))
            Py_RETURN_NONE;
        n_urls = 0;
    }

    /* A text of n characters has at most n/2 + 1 terms. */
    int32_t stack_slot[STACK_SLOTS], stack_id[STACK_SLOTS];
    long stack_count[STACK_SLOTS];
    Bag bag;
    if (bag_init(&bag, n / 2 + 2, stack_slot, stack_id, stack_count, STACK_SLOTS) < 0)
        return NULL;
    unsigned char term[MAX_TERM_BYTES];

    if (v->featureful) {
        if (feature_scan(v, &bag, text, ascii) < 0) {
            bag_free(&bag);
            return NULL;
        }
    } else if (ascii) {
        const unsigned char *s = (const unsigned char *)data;
        Py_ssize_t i = 0;
        while (i < n) {
            /* Skip to the start of a term: a letter or digit (a leading
             * apostrophe has no letter or digit before it, so it is never
             * part of a term). */
            while (i < n && !IS_ALNUM[s[i]])
                i++;
            if (i >= n)
                break;
            Py_ssize_t start = i;
            for (;;) {
                while (i < n && IS_ALNUM[s[i]])
                    i++;
                /* An apostrophe joins two runs when a letter or digit follows it. */
                if (i + 1 < n && s[i] == '\'' && IS_ALNUM[s[i + 1]]) {
                    i++;
                    continue;
                }
                break;
            }
            Py_ssize_t len = i - start;
            if (len <= v->max_len) {
                for (Py_ssize_t k = 0; k < len; k++)
                    term[k] = LOWER[s[start + k]];
                int32_t id = vocab_find(v, term, len);
                if (id >= 0 && id < v->n_terms)
                    bag_add(&bag, id, 1);
            }
        }
    } else {
        /* Normalised (already lower-cased) text with non-ASCII characters. */
        Py_ssize_t i = 0;
        while (i < n) {
            while (i < n && !is_alnum(PyUnicode_READ(kind, data, i)))
                i++;
            if (i >= n)
                break;
            Py_ssize_t start = i;
            for (;;) {
                while (i < n && is_alnum(PyUnicode_READ(kind, data, i)))
                    i++;
                if (i + 1 < n && PyUnicode_READ(kind, data, i) == '\''
                    && is_alnum(PyUnicode_READ(kind, data, i + 1))) {
                    i++;
                    continue;
                }
                break;
            }
            Py_ssize_t len = i - start;
            if (len <= v->max_len) {
                int nbytes = 0;
                for (Py_ssize_t k = start; k < i; k++)
                    nbytes += utf8_put(term + nbytes, PyUnicode_READ(kind, data, k));
                int32_t id = vocab_find(v, term, nbytes);
                if (id >= 0 && id < v->n_terms)
                    bag_add(&bag, id, 1);
            }
        }
    }
    if (n_urls > 0 && v->url_id >= 0)
        bag_add(&bag, v->url_id, n_urls);
    if (bag.failed) {
        bag_free(&bag);
        return PyErr_NoMemory();
    }

#ifdef PREFETCH_COUNTS
    prefetch_counts(v, counts, bag.id, bag.n);
#endif
    double t1 = 0.0, t2 = 0.0;
    for (Py_ssize_t k = 0; k < bag.n; k++) {
        int32_t id = bag.id[k];
        long d = bag.count[k];
        double w = v->term[id].w, q = v->term[id].q;
        PyObject *key = v->term[id].id;
        PyObject *old;
#ifdef PREFETCH_COUNTS
        int got = counts_get(counts, key, id, &old);
        if (got < 0)
            old = PyDict_GetItemWithError(counts, key);
#else
        old = PyDict_GetItemWithError(counts, key);
#endif
        long c = 0;
        if (old != NULL) {
            c = PyLong_AsLong(old);
            if (c == -1 && PyErr_Occurred())
                goto error;
        } else if (PyErr_Occurred()) {
            goto error;
        }
        long e = c + d;
        if (v->sublinear) {
            if (e < LOG_TABLE) {
                t1 += w * LOG_TF[d];
                t2 += q * LOG_TF_SQ[d];
                u1 += w * (LOG_TF[e] - LOG_TF[c]);
                u2 += q * (LOG_TF_SQ[e] - LOG_TF_SQ[c]);
            } else {
                double tf = log_tf(d), nw = log_tf(e), od = log_tf(c);
                t1 += w * tf;
                t2 += q * tf * tf;
                u1 += w * (nw - od);
                u2 += q * (nw * nw - od * od);
            }
        } else {
            double dd = (double)d;
            t1 += w * dd;
            t2 += q * dd * dd;
            u1 += w * dd;
            u2 += q * (double)(2 * c + d) * dd;
        }
        PyObject *val = PyLong_FromLong(e);
        if (val == NULL)
            goto error;
        int rc = PyDict_SetItem(counts, key, val);
        Py_DECREF(val);
        if (rc < 0)
            goto error;
    }
    bag_free(&bag);
    return Py_BuildValue("(dddd)", t1, t2, u1, u2);

error:
    bag_free(&bag);
    return NULL;
}

static PyObject *Vocab_lookup(Vocab *v, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "lookup(term: bytes)");
        return NULL;
    }
    int32_t k = vocab_find(v, (const unsigned char *)PyBytes_AS_STRING(arg),
                           PyBytes_GET_SIZE(arg));
    return PyLong_FromLong(k < v->n_terms ? k : -1);
}

static PyMethodDef Vocab_methods[] = {
    {"update", (PyCFunction)(void (*)(void))Vocab_update, METH_FASTCALL,
     "update(text, n_urls, counts, u1, u2) -> (t1, t2, u1, u2)"},
    {"lookup", (PyCFunction)Vocab_lookup, METH_O, "lookup(term) -> id, or -1"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject VocabType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "models._fastscore.Vocab",
    .tp_basicsize = sizeof(Vocab),
    .tp_dealloc = (destructor)Vocab_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The vocabulary of a model, for the compiled scoring loop.",
    .tp_methods = Vocab_methods,
    .tp_init = (initproc)Vocab_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef fastscore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastscore",
    .m_doc = "Compiled inner loop of the incremental scorer (see models/scorer.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastscore(void)
{
    LOG_TF[0] = 0.0;
    LOG_TF_SQ[0] = 0.0;
    for (long c = 1; c < LOG_TABLE; c++) {
        LOG_TF[c] = 1.0 + log((double)c);
        LOG_TF_SQ[c] = LOG_TF[c] * LOG_TF[c];
    }
    for (int c = 0; c < 128; c++) {
        IS_ALNUM[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        LOWER[c] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : (unsigned char)c;
    }
    for (const char *b = ASCII_BOUNDARIES; *b; b++)
        IS_BOUND[(unsigned char)*b] = 1;
    if (PyType_Ready(&VocabType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastscore_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&VocabType);
    if (PyModule_AddObject(m, "Vocab", (PyObject *)&VocabType) < 0) {
        Py_DECREF(&VocabType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "LOG_TABLE", LOG_TABLE) < 0
        || PyModule_AddIntConstant(m, "MAX_PHRASE", MAX_PHRASE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
