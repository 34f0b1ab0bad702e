/* A recorded call's payload packed in C, when the redaction pass would leave it as it is.
 *
 * `pack_slots` looks each call id up in the payload ring's map of call id -> slot and packs the
 * call as msgpack `[call_id, payload.redacted(kept)]` onto a bytearray, marking the slot taken. A
 * kept call is the payload ring's slot itself (a list in KEPT_FIELDS order) or recorder.KeptCall
 * (a tuple in that order); a call the map lacks, or whose slot the ring gave to a later call, is
 * GONE. A payload goes to the Python pass (BY_PYTHON) when it holds a value that is not a plain
 * str, int, float, bool, None, list, tuple or dict, a text longer than `limit` or not valid UTF-8,
 * a container deeper than the pass's MAX_DEPTH or longer than its MAX_ITEMS, an int msgpack cannot
 * carry, or a map key that is neither a str nor an int.
 *
 * Texts are not looked at here: each str not in the set `clean` is appended to the list `fresh`,
 * each map key not in the set `keys` to `fresh_keys`. The caller (payload_pack.py) uses the bytes
 * only once it knows every one of them comes out of the pass unchanged; otherwise it takes the
 * Python pass for this payload. So the bytes are always those of the redacted payload.
 *
 * It runs on the job's server thread, under the GIL, and calls no Python code: nothing else runs
 * while it walks the job's lists and dicts, and it keeps no reference to them (only to the call
 * ids it was given, in the lists it returns). Nor does it take one while it walks: no Python code
 * can run to change a container (nothing called here runs any, releases the GIL or allocates a
 * container, which could start a collection), so the references the containers hold stay valid;
 * and a reference count written is a cache line taken from the job's core, where the job will
 * want it next.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* As in redact.py: containers deeper than this become "…", longer ones are cut. */
#define MAX_DEPTH 12
#define MAX_ITEMS 500
#define KEY_LIMIT 1024 /* a map key's text is cut at this many characters */
/* A payload packing larger than this is left to the Python pass (the writer refuses it there). */
#define MAX_BYTES (16 * 1024 * 1024)
/* The packing buffer is kept between payloads up to this size. */
#define KEEP_BUFFER (256 * 1024)

typedef struct {
    char *data;
    Py_ssize_t size;
    Py_ssize_t capacity;
    Py_ssize_t limit;   /* texts longer than this (in characters) need the Python pass */
    PyObject *clean;    /* set of texts known to come out of the pass unchanged */
    PyObject *long_clean; /* dict: fingerprint -> a long text of `clean` (see `seen_long`) */
    PyObject *keys;     /* set of map keys known to be plain */
    PyObject *secret_keys; /* set of map keys known to be credentials' names (is_secret_name) */
    PyObject *header_keys; /* set of map keys known to name headers (`...headers`), not credentials */
    PyObject *fresh;    /* list: texts to look at */
    PyObject *fresh_keys; /* list: map keys to look at */
    PyObject *fresh_lines; /* list: the lines of the texts in `fresh` not known clean (see `note_lines`) */
} Packer;

/* Every `put` returns OK, PYTHON (the Python pass must do this payload) or FAILED (an exception is set). */
enum { OK = 0, PYTHON = 1, FAILED = -1 };

static int
reserve(Packer *p, Py_ssize_t more)
{
    if (p->size + more <= p->capacity)
        return OK;
    if (p->size + more > MAX_BYTES)
        return PYTHON;
    Py_ssize_t capacity = p->capacity ? p->capacity : 4096;
    while (capacity < p->size + more)
        capacity *= 2;
    char *data = PyMem_Realloc(p->data, (size_t)capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    p->data = data;
    p->capacity = capacity;
    return OK;
}

static int
put_bytes(Packer *p, const void *bytes, Py_ssize_t n)
{
    int status = reserve(p, n);
    if (status != OK)
        return status;
    memcpy(p->data + p->size, bytes, (size_t)n);
    p->size += n;
    return OK;
}

static int
put_head(Packer *p, unsigned char code, uint64_t value, int width)
{
    unsigned char out[9];
    out[0] = code;
    for (int i = 0; i < width; i++)
        out[1 + i] = (unsigned char)(value >> (8 * (width - 1 - i)));
    return put_bytes(p, out, 1 + width);
}

static int
put_length(Packer *p, unsigned char fix, Py_ssize_t fix_below, unsigned char c8, unsigned char c16,
           unsigned char c32, Py_ssize_t n)
{
    if (n < fix_below) {
        unsigned char code = (unsigned char)(fix | n);
        return put_bytes(p, &code, 1);
    }
    if (c8 && n < 256)
        return put_head(p, c8, (uint64_t)n, 1);
    if (n < 65536)
        return put_head(p, c16, (uint64_t)n, 2);
    return put_head(p, c32, (uint64_t)n, 4);
}

static int
put_int(Packer *p, PyObject *value)
{
    int overflow = 0;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (number == -1 && PyErr_Occurred())
        return FAILED;
    if (overflow < 0)
        return PYTHON;
    if (overflow > 0) {
        unsigned long long big = PyLong_AsUnsignedLongLong(value);
        if (big == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return PYTHON; /* msgpack cannot carry it: the Python pass says so its own way */
        }
        return put_head(p, 0xcf, big, 8);
    }
    /* The smallest encoding, as msgpack's own packer chooses it. */
    if (number >= 0) {
        if (number < 128) {
            unsigned char code = (unsigned char)number;
            return put_bytes(p, &code, 1);
        }
        if (number < 256)
            return put_head(p, 0xcc, (uint64_t)number, 1);
        if (number < 65536)
            return put_head(p, 0xcd, (uint64_t)number, 2);
        if (number < 4294967296LL)
            return put_head(p, 0xce, (uint64_t)number, 4);
        return put_head(p, 0xcf, (uint64_t)number, 8);
    }
    if (number >= -32) {
        unsigned char code = (unsigned char)(int8_t)number;
        return put_bytes(p, &code, 1);
    }
    if (number >= -128)
        return put_head(p, 0xd0, (uint64_t)(uint8_t)(int8_t)number, 1);
    if (number >= -32768)
        return put_head(p, 0xd1, (uint64_t)(uint16_t)(int16_t)number, 2);
    if (number >= -2147483648LL)
        return put_head(p, 0xd2, (uint64_t)(uint32_t)(int32_t)number, 4);
    return put_head(p, 0xd3, (uint64_t)number, 8);
}

static int
put_float(Packer *p, PyObject *value)
{
    double number = PyFloat_AS_DOUBLE(value);
    uint64_t bits;
    memcpy(&bits, &number, sizeof bits);
    return put_head(p, 0xcb, bits, 8);
}

/* Texts this long are first looked for by their fingerprint: hashing a fresh str reads all of it
 * (a module's instructions come as a new str with every call); comparing it with the one found reads
 * it too, but several times faster. */
#define LONG_TEXT 128

static unsigned long long
mix(unsigned long long h, const unsigned char *bytes, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ bytes[i]) * 1099511628211ULL;
    return h;
}

/* Its length, kind, and 16 bytes at its start, middle and end: equal texts have equal fingerprints. */
static unsigned long long
text_fingerprint(PyObject *text)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text) * PyUnicode_KIND(text);
    const unsigned char *data = PyUnicode_DATA(text);
    unsigned long long h = 14695981039346656037ULL ^ (unsigned long long)n ^ ((unsigned long long)PyUnicode_KIND(text) << 56);
    Py_ssize_t part = n < 16 ? n : 16;
    h = mix(h, data, part);
    h = mix(h, data + n / 2 - part / 2, part);
    h = mix(h, data + n - part, part);
    return h;
}

/* 1 when `text` equals the long clean text of its fingerprint, 0 when not known that way, -1 on error. */
static int
seen_long(Packer *p, PyObject *text)
{
    if (((PyASCIIObject *)text)->hash != -1)
        return 0; /* hashed already: the set finds it at no cost */
    PyObject *key = PyLong_FromUnsignedLongLong(text_fingerprint(text));
    if (key == NULL)
        return -1;
    PyObject *known = PyDict_GetItemWithError(p->long_clean, key); /* an int key: no Python code runs */
    Py_DECREF(key);
    if (known == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyUnicode_CheckExact(known) || PyUnicode_GET_LENGTH(known) != PyUnicode_GET_LENGTH(text) ||
        PyUnicode_KIND(known) != PyUnicode_KIND(text))
        return 0;
    return memcmp(PyUnicode_DATA(known), PyUnicode_DATA(text),
                  (size_t)(PyUnicode_GET_LENGTH(text) * PyUnicode_KIND(text))) == 0;
}

/* A str of the old kind (before 3.12, none is made any more) made ready to read. */
static int
text_ready(PyObject *text)
{
#if PY_VERSION_HEX < 0x030C0000
    return PyUnicode_READY(text);
#else
    (void)text;
    return 0;
#endif
}

/* A str as msgpack's str type. */
static int
emit_text(Packer *p, PyObject *text)
{
    if (text_ready(text) < 0)
        return FAILED;
    if (PyUnicode_IS_COMPACT_ASCII(text)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(text);
        int status = put_length(p, 0xa0, 32, 0xd9, 0xda, 0xdb, n);
        return status != OK ? status : put_bytes(p, PyUnicode_DATA(text), n);
    }
    /* A temporary UTF-8 copy: asking the str for its own UTF-8 form would keep one in the job's object. */
    PyObject *utf8 = PyUnicode_AsUTF8String(text);
    if (utf8 == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return FAILED;
        PyErr_Clear();
        return PYTHON; /* a lone surrogate: the pass escapes it */
    }
    Py_ssize_t n = PyBytes_GET_SIZE(utf8);
    int status = put_length(p, 0xa0, 32, 0xd9, 0xda, 0xdb, n);
    if (status == OK)
        status = put_bytes(p, PyBytes_AS_STRING(utf8), n);
    Py_DECREF(utf8);
    return status;
}

/* Lines known to come out of the redaction pattern unchanged: redact.Redactor.clean_lines, as
 * `know_clean_lines` was last given it. A fresh text's lines are looked up here by their bytes,
 * with no str made for each (a str made, hashed and let go for every line of every fresh text
 * was most of what looking at the texts cost); only the others become strs, in `fresh_lines`.
 * A line once found clean stays so (the pattern's quick look depends on the line alone; credentials
 * are looked for in the whole texts, payload_pack.py), so a table older than the set is still
 * right: it may only miss lines, which are then looked at. One-byte (Latin-1) lines only. */
typedef struct {
    unsigned long long print;
    PyObject *line; /* a str of one-byte kind; NULL: free */
} CleanLine;

static CleanLine *clean_lines = NULL;
static size_t clean_mask = 0;  /* the table's size - 1 (a power of two) */
static size_t clean_count = 0; /* lines in it */

/* A line's bytes mixed eight at a time (a line can be a long passage); equal lines, equal prints. */
static unsigned long long
line_print(const unsigned char *bytes, Py_ssize_t n)
{
    unsigned long long h = 14695981039346656037ULL ^ (unsigned long long)n, word;
    Py_ssize_t at = 0;
    for (; at + 8 <= n; at += 8) {
        memcpy(&word, bytes + at, 8);
        h = (h ^ word) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 32;
    }
    word = 0;
    memcpy(&word, bytes + at, (size_t)(n - at));
    h = (h ^ word) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

static int
line_known(const unsigned char *bytes, Py_ssize_t n)
{
    if (clean_lines == NULL)
        return 0;
    unsigned long long print = line_print(bytes, n);
    for (size_t at = (size_t)print & clean_mask;; at = (at + 1) & clean_mask) {
        PyObject *line = clean_lines[at].line;
        if (line == NULL)
            return 0;
        if (clean_lines[at].print == print && PyUnicode_GET_LENGTH(line) == n &&
            memcmp(PyUnicode_DATA(line), bytes, (size_t)n) == 0)
            return 1;
    }
}

static void
forget_clean_lines(void)
{
    if (clean_lines != NULL) {
        for (size_t at = 0; at <= clean_mask; at++)
            Py_XDECREF(clean_lines[at].line);
        PyMem_Free(clean_lines);
    }
    clean_lines = NULL;
    clean_mask = 0;
    clean_count = 0;
}

/* Into `table` (size mask + 1, with room): the entry, unless its line is there already (0: kept). */
static int
place_line(CleanLine *table, size_t mask, unsigned long long print, PyObject *line)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(line);
    size_t at = (size_t)print & mask;
    for (; table[at].line != NULL; at = (at + 1) & mask)
        if (table[at].print == print && PyUnicode_GET_LENGTH(table[at].line) == n &&
            memcmp(PyUnicode_DATA(table[at].line), PyUnicode_DATA(line), (size_t)n) == 0)
            return 1;
    table[at].print = print;
    table[at].line = line;
    return 0;
}

/* Each one-byte str of the iterable `lines` into the table (others skipped), grown to stay under
 * half full. */
static int
add_lines(PyObject *lines)
{
    PyObject *iterator = PyObject_GetIter(lines);
    if (iterator == NULL)
        return -1;
    PyObject *line;
    while ((line = PyIter_Next(iterator)) != NULL) {
        if (!PyUnicode_CheckExact(line) || text_ready(line) < 0 || PyUnicode_KIND(line) != PyUnicode_1BYTE_KIND) {
            PyErr_Clear();
            Py_DECREF(line);
            continue;
        }
        if (clean_lines == NULL || 2 * (clean_count + 1) > clean_mask + 1) { /* grown: each entry again */
            size_t size = clean_lines == NULL ? 64 : 2 * (clean_mask + 1);
            CleanLine *table = PyMem_Calloc(size, sizeof(CleanLine));
            if (table == NULL) {
                Py_DECREF(line);
                Py_DECREF(iterator);
                PyErr_NoMemory();
                return -1;
            }
            for (size_t at = 0; clean_lines != NULL && at <= clean_mask; at++)
                if (clean_lines[at].line != NULL)
                    place_line(table, size - 1, clean_lines[at].print, clean_lines[at].line);
            PyMem_Free(clean_lines);
            clean_lines = table;
            clean_mask = size - 1;
        }
        unsigned long long print = line_print(PyUnicode_DATA(line), PyUnicode_GET_LENGTH(line));
        if (place_line(clean_lines, clean_mask, print, line))
            Py_DECREF(line); /* there already */
        else
            clean_count += 1; /* the table keeps the reference PyIter_Next gave */
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : 0;
}

/* `know_clean_lines(lines)`: the table made again from the set of lines known clean (a set begun
 * again: redact._BoundedSet); `add_clean_lines(lines)` adds those that joined it since (the
 * caller says which: reading the whole set again each time it grew cost a batch the whole set). */
static PyObject *
know_clean_lines(PyObject *Py_UNUSED(module), PyObject *lines)
{
    if (!PyAnySet_CheckExact(lines)) {
        PyErr_SetString(PyExc_TypeError, "know_clean_lines: a set of str");
        return NULL;
    }
    forget_clean_lines();
    if (add_lines(lines) < 0) {
        forget_clean_lines();
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
add_clean_lines(PyObject *Py_UNUSED(module), PyObject *lines)
{
    if (!PyList_CheckExact(lines) && !PyAnySet_CheckExact(lines)) {
        PyErr_SetString(PyExc_TypeError, "add_clean_lines: a list or set of str");
        return NULL;
    }
    if (add_lines(lines) < 0) {
        forget_clean_lines();
        return NULL;
    }
    Py_RETURN_NONE;
}

/* A fresh text's lines (as str.split("\n") makes them) not known clean, onto `fresh_lines`. */
static int
note_lines(Packer *p, PyObject *text)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), start = 0;
    int one_byte = PyUnicode_KIND(text) == PyUnicode_1BYTE_KIND;
    const unsigned char *data = PyUnicode_DATA(text);
    while (start <= n) {
        Py_ssize_t end;
        if (one_byte) {
            const unsigned char *found = memchr(data + start, '\n', (size_t)(n - start));
            end = found ? (Py_ssize_t)(found - data) : n;
        }
        else {
            end = PyUnicode_FindChar(text, '\n', start, n, 1);
            if (end == -2)
                return FAILED;
            if (end < 0)
                end = n;
        }
        if (!(one_byte && line_known(data + start, end - start))) {
            PyObject *line = PyUnicode_Substring(text, start, end);
            if (line == NULL)
                return FAILED;
            int failed = PyList_Append(p->fresh_lines, line) < 0;
            Py_DECREF(line);
            if (failed)
                return FAILED;
        }
        start = end + 1;
    }
    return OK;
}

/* A str; `known` is the set saying it needs no look (else it goes to `to_look`). */
static int
put_text(Packer *p, PyObject *text, PyObject *known, PyObject *to_look)
{
    if (text_ready(text) < 0)
        return FAILED;
    if (PyUnicode_GET_LENGTH(text) > p->limit)
        return PYTHON;
    int seen = 0;
    if (known == p->clean && PyUnicode_GET_LENGTH(text) >= LONG_TEXT)
        seen = seen_long(p, text);
    if (seen == 0)
        seen = PySet_Contains(known, text);
    if (seen < 0)
        return FAILED;
    if (!seen && PyList_Append(to_look, text) < 0)
        return FAILED;
    if (!seen && known == p->clean && note_lines(p, text) != OK)
        return FAILED;
    return emit_text(p, text);
}

static int put_value(Packer *p, PyObject *value, int depth);

/* A chat message in a list (exactly `role` and `content`, both str) comes out role first, as the pass writes it. */
static int
put_message(Packer *p, PyObject *item, int *done)
{
    *done = 0;
    if (PyDict_GET_SIZE(item) != 2)
        return OK;
    PyObject *role = NULL, *content = NULL, *key, *value;
    Py_ssize_t at = 0;
    while (PyDict_Next(item, &at, &key, &value)) { /* no lookup: a key's __eq__ could be Python code */
        if (!PyUnicode_CheckExact(key) || !PyUnicode_CheckExact(value))
            return OK;
        if (PyUnicode_CompareWithASCIIString(key, "role") == 0)
            role = value;
        else if (PyUnicode_CompareWithASCIIString(key, "content") == 0)
            content = value;
    }
    if (role == NULL || content == NULL)
        return OK;
    *done = 1;
    static const unsigned char role_key[] = {0x82, 0xa4, 'r', 'o', 'l', 'e'};
    static const unsigned char content_key[] = {0xa7, 'c', 'o', 'n', 't', 'e', 'n', 't'};
    int status = put_bytes(p, role_key, sizeof role_key);
    if (status == OK)
        status = put_text(p, role, p->clean, p->fresh);
    if (status == OK)
        status = put_bytes(p, content_key, sizeof content_key);
    if (status == OK)
        status = put_text(p, content, p->clean, p->fresh);
    return status;
}

static int
put_items(Packer *p, PyObject *items, int depth)
{
    int is_list = PyList_CheckExact(items);
    Py_ssize_t n = is_list ? PyList_GET_SIZE(items) : PyTuple_GET_SIZE(items);
    if (n > MAX_ITEMS)
        return PYTHON;
    int status = put_length(p, 0x90, 16, 0, 0xdc, 0xdd, n);
    for (Py_ssize_t i = 0; status == OK && i < n; i++) {
        if (is_list && PyList_GET_SIZE(items) != n)
            return PYTHON; /* changed under us: cannot happen while no Python code runs, but cheap */
        PyObject *item = is_list ? PyList_GET_ITEM(items, i) : PyTuple_GET_ITEM(items, i);
        int done = 0;
        if (PyDict_CheckExact(item) && depth + 1 <= MAX_DEPTH)
            status = put_message(p, item, &done);
        if (status == OK && !done)
            status = put_value(p, item, depth + 1);
    }
    return status;
}

/* As redact._holds_text: whether a value under a credential's name is redacted (numbers are not).
 * 1 or 0; UNKNOWN for a type whose answer the Python pass must give (a subclass, a Mapping). */
#define UNKNOWN 2
static int
holds_text(PyObject *value, int depth)
{
    if (value == Py_None || PyBool_Check(value) || PyLong_CheckExact(value) || PyFloat_CheckExact(value))
        return 0;
    if (PyUnicode_CheckExact(value))
        return 1;
    if (PyList_CheckExact(value) || PyTuple_CheckExact(value)) {
        if (depth >= 4)
            return 1;
        int is_list = PyList_CheckExact(value);
        Py_ssize_t n = is_list ? PyList_GET_SIZE(value) : PyTuple_GET_SIZE(value);
        for (Py_ssize_t i = 0; i < n; i++) {
            int holds = holds_text(is_list ? PyList_GET_ITEM(value, i) : PyTuple_GET_ITEM(value, i), depth + 1);
            if (holds != 0)
                return holds;
        }
        return 0;
    }
    if (PyDict_CheckExact(value)) {
        if (depth >= 4)
            return 1;
        Py_ssize_t at = 0;
        PyObject *key, *item;
        while (PyDict_Next(value, &at, &key, &item)) {
            int holds = holds_text(item, depth + 1);
            if (holds != 0)
                return holds;
        }
        return 0;
    }
    return UNKNOWN;
}

static const unsigned char REDACTED_TEXT[] = {0xaa, '[', 'r', 'e', 'd', 'a', 'c', 't', 'e', 'd', ']'};

/* `{name: value, ...}` of a headers map, as the pass writes it: every value redacted. */
static int
put_headers(Packer *p, PyObject *headers)
{
    Py_ssize_t n = PyDict_GET_SIZE(headers);
    if (n > MAX_ITEMS)
        return PYTHON;
    int status = put_length(p, 0x80, 16, 0, 0xde, 0xdf, n);
    Py_ssize_t at = 0;
    PyObject *name, *value;
    while (status == OK && PyDict_Next(headers, &at, &name, &value)) {
        if (!PyUnicode_CheckExact(name) || PyUnicode_GET_LENGTH(name) > KEY_LIMIT)
            return PYTHON;
        status = put_text(p, name, p->clean, p->fresh);
        if (status == OK)
            status = put_bytes(p, REDACTED_TEXT, sizeof REDACTED_TEXT);
    }
    return status;
}

/* One entry of a map, as the pass's _mapping writes it. A key not known yet goes to `fresh_keys`
 * with its value as it is: if the key turns out to be a credential's or a headers map's, the
 * caller takes the Python pass for the payload (and knows the key from then on). */
static int
put_entry(Packer *p, PyObject *key, PyObject *value, int depth)
{
    if (PyLong_CheckExact(key)) {
        int status = put_int(p, key);
        return status != OK ? status : put_value(p, value, depth);
    }
    if (!PyUnicode_CheckExact(key))
        return PYTHON;
    int plain = PySet_Contains(p->keys, key);
    if (plain < 0)
        return FAILED;
    if (plain) {
        int status = emit_text(p, key);
        return status != OK ? status : put_value(p, value, depth);
    }
    int secret = PySet_Contains(p->secret_keys, key);
    if (secret < 0)
        return FAILED;
    if (secret) {
        int holds = holds_text(value, 0);
        if (holds == UNKNOWN)
            return PYTHON;
        int status = emit_text(p, key);
        if (status != OK)
            return status;
        return holds ? put_bytes(p, REDACTED_TEXT, sizeof REDACTED_TEXT) : put_value(p, value, depth);
    }
    int headers = PySet_Contains(p->header_keys, key);
    if (headers < 0)
        return FAILED;
    if (headers) {
        int status = emit_text(p, key);
        if (status != OK)
            return status;
        if (PyDict_CheckExact(value))
            return put_headers(p, value);
        if (PyDict_Check(value))
            return PYTHON; /* another kind of Mapping: the pass's own isinstance decides */
        return put_value(p, value, depth);
    }
    int status = put_text(p, key, p->keys, p->fresh_keys);
    return status != OK ? status : put_value(p, value, depth);
}

static int
put_map(Packer *p, PyObject *map, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(map);
    if (n > MAX_ITEMS)
        return PYTHON;
    int status = put_length(p, 0x80, 16, 0, 0xde, 0xdf, n);
    Py_ssize_t at = 0, count = 0;
    PyObject *key, *item;
    while (status == OK && PyDict_Next(map, &at, &key, &item)) {
        if (++count > n)
            return PYTHON;
        status = put_entry(p, key, item, depth + 1);
    }
    if (status == OK && count != n)
        return PYTHON;
    return status;
}

static int
put_value(Packer *p, PyObject *value, int depth)
{
    if (value == Py_None) {
        unsigned char code = 0xc0;
        return put_bytes(p, &code, 1);
    }
    if (PyBool_Check(value)) {
        unsigned char code = value == Py_True ? 0xc3 : 0xc2;
        return put_bytes(p, &code, 1);
    }
    if (PyUnicode_CheckExact(value))
        return put_text(p, value, p->clean, p->fresh);
    if (PyLong_CheckExact(value))
        return put_int(p, value);
    if (PyFloat_CheckExact(value))
        return put_float(p, value);
    if (depth > MAX_DEPTH)
        return PYTHON;
    if (PyDict_CheckExact(value))
        return put_map(p, value, depth);
    if (PyList_CheckExact(value) || PyTuple_CheckExact(value))
        return put_items(p, value, depth);
    return PYTHON;
}

static int
put_name(Packer *p, const char *name)
{
    Py_ssize_t n = (Py_ssize_t)strlen(name);
    int status = put_length(p, 0xa0, 32, 0xd9, 0xda, 0xdb, n);
    return status != OK ? status : put_bytes(p, name, n);
}

/* `{**lm_options, **call_options}`, as the pass's map of it (at depth 2). */
static int
put_options(Packer *p, PyObject *lm_options, PyObject *call_options)
{
    if (lm_options == Py_None || (PyDict_CheckExact(lm_options) && PyDict_GET_SIZE(lm_options) == 0))
        lm_options = NULL;
    if (call_options == Py_None || (PyDict_CheckExact(call_options) && PyDict_GET_SIZE(call_options) == 0))
        call_options = NULL;
    if ((lm_options && !PyDict_CheckExact(lm_options)) || (call_options && !PyDict_CheckExact(call_options)))
        return PYTHON;
    Py_ssize_t n = 0, at = 0;
    PyObject *key, *item;
    /* Every key a str or an int before any lookup: another key's __eq__ could be Python code. */
    for (int which = 0; which < 2; which++) {
        PyObject *options = which ? call_options : lm_options;
        at = 0;
        while (options && PyDict_Next(options, &at, &key, &item))
            if (!PyUnicode_CheckExact(key) && !PyLong_CheckExact(key))
                return PYTHON;
    }
    if (lm_options)
        n += PyDict_GET_SIZE(lm_options);
    if (call_options) {
        at = 0;
        while (PyDict_Next(call_options, &at, &key, &item)) {
            int shared = lm_options ? PyDict_Contains(lm_options, key) : 0;
            if (shared < 0)
                return FAILED;
            n += !shared;
        }
    }
    if (n > MAX_ITEMS)
        return PYTHON;
    int status = put_length(p, 0x80, 16, 0, 0xde, 0xdf, n);
    if (lm_options) {
        at = 0;
        while (status == OK && PyDict_Next(lm_options, &at, &key, &item)) {
            PyObject *later = call_options ? PyDict_GetItemWithError(call_options, key) : NULL;
            if (later == NULL && PyErr_Occurred())
                return FAILED;
            PyObject *shown = later ? later : item;
            status = put_entry(p, key, shown, 3);
        }
    }
    if (call_options) {
        at = 0;
        while (status == OK && PyDict_Next(call_options, &at, &key, &item)) {
            int shared = lm_options ? PyDict_Contains(lm_options, key) : 0;
            if (shared < 0)
                return FAILED;
            if (shared)
                continue;
            status = put_entry(p, key, item, 3);
        }
    }
    return status;
}

/* KEPT_FIELDS order (payload_ring.py). */
enum { F_ID, F_MODEL, F_MODEL_TYPE, F_MESSAGES, F_PROMPT, F_LM_OPTIONS, F_CALL_OPTIONS, F_OUTPUTS, F_USAGE,
       F_DSPY_COST, F_COST_DETAILS, F_ERROR, F_CACHE_HIT, F_RESPONSE_MODEL, F_COUNT };

static int
put_payload(Packer *p, PyObject *call_id, PyObject *kept)
{
    PyObject *f[F_COUNT];
    for (int i = 0; i < F_COUNT; i++)
        f[i] = PyList_Check(kept) ? PyList_GET_ITEM(kept, i) : PyTuple_GET_ITEM(kept, i);
    PyObject *messages = f[F_MESSAGES];
    if (!PyList_CheckExact(messages) || PyList_GET_SIZE(messages) == 0)
        return PYTHON; /* a prompt without messages, or messages of another kind */
    PyObject *cost_details = f[F_COST_DETAILS];
    int with_details = 0;
    if (cost_details != Py_None) {
        if (!PyDict_CheckExact(cost_details))
            return PYTHON;
        with_details = PyDict_GET_SIZE(cost_details) > 0;
    }
    PyObject *cache_hit = f[F_CACHE_HIT];
    if (cache_hit != Py_None && !PyBool_Check(cache_hit))
        return PYTHON;
    int failed = f[F_ERROR] != Py_None;

    int status = put_bytes(p, "\x92", 1);
    if (status == OK)
        status = PyLong_CheckExact(call_id) ? put_int(p, call_id) : PYTHON;
    if (status == OK)
        status = put_length(p, 0x80, 16, 0, 0xde, 0xdf, 4 + (failed ? 1 : 5 + with_details));
    if (status == OK && (status = put_name(p, "model")) == OK)
        status = put_value(p, f[F_MODEL], 2);
    if (status == OK && (status = put_name(p, "model_type")) == OK)
        status = put_value(p, f[F_MODEL_TYPE], 2);
    if (status == OK && (status = put_name(p, "messages")) == OK)
        status = put_items(p, messages, 2);
    if (status == OK && (status = put_name(p, "options")) == OK)
        status = put_options(p, f[F_LM_OPTIONS], f[F_CALL_OPTIONS]);
    if (failed) {
        if (status == OK && (status = put_name(p, "error")) == OK)
            status = put_value(p, f[F_ERROR], 2);
        return status;
    }
    if (status == OK && (status = put_name(p, "outputs")) == OK)
        status = put_value(p, f[F_OUTPUTS], 2);
    if (status == OK && (status = put_name(p, "usage")) == OK)
        status = put_value(p, f[F_USAGE], 2);
    if (status == OK && (status = put_name(p, "cost_usd")) == OK)
        status = put_value(p, f[F_DSPY_COST], 2);
    if (status == OK && (status = put_name(p, "cache_hit")) == OK)
        status = put_bytes(p, cache_hit == Py_True ? "\xc3" : "\xc2", 1);
    if (status == OK && (status = put_name(p, "response_model")) == OK)
        status = put_value(p, f[F_RESPONSE_MODEL], 2);
    if (with_details && status == OK && (status = put_name(p, "cost_details")) == OK)
        status = put_map(p, cost_details, 2);
    return status;
}

/* A ring slot (a list) is reused for a later call: whether it still holds this one. */
static int
holds(PyObject *kept, PyObject *call_id)
{
    PyObject *id = PyList_Check(kept) ? PyList_GET_ITEM(kept, 0) : PyTuple_GET_ITEM(kept, 0);
    if (id == call_id)
        return 1;
    if (!PyLong_CheckExact(id) || !PyLong_CheckExact(call_id))
        return 0;
    return PyObject_RichCompareBool(id, call_id, Py_EQ); /* two ints: no Python code runs */
}

static PyObject **
fields_of(PyObject *kept, Py_ssize_t *n)
{
    if (PyList_Check(kept)) {
        *n = PyList_GET_SIZE(kept);
        return ((PyListObject *)kept)->ob_item;
    }
    if (PyTuple_Check(kept)) {
        *n = PyTuple_GET_SIZE(kept);
        return ((PyTupleObject *)kept)->ob_item;
    }
    *n = 0;
    return NULL;
}

/* What pack_one says of each payload, and NOT_PACKED: an exception is set. Not
 * FAILED: that is -1, GONE's number. */
enum { PACKED = 1, BY_PYTHON = 0, GONE = -1, NOT_PACKED = -2 };

/* One payload into `p` (emptied first): PACKED; BY_PYTHON (what it set aside taken back) when the
 * Python pass must do it; GONE when `kept` is a ring slot that holds a later call now; or NOT_PACKED. */
static int
pack_one(Packer *p, PyObject *call_id, PyObject *kept)
{
    if (!((PyTuple_Check(kept) && PyTuple_GET_SIZE(kept) >= F_COUNT) ||
          (PyList_Check(kept) && PyList_GET_SIZE(kept) >= F_COUNT))) {
        PyErr_SetString(PyExc_TypeError, "pack_slots: a kept call is a tuple or a ring slot in KEPT_FIELDS order");
        return NOT_PACKED;
    }
    int held = holds(kept, call_id);
    if (held <= 0)
        return held < 0 ? NOT_PACKED : GONE;
    p->size = 0;
    Py_ssize_t fresh_before = PyList_GET_SIZE(p->fresh), keys_before = PyList_GET_SIZE(p->fresh_keys);
    Py_ssize_t lines_before = PyList_GET_SIZE(p->fresh_lines);
    int status = put_payload(p, call_id, kept);
    if (status == OK)
        return PACKED;
    if (status == FAILED)
        return NOT_PACKED;
    if (PyList_SetSlice(p->fresh, fresh_before, PyList_GET_SIZE(p->fresh), NULL) < 0 ||
        PyList_SetSlice(p->fresh_keys, keys_before, PyList_GET_SIZE(p->fresh_keys), NULL) < 0 ||
        PyList_SetSlice(p->fresh_lines, lines_before, PyList_GET_SIZE(p->fresh_lines), NULL) < 0)
        return NOT_PACKED;
    return BY_PYTHON;
}

/* The call's options maps, each once (by identity) in `options`: the credentials they hold are
 * learned before the bytes are used (payload_pack.py). Those of a call left to the Python pass
 * too: the pass redacts a credential any call of the batch was given wherever it appears, in the
 * packed calls as well. Any options but None and an empty dict (a dict of another kind holds
 * credentials too; payload.secrets_in reads it). `seen` holds up to 64; past that, repeats. */
static int
note_options(PyObject *kept, PyObject *options, PyObject **seen, int *count)
{
    Py_ssize_t n;
    PyObject **fields = fields_of(kept, &n);
    for (int i = F_LM_OPTIONS; i <= F_CALL_OPTIONS; i++) {
        PyObject *map = fields[i];
        if (map == Py_None || (PyDict_CheckExact(map) && PyDict_GET_SIZE(map) == 0))
            continue;
        int known = 0;
        for (int j = 0; j < *count && !known; j++)
            known = seen[j] == map;
        if (known)
            continue;
        if (*count < 64)
            seen[(*count)++] = map;
        if (PyList_Append(options, map) < 0)
            return -1;
    }
    return 0;
}

/* What a walk gives back as it goes: the calls packed (their ids, and len(out), len(fresh) and
 * len(fresh_keys) after each), those left to the Python pass, and how many were gone. */
typedef struct {
    PyObject *ids;
    PyObject *ends;
    PyObject *python;
    Py_ssize_t gone;
    Py_ssize_t *bounds; /* len(fresh), len(fresh_keys) after each packed call */
    Py_ssize_t bounds_capacity;
} Walk;

static int
note_packed(Walk *w, PyObject *call_id, PyObject *out, Packer *p)
{
    Py_ssize_t count = PyList_GET_SIZE(w->ids);
    if (2 * (count + 1) > w->bounds_capacity) {
        Py_ssize_t capacity = w->bounds_capacity ? 2 * w->bounds_capacity : 256;
        Py_ssize_t *bounds = PyMem_Realloc(w->bounds, (size_t)capacity * sizeof(Py_ssize_t));
        if (bounds == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->bounds = bounds;
        w->bounds_capacity = capacity;
    }
    Py_ssize_t before = PyByteArray_GET_SIZE(out);
    if (PyByteArray_Resize(out, before + p->size) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(out) + before, p->data, (size_t)p->size);
    PyObject *end = PyLong_FromSsize_t(before + p->size);
    if (end == NULL)
        return -1;
    int failed = PyList_Append(w->ends, end) < 0;
    Py_DECREF(end);
    if (failed || PyList_Append(w->ids, call_id) < 0)
        return -1;
    w->bounds[2 * count] = PyList_GET_SIZE(p->fresh);
    w->bounds[2 * count + 1] = PyList_GET_SIZE(p->fresh_keys);
    return 0;
}

/* A ring slot read: marked taken (PayloadRing.TAKEN), so that past the history's count the ring may
 * reuse it. Only a slot long enough, holding False there (what the ring puts): the False let go is
 * never freed, so no Python code runs. */
static void
mark_taken(PyObject *kept, Py_ssize_t taken)
{
    if (!PyList_Check(kept) || PyList_GET_SIZE(kept) <= taken)
        return;
    PyObject *old = PyList_GET_ITEM(kept, taken);
    if (old != Py_False)
        return;
    PyList_SET_ITEM(kept, taken, Py_NewRef(Py_True));
    Py_DECREF(old);
}

/* `pack_slots(call_ids, slots, taken, limit, clean, long_clean, keys, secret_keys, header_keys,
 * fresh, fresh_keys, fresh_lines, out, options)`: each call id of the list `call_ids` looked up in the dict
 * `slots` (the payload ring's call id -> slot; an id it lacks, or whose slot holds another call
 * now, is gone), its payload packed in order onto the bytearray `out`, and each slot it packed
 * marked taken (`slot[taken] = True`). A slot left to the Python pass is not: it is marked when
 * that pass copies it (Recorder.payloads_of), so the ring cannot reuse it before. Returns
 * (packed ids, ends, ids for the Python pass, gone, bounds): `ends` len(out) after each packed
 * call; `bounds` (bytes of Py_ssize_t) len(fresh) and len(fresh_keys) after each. The lines of the
 * packed calls' texts in `fresh` not known clean (`know_clean_lines`) are appended to
 * `fresh_lines`. Each options map of a call it holds (packed or not) is appended to `options` once.
 *
 * The caller holds the ring's lock (Recorder.take_payloads). The ids are ints and so are the
 * dict's keys: a lookup runs no Python code. */
static PyObject *
pack_slots(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "pack_slots(call_ids, slots, taken, limit, clean, long_clean, keys, "
                                         "secret_keys, header_keys, fresh, fresh_keys, fresh_lines, out, options)");
        return NULL;
    }
    PyObject *call_ids = args[0], *slots = args[1], *out = args[12], *options = args[13];
    if (!PyList_CheckExact(call_ids) || !PyDict_CheckExact(slots) || !PyAnySet_CheckExact(args[4]) ||
        !PyDict_CheckExact(args[5]) || !PyAnySet_CheckExact(args[6]) || !PyAnySet_CheckExact(args[7]) ||
        !PyAnySet_CheckExact(args[8]) || !PyList_CheckExact(args[9]) || !PyList_CheckExact(args[10]) ||
        !PyList_CheckExact(args[11]) || !PyByteArray_CheckExact(out) || !PyList_CheckExact(options)) {
        PyErr_SetString(PyExc_TypeError, "pack_slots: a list of ids, a dict, two ints, a set, a dict, three "
                                         "sets, three lists, a bytearray and a list");
        return NULL;
    }
    Py_ssize_t taken = PyLong_AsSsize_t(args[2]);
    if (taken == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t limit = PyLong_AsSsize_t(args[3]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (taken < 0) {
        PyErr_SetString(PyExc_ValueError, "pack_slots: `taken` is an index into a slot");
        return NULL;
    }
    /* Every id an int before any lookup: another key's __eq__ could be Python code. */
    Py_ssize_t n = PyList_GET_SIZE(call_ids);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PyLong_CheckExact(PyList_GET_ITEM(call_ids, i))) {
            PyErr_SetString(PyExc_TypeError, "pack_slots: the call ids are ints");
            return NULL;
        }
    /* The lists given back, made before the walk: no container is allocated during it (see the top). */
    Walk w = {PyList_New(0), PyList_New(0), PyList_New(0), 0, NULL, 0};
    if (w.ids == NULL || w.ends == NULL || w.python == NULL) {
        Py_XDECREF(w.ids);
        Py_XDECREF(w.ends);
        Py_XDECREF(w.python);
        return NULL;
    }
    /* One buffer, kept between calls (it stays in the CPU's caches); a private one if in use. */
    static char *kept_buffer = NULL;
    static Py_ssize_t kept_capacity = 0;
    static int in_use = 0;
    int shared = !in_use;
    Packer p = {shared ? kept_buffer : NULL, 0, shared ? kept_capacity : 0, limit,
                args[4], args[5], args[6], args[7], args[8], args[9], args[10], args[11]};
    in_use = 1;
    PyObject *seen[64];
    int seen_count = 0;
    int failed = 0;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        if (PyList_GET_SIZE(call_ids) != n) {
            PyErr_SetString(PyExc_RuntimeError, "pack_slots: the list changed");
            failed = 1;
            break;
        }
        PyObject *call_id = PyList_GET_ITEM(call_ids, i);
        PyObject *kept = PyDict_GetItemWithError(slots, call_id); /* an int key: no Python code runs */
        if (kept == NULL) {
            if (PyErr_Occurred())
                failed = 1;
            else
                w.gone++;
            continue;
        }
        int status = pack_one(&p, call_id, kept);
        if (status == NOT_PACKED)
            failed = 1;
        else if (status == GONE)
            w.gone++;
        else if (note_options(kept, options, seen, &seen_count) < 0)
            failed = 1;
        else if (status == PACKED) {
            failed = note_packed(&w, call_id, out, &p) < 0;
            if (!failed)
                mark_taken(kept, taken);
        }
        else
            failed = PyList_Append(w.python, call_id) < 0;
    }
    if (shared && p.capacity <= KEEP_BUFFER) {
        kept_buffer = p.data;
        kept_capacity = p.capacity;
    }
    else {
        PyMem_Free(p.data);
        if (shared) {
            kept_buffer = NULL;
            kept_capacity = 0;
        }
    }
    if (shared)
        in_use = 0;
    PyObject *result = NULL;
    if (!failed) {
        PyObject *bounds = PyBytes_FromStringAndSize(
            (const char *)w.bounds, (Py_ssize_t)(2 * PyList_GET_SIZE(w.ids) * sizeof(Py_ssize_t)));
        if (bounds != NULL)
            result = Py_BuildValue("(OOOnN)", w.ids, w.ends, w.python, w.gone, bounds);
    }
    Py_DECREF(w.ids);
    Py_DECREF(w.ends);
    Py_DECREF(w.python);
    PyMem_Free(w.bounds);
    return result;
}

static PyObject *
fingerprint(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (!PyUnicode_CheckExact(text)) {
        PyErr_SetString(PyExc_TypeError, "fingerprint: a str");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(text_fingerprint(text));
}

/* A value of plain data packed as msgpack.Packer(use_bin_type=True) packs it: None, bools, ints,
 * floats, str, and lists, tuples and str-keyed dicts of them. PYTHON for anything else (msgpack
 * and its fallback decide), a lone surrogate in a str, or nesting past MAX_DEPTH. */
static int
put_plain(Packer *p, PyObject *value, int depth)
{
    if (depth > MAX_DEPTH)
        return PYTHON;
    if (value == Py_None)
        return put_bytes(p, "\xc0", 1);
    if (value == Py_True)
        return put_bytes(p, "\xc3", 1);
    if (value == Py_False)
        return put_bytes(p, "\xc2", 1);
    if (PyLong_CheckExact(value))
        return put_int(p, value);
    if (PyFloat_CheckExact(value))
        return put_float(p, value);
    if (PyUnicode_CheckExact(value))
        return emit_text(p, value);
    if (PyList_CheckExact(value) || PyTuple_CheckExact(value)) {
        Py_ssize_t n;
        PyObject **items = fields_of(value, &n);
        int status = put_length(p, 0x90, 16, 0, 0xdc, 0xdd, n);
        for (Py_ssize_t i = 0; i < n && status == OK; i++) {
            if (PyList_CheckExact(value) && PyList_GET_SIZE(value) != n)
                return PYTHON; /* nothing here runs Python code; a guard all the same */
            status = put_plain(p, items[i], depth + 1);
        }
        return status;
    }
    if (PyDict_CheckExact(value)) {
        Py_ssize_t n = PyDict_GET_SIZE(value), at = 0;
        PyObject *key, *item;
        int status = put_length(p, 0x80, 16, 0, 0xde, 0xdf, n);
        while (status == OK && PyDict_Next(value, &at, &key, &item)) {
            if (!PyUnicode_CheckExact(key))
                return PYTHON;
            status = emit_text(p, key);
            if (status == OK)
                status = put_plain(p, item, depth + 1);
        }
        return status;
    }
    return PYTHON;
}

/* pack_plain(value) -> bytes or None: the server thread's call rows, packed without msgpack's
 * generic dispatch (what the recording stores of each `calls` message). */
static PyObject *
pack_plain(PyObject *Py_UNUSED(module), PyObject *value)
{
    Packer p = {NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int status = put_plain(&p, value, 0);
    PyObject *result = NULL;
    if (status == OK)
        result = PyBytes_FromStringAndSize(p.data, p.size);
    else if (status == PYTHON)
        result = Py_NewRef(Py_None);
    PyMem_Free(p.data);
    return result;
}

static PyMethodDef methods[] = {
    {"fingerprint", fingerprint, METH_O,
     "fingerprint(text) -> int: the key of a long clean text in `long_clean` (equal texts, equal keys)."},
    {"pack_slots", (PyCFunction)(void (*)(void))pack_slots, METH_FASTCALL,
     "pack_slots(call_ids, slots, taken, limit, clean, long_clean, keys, secret_keys, header_keys, fresh,\n"
     "fresh_keys, fresh_lines, out, options) -> (packed_ids, ends, python_ids, gone, bounds)\n\n"
     "Each call id's slot in the dict `slots` (call id -> a kept call in KEPT_FIELDS order) packed as\n"
     "msgpack `[call_id, payload]` onto the bytearray `out`, when every text in it is in `clean` or\n"
     "appended to `fresh`, every map key in `keys`, `secret_keys` (its text redacted) or `header_keys`\n"
     "(every value redacted), or appended to `fresh_keys`; a slot packed is marked `slot[taken] = True`.\n"
     "Gives the ids packed, len(out) after each, the ids left to the Python pass, how many were gone\n"
     "(not in `slots`, or a slot holding another call now), and len(fresh), len(fresh_keys) after each\n"
     "packed call as bytes of Py_ssize_t. The lines of the packed calls' texts in `fresh` not known\n"
     "clean (know_clean_lines) are appended to `fresh_lines`. Each options map of a call still held is\n"
     "appended to `options` once."},
    {"pack_plain", pack_plain, METH_O,
     "pack_plain(value) -> bytes | None: msgpack's bytes for plain data (None, bool, int, float, str, and\n"
     "lists, tuples and str-keyed dicts of them), as msgpack.Packer(use_bin_type=True) packs it; None\n"
     "for anything else (msgpack decides)."},
    {"add_clean_lines", add_clean_lines, METH_O,
     "add_clean_lines(lines) -> None: lines (a list or set of str) that joined the set of lines known clean\n"
     "since it was given to know_clean_lines."},
    {"know_clean_lines", know_clean_lines, METH_O,
     "know_clean_lines(lines) -> None: the set of lines known to come out of the redaction pattern\n"
     "unchanged (Redactor.clean_lines), read whole (a set begun again; add_clean_lines adds to it);\n"
     "pack_slots sets aside only the other lines of a fresh text in `fresh_lines`."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_payload_pack", "A recorded payload packed in C (see payload_pack.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__payload_pack(void)
{
    return PyModule_Create(&module);
}
