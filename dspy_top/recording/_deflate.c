/* A raw deflate stream whose compressing is done by a thread of its own, which never takes the GIL.
 *
 * segments.py says why: compressing with Python's zlib lets the GIL go around each call, and a job's
 * server thread then waits for the GIL back after each, a switch the job pays for (gil_handoff.py).
 * Here the server thread only hands records over (`feed`: no copy, a buffer view held until they
 * are compressed), asks for a flush after them (`flush`) and takes what came out up to it (`take`);
 * the worker thread does all of zlib's work, the flush too (a flush encodes the block zlib holds:
 * 100 µs and more, which the server thread would spend holding the GIL). The worker reads only
 * those buffers and zlib's state: it calls no Python API.
 *
 * Who touches what: the worker runs zlib with the lock let go (`working` set); everything else (the
 * queue, `out`, the counters, the flush asked for) is read and written under `lock`. Buffer views
 * are released by the owner (the GIL is needed), entries before `done` being finished with.
 *
 * After a fork the child has no worker and maybe a lock held forever: every method refuses in a
 * process other than the one that made it, and the object's memory is left as it is there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* zlib writes into this much stack at a time (the worker's stack is 256 KiB; a job may give its own threads small ones). */
#define SCRATCH 16384
#define NO_FLUSH (-1)

typedef struct {
    PyObject_HEAD
    z_stream z;
    int level;
    pid_t owner;
    pthread_mutex_t lock;
    pthread_cond_t work; /* the worker waits on it for an entry, or `stop` */
    pthread_cond_t idle; /* the owner waits on it for the worker to finish the queue */
    pthread_t thread;
    int started; /* the worker thread runs (it could not start: the owner compresses, `inline_only`) */
    int inline_only;
    int stop;
    int working;
    int zerror; /* zlib's error, once one happened (nothing more is compressed) */
    int flush_mode; /* the flush asked for (Z_SYNC_FLUSH or Z_FINISH) after entry `flush_at`, or NO_FLUSH */
    Py_ssize_t flush_at;
    int flushed; /* ... done: `out` up to `flushed_end` is what `take` returns, its CRC-32 `flushed_crc` */
    size_t flushed_end;
    unsigned long flushed_crc, taken_crc; /* taken_crc: that of what `take` returned last */
    Py_buffer *queue;
    Py_ssize_t queued, done, capacity;
    size_t backlog; /* bytes fed and not compressed yet */
    unsigned char *out; /* compressed and not taken yet */
    size_t out_len, out_cap;
    size_t fed_total; /* bytes fed since the stream (or its last reset) began */
    /* What compressing took here so far, records and flushes: to reckon how long a wait will be. */
    double seconds_spent;
    size_t bytes_done;
} Deflater;

static int
out_reserve(Deflater *d, size_t more)
{
    if (d->out_len + more <= d->out_cap)
        return 0;
    size_t capacity = d->out_cap ? d->out_cap : SCRATCH;
    while (capacity < d->out_len + more)
        capacity *= 2;
    unsigned char *grown = realloc(d->out, capacity);
    if (grown == NULL)
        return -1;
    d->out = grown;
    d->out_cap = capacity;
    return 0;
}

/* deflate() over what is in d->z (its input set by the caller) with `flush`, appending to `out`.
 * Called by whoever has the stream: the worker with the lock let go (it appends under the lock),
 * or the owner holding the lock (`locked`). Returns zlib's status, or Z_MEM_ERROR. */
static int
run_deflate(Deflater *d, int flush, int locked)
{
    unsigned char scratch[SCRATCH];
    for (;;) {
        d->z.next_out = scratch;
        d->z.avail_out = SCRATCH;
        int status = deflate(&d->z, flush);
        if (status == Z_STREAM_ERROR)
            return status;
        size_t made = SCRATCH - d->z.avail_out;
        if (made) {
            if (!locked)
                pthread_mutex_lock(&d->lock);
            int failed = out_reserve(d, made);
            if (!failed) {
                memcpy(d->out + d->out_len, scratch, made);
                d->out_len += made;
            }
            if (!locked)
                pthread_mutex_unlock(&d->lock);
            if (failed)
                return Z_MEM_ERROR;
        }
        /* Z_BUF_ERROR (no progress: a flush with nothing new) is no error; it ends here too. */
        if (flush == Z_FINISH ? status == Z_STREAM_END : (d->z.avail_in == 0 && d->z.avail_out != 0))
            return Z_OK;
    }
}

/* One piece of the worker's work, if there is one (the lock held on entry and on return; let go
 * while zlib runs when `unlock`): the next entry before the flush asked for, else that flush.
 * Returns 0 when there was nothing to do. */
static int
step(Deflater *d, int unlock)
{
    int flush = Z_NO_FLUSH;
    size_t length = 0;
    if (d->flush_mode != NO_FLUSH && !d->flushed && d->done == d->flush_at) {
        flush = d->flush_mode;
        d->z.next_in = NULL;
        d->z.avail_in = 0;
    }
    else if (d->done < d->queued && !(d->flush_mode != NO_FLUSH && !d->flushed && d->done >= d->flush_at)) {
        /* The queue may be moved while the lock is let go: what is read of the entry is read now. */
        Py_buffer *entry = &d->queue[d->done];
        d->z.next_in = (Bytef *)entry->buf;
        d->z.avail_in = (uInt)entry->len;
        length = (size_t)entry->len;
    }
    else
        return 0;
    d->working = 1;
    if (unlock)
        pthread_mutex_unlock(&d->lock);
    int status = Z_OK;
    struct timespec began, ended;
    clock_gettime(CLOCK_MONOTONIC, &began);
    if (!d->zerror) {
        status = run_deflate(d, flush, !unlock);
        if (status == Z_OK && flush == Z_FINISH)
            status = deflateReset(&d->z); /* what comes next is a new stream (the next segment's) */
    }
    clock_gettime(CLOCK_MONOTONIC, &ended);
    double took = (double)(ended.tv_sec - began.tv_sec) + 1e-9 * (double)(ended.tv_nsec - began.tv_nsec);
    unsigned long crc = 0;
    if (flush != Z_NO_FLUSH && status == Z_OK)
        /* The frame's checksum of what `take` will return, here: off the GIL (Python's crc32 lets
         * the GIL go for it). Only this thread appends to `out`, and the owner reads it once flushed. */
        crc = crc32(0L, d->out, (uInt)d->out_len);
    if (unlock)
        pthread_mutex_lock(&d->lock);
    if (status != Z_OK && !d->zerror)
        d->zerror = status;
    d->working = 0;
    d->seconds_spent += took;
    d->bytes_done += length;
    if (flush == Z_NO_FLUSH) {
        d->done += 1;
        d->backlog -= length;
    }
    else {
        d->flushed = 1;
        d->flushed_end = d->out_len;
        d->flushed_crc = crc;
    }
    return 1;
}

/* Nothing left for the worker to do (the lock held). */
static int
is_idle(Deflater *d)
{
    return !d->working && (d->flush_mode == NO_FLUSH || d->flushed) && d->done == d->queued;
}

static void *
worker(void *arg)
{
    Deflater *d = arg;
    pthread_mutex_lock(&d->lock);
    while (!d->stop) {
        if (step(d, 1)) {
            pthread_cond_broadcast(&d->idle);
            continue;
        }
        pthread_cond_wait(&d->work, &d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static int
in_owner(Deflater *d)
{
    if (d->owner == getpid())
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "a Deflater is not used after a fork (the child has no worker)");
    return 0;
}

/* The finished entries at the front of the queue, moved out to be released (with the lock held). */
static Py_ssize_t
take_finished(Deflater *d, Py_buffer **finished)
{
    Py_ssize_t count = d->done;
    *finished = NULL;
    if (count == 0)
        return 0;
    *finished = PyMem_RawMalloc(sizeof(Py_buffer) * (size_t)count);
    if (*finished == NULL)
        return 0; /* released later */
    memcpy(*finished, d->queue, sizeof(Py_buffer) * (size_t)count);
    memmove(d->queue, d->queue + count, sizeof(Py_buffer) * (size_t)(d->queued - count));
    d->queued -= count;
    d->done = 0;
    if (d->flush_mode != NO_FLUSH)
        d->flush_at -= count;
    return count;
}

/* Release views moved out by take_finished (the GIL held, the lock not: a release may free an object). */
static void
release_finished(Py_buffer *finished, Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++)
        PyBuffer_Release(&finished[i]);
    PyMem_RawFree(finished);
}

static PyObject *
Deflater_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"level", "threaded", NULL};
    int level, threaded = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i|p", names, &level, &threaded))
        return NULL;
    Deflater *d = (Deflater *)type->tp_alloc(type, 0);
    if (d == NULL)
        return NULL;
    d->level = level;
    d->owner = getpid();
    d->inline_only = !threaded; /* as where no thread can be started: the waits compress */
    d->flush_mode = NO_FLUSH;
    if (deflateInit2(&d->z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        Py_TYPE(d)->tp_free((PyObject *)d);
        PyErr_SetString(PyExc_ValueError, "zlib cannot start a deflate stream at this level");
        return NULL;
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->work, NULL);
    pthread_cond_init(&d->idle, NULL);
    return (PyObject *)d;
}

static int
start_worker(Deflater *d)
{
    if (d->started || d->inline_only)
        return 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int failed = pthread_create(&d->thread, &attr, worker, d);
    pthread_attr_destroy(&attr);
    if (failed)
        d->inline_only = 1; /* no thread to be had: `take` compresses, the GIL let go */
    else
        d->started = 1;
    return 0;
}

/* feed(records): each a bytes-like object, compressed in this order, without a copy (each is held,
 * unchanged, until compressed). Returns at once. */
static PyObject *
Deflater_feed(Deflater *d, PyObject *records)
{
    if (!in_owner(d))
        return NULL;
    PyObject *items = PySequence_Fast(records, "feed: a list of bytes-like records");
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    Py_buffer *views = PyMem_RawMalloc(sizeof(Py_buffer) * (size_t)(n ? n : 1));
    if (views == NULL) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    size_t bytes = 0;
    Py_ssize_t got = 0;
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(items, got), &views[got], PyBUF_SIMPLE) < 0)
            break;
        if ((size_t)views[got].len > (size_t)UINT_MAX) {
            PyBuffer_Release(&views[got]);
            PyErr_SetString(PyExc_ValueError, "feed: a record over 4 GiB");
            break;
        }
        bytes += (size_t)views[got].len;
    }
    Py_DECREF(items);
    if (got < n) {
        for (Py_ssize_t i = 0; i < got; i++)
            PyBuffer_Release(&views[i]);
        PyMem_RawFree(views);
        return NULL;
    }
    Py_buffer *finished = NULL;
    Py_ssize_t finished_count = 0;
    pthread_mutex_lock(&d->lock);
    if (d->queued + n > d->capacity) {
        Py_ssize_t capacity = d->capacity ? d->capacity : 64;
        while (capacity < d->queued + n)
            capacity *= 2;
        Py_buffer *grown = realloc(d->queue, sizeof(Py_buffer) * (size_t)capacity);
        if (grown == NULL) {
            pthread_mutex_unlock(&d->lock);
            for (Py_ssize_t i = 0; i < n; i++)
                PyBuffer_Release(&views[i]);
            PyMem_RawFree(views);
            return PyErr_NoMemory();
        }
        d->queue = grown;
        d->capacity = capacity;
    }
    memcpy(d->queue + d->queued, views, sizeof(Py_buffer) * (size_t)n);
    d->queued += n;
    d->backlog += bytes;
    d->fed_total += bytes;
    start_worker(d);
    if (d->started && !d->working)
        pthread_cond_signal(&d->work);
    /* The worker reads only its own entry's buffer, found again by its index: those before it go. */
    finished_count = take_finished(d, &finished);
    pthread_mutex_unlock(&d->lock);
    PyMem_RawFree(views);
    if (finished_count)
        release_finished(finished, finished_count);
    Py_RETURN_NONE;
}

/* Until `done(d)` holds (the lock held on entry and on return; the GIL let go while waiting).
 * With no worker thread, the owner does the work itself here. */
static void
wait_for(Deflater *d, int (*done)(Deflater *))
{
    if (done(d))
        return;
    pthread_mutex_unlock(&d->lock);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&d->lock);
    if (d->inline_only)
        while (!done(d) && step(d, 0))
            ;
    while (!done(d) && !d->inline_only)
        pthread_cond_wait(&d->idle, &d->lock);
    pthread_mutex_unlock(&d->lock);
    Py_END_ALLOW_THREADS
    pthread_mutex_lock(&d->lock);
}

static int
has_flushed(Deflater *d)
{
    return d->flushed || d->zerror;
}

/* Ask for a flush after all fed so far (the lock held), unless one is asked for already. */
static void
ask_flush(Deflater *d, int end)
{
    if (d->flush_mode != NO_FLUSH)
        return;
    d->flush_mode = end ? Z_FINISH : Z_SYNC_FLUSH;
    d->flush_at = d->queued;
    d->flushed = 0;
    start_worker(d);
    if (d->started && !d->working)
        pthread_cond_signal(&d->work);
}

/* flush(end): a flush after all fed so far (Z_FINISH when `end`: what is fed after it begins a new
 * stream; else Z_SYNC_FLUSH), done by the worker; `take` returns up to it. Returns at once. A flush
 * asked for already and not taken yet stands (its kind too). */
static PyObject *
Deflater_flush(Deflater *d, PyObject *end)
{
    if (!in_owner(d))
        return NULL;
    int finish = PyObject_IsTrue(end);
    if (finish < 0)
        return NULL;
    pthread_mutex_lock(&d->lock);
    ask_flush(d, finish);
    pthread_mutex_unlock(&d->lock);
    Py_RETURN_NONE;
}

/* take(end, wait): the compressed bytes of all fed before the flush asked for (asked for now, with
 * `end`, if it was not), that flush's included. When the worker has not done it yet: None at once
 * if not `wait`, else it waits for it, letting the GIL go. */
static PyObject *
Deflater_take(Deflater *d, PyObject *args)
{
    int end, wait;
    if (!PyArg_ParseTuple(args, "pp", &end, &wait) || !in_owner(d))
        return NULL;
    pthread_mutex_lock(&d->lock);
    ask_flush(d, end);
    if (!has_flushed(d)) {
        if (!wait) {
            pthread_mutex_unlock(&d->lock);
            Py_RETURN_NONE;
        }
        wait_for(d, has_flushed);
    }
    int status = d->zerror;
    PyObject *data = NULL;
    if (!status) {
        data = PyBytes_FromStringAndSize((const char *)d->out, (Py_ssize_t)d->flushed_end);
        if (data != NULL) {
            memmove(d->out, d->out + d->flushed_end, d->out_len - d->flushed_end);
            d->out_len -= d->flushed_end;
            d->taken_crc = d->flushed_crc;
            if (d->flush_mode == Z_FINISH)
                d->fed_total = d->backlog; /* what is fed after it is the new stream's */
            d->flush_mode = NO_FLUSH;
            d->flushed = 0;
            d->flushed_end = 0;
        }
    }
    Py_buffer *finished = NULL;
    Py_ssize_t finished_count = take_finished(d, &finished);
    pthread_mutex_unlock(&d->lock);
    if (finished_count)
        release_finished(finished, finished_count);
    if (status != Z_OK) {
        PyErr_Format(PyExc_OSError, "deflate failed (zlib status %d)", status);
        Py_CLEAR(data);
    }
    return data;
}

/* settle(): wait (the GIL let go) until what was fed is compressed; no flush. */
static PyObject *
Deflater_settle(Deflater *d, PyObject *Py_UNUSED(ignored))
{
    if (!in_owner(d))
        return NULL;
    pthread_mutex_lock(&d->lock);
    wait_for(d, is_idle);
    Py_buffer *finished = NULL;
    Py_ssize_t finished_count = take_finished(d, &finished);
    pthread_mutex_unlock(&d->lock);
    if (finished_count)
        release_finished(finished, finished_count);
    Py_RETURN_NONE;
}

static PyObject *
Deflater_counts(Deflater *d, PyObject *Py_UNUSED(ignored))
{
    if (!in_owner(d))
        return NULL;
    pthread_mutex_lock(&d->lock);
    size_t backlog = d->backlog, out = d->out_len, fed = d->fed_total;
    /* Seconds a byte took so far, flushes included (0.0 until a record was done). */
    double per_byte = d->bytes_done ? d->seconds_spent / (double)d->bytes_done : 0.0;
    pthread_mutex_unlock(&d->lock);
    return Py_BuildValue("(nnnd)", (Py_ssize_t)backlog, (Py_ssize_t)out, (Py_ssize_t)fed, per_byte);
}

static PyObject *
Deflater_crc(Deflater *d, PyObject *Py_UNUSED(ignored))
{
    if (!in_owner(d))
        return NULL;
    pthread_mutex_lock(&d->lock);
    unsigned long crc = d->taken_crc;
    pthread_mutex_unlock(&d->lock);
    return PyLong_FromUnsignedLong(crc);
}

static void
Deflater_dealloc(Deflater *d)
{
    if (d->owner == getpid()) {
        pthread_mutex_lock(&d->lock);
        d->stop = 1;
        pthread_cond_signal(&d->work);
        pthread_mutex_unlock(&d->lock);
        if (d->started) {
            /* It stops after the record it is on (it never takes the GIL: joining holding it is safe). */
            pthread_join(d->thread, NULL);
        }
        for (Py_ssize_t i = 0; i < d->queued; i++)
            PyBuffer_Release(&d->queue[i]);
        free(d->queue);
        free(d->out);
        deflateEnd(&d->z);
        pthread_mutex_destroy(&d->lock);
        pthread_cond_destroy(&d->work);
        pthread_cond_destroy(&d->idle);
    }
    /* In a forked child its memory is the parent's copy, maybe with a lock held: left as it is. */
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static PyMethodDef Deflater_methods[] = {
    {"feed", (PyCFunction)Deflater_feed, METH_O,
     "feed(records): bytes-like records, compressed in order by the worker; held until then."},
    {"flush", (PyCFunction)Deflater_flush, METH_O,
     "flush(end): a flush after all fed so far (the stream finished when `end`), done by the worker."},
    {"take", (PyCFunction)Deflater_take, METH_VARARGS,
     "take(end, wait): the compressed bytes up to the flush asked for (asked for now if not); None "
     "when not done and not `wait`."},
    {"crc", (PyCFunction)Deflater_crc, METH_NOARGS, "The CRC-32 of what `take` returned last (zlib.crc32 of it)."},
    {"settle", (PyCFunction)Deflater_settle, METH_NOARGS, "Wait (the GIL let go) until all fed is compressed."},
    {"counts", (PyCFunction)Deflater_counts, METH_NOARGS,
     "(bytes fed not compressed yet, compressed bytes not taken yet, bytes fed since the stream began,\n"
     "seconds a byte took to compress so far, its flushes included)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DeflaterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dspy_top.recording._deflate.Deflater",
    .tp_basicsize = sizeof(Deflater),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Deflater(level, threaded=True): a raw deflate stream compressed by a thread of its own, off the\n"
              "GIL (threaded=False: by the waits, the GIL let go, as where no thread can be started).",
    .tp_new = Deflater_new,
    .tp_dealloc = (destructor)Deflater_dealloc,
    .tp_methods = Deflater_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_deflate",
    "Raw deflate streams compressed off the GIL, by a thread of their own (segments.py).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__deflate(void)
{
    if (PyType_Ready(&DeflaterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&DeflaterType);
    if (PyModule_AddObject(m, "Deflater", (PyObject *)&DeflaterType) < 0) {
        Py_DECREF(&DeflaterType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "ZLIB_VERSION", zlibVersion()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
