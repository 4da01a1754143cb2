/* The in-process transport: buffered and rendezvous sends. In rendezvous mode (capacity 0) a send
 * completes only once its receive is posted, as on NCCL and on MPI past the eager limit, so an exchange
 * that waits on its send before posting the receive its peer waits on fails here, on the CPU, with a
 * timeout naming the ranks, where it would hang on a GPU or a network. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "transport/transport.h"

typedef struct exchange {
    brg__transport *tp;
    int receive_first; /* post the receive before waiting on the send */
    float out[64], in[64];
    brg_status send_status, recv_status;
    char msg[BRG_ERROR_MESSAGE_MAX];
} exchange;

/* Each of two ranks sends its buffer to the other and receives the other's. */
static void *exchange_main(void *arg) {
    exchange *x = arg;
    int peer = 1 - x->tp->rank;
    brg__request *send = NULL, *recv = NULL;
    x->send_status = x->recv_status = BRG_ERR_INTERNAL;
    if (x->receive_first && x->tp->vt->post_recv(x->tp, peer, 7, x->in, sizeof x->in, &recv) != BRG_OK) return NULL;
    if (x->tp->vt->post_send(x->tp, peer, 7, x->out, sizeof x->out, &send) != BRG_OK) return NULL;
    x->send_status = x->tp->vt->wait(x->tp, send, x->msg);
    if (x->send_status != BRG_OK) { /* a worker stops at its first failure */
        if (recv) x->tp->vt->cancel(x->tp, recv);
        return NULL;
    }
    if (!x->receive_first && x->tp->vt->post_recv(x->tp, peer, 7, x->in, sizeof x->in, &recv) != BRG_OK) return NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    x->recv_status = x->tp->vt->wait(x->tp, recv, msg);
    if (x->recv_status != BRG_OK) snprintf(x->msg, sizeof x->msg, "%s", msg);
    return NULL;
}

/* Runs the exchange on a fabric of the given capacity; returns both ranks' states. */
static void run_exchange(int capacity, int receive_first, exchange x[2]) {
    brg__inproc_fabric *f = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__inproc_fabric_create(&f, 2, capacity, 1.0, msg), msg);
    pthread_t threads[2];
    for (int r = 0; r < 2; r++) {
        memset(&x[r], 0, sizeof x[r]);
        x[r].tp = brg__inproc_endpoint(f, r);
        x[r].receive_first = receive_first;
        for (int i = 0; i < 64; i++) x[r].out[i] = (float)(r * 100 + i);
        pthread_create(&threads[r], NULL, exchange_main, &x[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(threads[r], NULL);
    brg__inproc_fabric_destroy(f);
}

static void test_buffered_send_then_receive(void) {
    exchange x[2];
    run_exchange(1 << 16, 0, x);
    for (int r = 0; r < 2; r++) {
        BRG_ASSERT_STATUS(x[r].send_status, BRG_OK);
        BRG_ASSERT_STATUS(x[r].recv_status, BRG_OK);
        BRG_ASSERT_EQ_INT((int)x[r].in[5], (1 - r) * 100 + 5);
    }
}

static void test_rendezvous_catches_send_waited_before_receive(void) {
    exchange x[2];
    run_exchange(0, 0, x);
    for (int r = 0; r < 2; r++) {
        BRG_ASSERT_STATUS(x[r].send_status, BRG_ERR_TIMEOUT);
        BRG_ASSERT_CONTAINS(x[r].msg, "to post the receive of message 0");
        BRG_ASSERT_CONTAINS(x[r].msg, "a send completes only once its receive is posted");
    }
}

static void test_rendezvous_receive_posted_first(void) {
    exchange x[2];
    run_exchange(0, 1, x);
    for (int r = 0; r < 2; r++) {
        BRG_ASSERT_STATUS(x[r].send_status, BRG_OK);
        BRG_ASSERT_STATUS(x[r].recv_status, BRG_OK);
        BRG_ASSERT_EQ_INT((int)x[r].in[63], (1 - r) * 100 + 63);
    }
}

static void test_rendezvous_abort_wakes_sender(void) {
    brg__inproc_fabric *f = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_OK(brg__inproc_fabric_create(&f, 2, 0, 30.0, msg), msg);
    brg__transport *a = brg__inproc_endpoint(f, 0);
    float v = 1.0f;
    brg__request *send = NULL;
    BRG_ASSERT_OK(a->vt->post_send(a, 1, 1, &v, sizeof v, &send), "");
    a->vt->stop_all(a, BRG_ERR_BACKEND);
    BRG_ASSERT_STATUS(a->vt->wait(a, send, msg), BRG_ERR_CANCELLED);
    BRG_ASSERT_CONTAINS(msg, "another worker failed");
    brg__inproc_fabric_destroy(f);
}

static void test_bad_fabric(void) {
    brg__inproc_fabric *f = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    BRG_ASSERT_STATUS(brg__inproc_fabric_create(&f, 2, -1, 1.0, msg), BRG_ERR_INVALID_ARGUMENT);
    BRG_ASSERT_CONTAINS(msg, "capacity -1");
    BRG_ASSERT_STATUS(brg__inproc_fabric_create(&f, 0, 1, 1.0, msg), BRG_ERR_INVALID_ARGUMENT);
    CU_ASSERT(f == NULL);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"buffered_send_then_receive", test_buffered_send_then_receive},
        {"rendezvous_catches_send_waited_before_receive", test_rendezvous_catches_send_waited_before_receive},
        {"rendezvous_receive_posted_first", test_rendezvous_receive_posted_first},
        {"rendezvous_abort_wakes_sender", test_rendezvous_abort_wakes_sender},
        {"bad_fabric", test_bad_fabric},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "transport", cases);
}
