/*
 * Delayed responses.  The access handler suspends the connection and
 * this timer thread resumes it when the delay is over, so a slow answer
 * never occupies an MHD worker thread.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <microhttpd.h>

#include "mock_broker.h"

struct timer_ent {
    uint64_t deadline;      /* CLOCK_MONOTONIC ns */
    uint64_t order;         /* FIFO among equal deadlines */
    struct MHD_Connection *conn;
};

static pthread_mutex_t delay_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t delay_cv;
static struct timer_ent *heap;
static size_t heap_len, heap_cap;
static uint64_t order_counter;
static int stopping;
static pthread_t timer_thread;

static int
ent_less(const struct timer_ent *a, const struct timer_ent *b)
{
    if (a->deadline != b->deadline)
        return a->deadline < b->deadline;
    return a->order < b->order;
}

static void
heap_push(struct timer_ent e)
{
    size_t i = heap_len++;

    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (!ent_less(&e, &heap[p]))
            break;
        heap[i] = heap[p];
        i = p;
    }
    heap[i] = e;
}

static struct timer_ent
heap_pop(void)
{
    struct timer_ent top = heap[0], last = heap[--heap_len];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= heap_len)
            break;
        if (c + 1 < heap_len && ent_less(&heap[c + 1], &heap[c]))
            c++;
        if (!ent_less(&heap[c], &last))
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (heap_len > 0)
        heap[i] = last;
    return top;
}

static void *
timer_main(void *arg)
{
    struct MHD_Connection **due = NULL;
    size_t due_cap = 0;

    (void) arg;
    pthread_mutex_lock(&delay_mu);
    for (;;) {
        size_t ndue = 0, i;
        uint64_t now;

        while (!stopping) {
            struct timespec ts;

            if (heap_len == 0) {
                pthread_cond_wait(&delay_cv, &delay_mu);
                continue;
            }
            now = mb_mono_ns();
            if (heap[0].deadline <= now)
                break;
            ts.tv_sec = (time_t) (heap[0].deadline / 1000000000u);
            ts.tv_nsec = (long) (heap[0].deadline % 1000000000u);
            pthread_cond_timedwait(&delay_cv, &delay_mu, &ts);
        }

        /* Collect what is due (everything when stopping). */
        now = mb_mono_ns();
        while (heap_len > 0 && (stopping || heap[0].deadline <= now)) {
            if (ndue == due_cap) {
                size_t nc = due_cap ? due_cap * 2 : 64;
                struct MHD_Connection **nd = realloc(due, nc * sizeof *nd);

                if (nd == NULL)
                    break;
                due = nd;
                due_cap = nc;
            }
            due[ndue++] = heap_pop().conn;
        }
        pthread_mutex_unlock(&delay_mu);

        for (i = 0; i < ndue; i++)
            MHD_resume_connection(due[i]);

        pthread_mutex_lock(&delay_mu);
        if (stopping && heap_len == 0)
            break;
    }
    pthread_mutex_unlock(&delay_mu);
    free(due);
    return NULL;
}

int
delay_init(void)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&delay_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&timer_thread, NULL, timer_main, NULL) != 0) {
        mb_log("cannot start timer thread");
        return -1;
    }
    return 0;
}

int
delay_suspend(struct MHD_Connection *conn, unsigned delay_ms)
{
    struct timer_ent e;

    pthread_mutex_lock(&delay_mu);
    if (stopping) {
        pthread_mutex_unlock(&delay_mu);
        return -1;
    }
    if (heap_len == heap_cap) {
        size_t nc = heap_cap ? heap_cap * 2 : 256;
        struct timer_ent *nh = realloc(heap, nc * sizeof *nh);

        if (nh == NULL) {
            pthread_mutex_unlock(&delay_mu);
            return -1;
        }
        heap = nh;
        heap_cap = nc;
    }
    /*
     * Suspend while holding the lock: the timer can only resume a
     * connection after it has been suspended, and shutdown cannot slip
     * in between.
     */
    MHD_suspend_connection(conn);
    e.deadline = mb_mono_ns() + (uint64_t) delay_ms * 1000000u;
    e.order = order_counter++;
    e.conn = conn;
    heap_push(e);
    if (heap[0].conn == conn)
        pthread_cond_signal(&delay_cv);
    pthread_mutex_unlock(&delay_mu);
    return 0;
}

void
delay_shutdown(void)
{
    pthread_mutex_lock(&delay_mu);
    stopping = 1;
    pthread_cond_signal(&delay_cv);
    pthread_mutex_unlock(&delay_mu);
    pthread_join(timer_thread, NULL);
    free(heap);
    heap = NULL;
    heap_len = heap_cap = 0;
}
