/* Point-to-point between two ranks: brigade's MPI transport (post, then wait polling MPI_Test) against
 * MPI_Send / MPI_Recv in a bare loop, over the same message sizes, in one run. Prints, per size, the
 * one-way latency (half a ping-pong) and the bandwidth of a stream of messages for both, and their
 * ratio. Asserts nothing.
 *   mpirun -np 2 build-release/bench/bench_mpi_p2p            (shared memory)
 *   mpirun -np 2 --mca btl tcp,self build-release/bench/bench_mpi_p2p   (TCP) */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brigade/launch.h"
#include "transport/transport.h"

static double pingpong_bare(void *buf, int bytes, int peer, int rank, int iters) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        if (rank == 0) {
            MPI_Send(buf, bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
            MPI_Recv(buf, bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buf, bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
        }
    }
    return (MPI_Wtime() - t0) / (2.0 * iters);
}

static int xfer(brg__transport *t, int send, void *buf, size_t bytes, int peer) {
    brg__request *r = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = send ? t->vt->post_send(t, peer, 1, buf, bytes, &r) : t->vt->post_recv(t, peer, 1, buf, bytes, &r);
    if (s == BRG_OK) s = t->vt->wait(t, r, msg);
    if (s != BRG_OK) fprintf(stderr, "bench_mpi_p2p: %s\n", msg[0] ? msg : brg_status_string(s));
    return s != BRG_OK;
}

static double pingpong_brigade(brg__transport *t, void *buf, size_t bytes, int peer, int iters) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        if (t->rank == 0) {
            if (xfer(t, 1, buf, bytes, peer) || xfer(t, 0, buf, bytes, peer)) return -1;
        } else {
            if (xfer(t, 0, buf, bytes, peer) || xfer(t, 1, buf, bytes, peer)) return -1;
        }
    }
    return (MPI_Wtime() - t0) / (2.0 * iters);
}

/* A window of `window` messages in flight, rank 0 to rank 1, then a one-byte acknowledgement. */
static double stream_bare(void *buf, int bytes, int peer, int rank, int rounds, int window) {
    MPI_Request *reqs = malloc((size_t)window * sizeof *reqs);
    char ack = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int k = 0; k < rounds; k++) {
        for (int i = 0; i < window; i++)
            if (rank == 0)
                MPI_Isend(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD, &reqs[i]);
            else
                MPI_Irecv(buf, bytes, MPI_BYTE, peer, 2, MPI_COMM_WORLD, &reqs[i]);
        MPI_Waitall(window, reqs, MPI_STATUSES_IGNORE);
        if (rank == 0)
            MPI_Recv(&ack, 1, MPI_BYTE, peer, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        else
            MPI_Send(&ack, 1, MPI_BYTE, peer, 3, MPI_COMM_WORLD);
    }
    free(reqs);
    return (double)bytes * window * rounds / (MPI_Wtime() - t0);
}

static double stream_brigade(brg__transport *t, void *buf, size_t bytes, int peer, int rounds, int window) {
    brg__request **reqs = malloc((size_t)window * sizeof *reqs);
    char ack = 0, msg[BRG_ERROR_MESSAGE_MAX];
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int k = 0; k < rounds; k++) {
        for (int i = 0; i < window; i++)
            if (t->rank == 0)
                t->vt->post_send(t, peer, 2, buf, bytes, &reqs[i]);
            else
                t->vt->post_recv(t, peer, 2, buf, bytes, &reqs[i]);
        for (int i = 0; i < window; i++) t->vt->wait(t, reqs[i], msg);
        if (xfer(t, t->rank != 0, &ack, 1, peer)) return -1;
    }
    free(reqs);
    return (double)bytes * window * rounds / (MPI_Wtime() - t0);
}

int main(void) {
    brg_launch l;
    brg_error err = {0};
    if (brg_launch_init(&l, &err) != BRG_OK || l.world != 2) {
        fprintf(stderr, "bench_mpi_p2p: run under mpirun -np 2%s%s\n", err.message[0] ? ": " : "", err.message);
        return 1;
    }
    brg__transport *t = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    if (brg__mpi_transport_create(&t, NULL, 60, msg) != BRG_OK) {
        fprintf(stderr, "bench_mpi_p2p: %s\n", msg);
        return 1;
    }
    int peer = 1 - l.rank;
    size_t max = (size_t)64 << 20;
    char *buf = malloc(max);
    memset(buf, 1, max);
    if (l.rank == 0) {
        printf("point to point, 2 ranks: brigade's MPI transport vs bare MPI_Send/MPI_Recv (Isend/Irecv for streams)\n");
        printf("%10s | %12s %12s %7s | %12s %12s %7s\n", "bytes", "bare us", "brigade us", "ratio", "bare GB/s",
               "brigade GB/s", "ratio");
    }
    for (size_t bytes = 8; bytes <= max; bytes *= 8) {
        int iters = bytes <= 65536 ? 2000 : bytes <= (1 << 20) ? 200 : 20;
        int window = bytes <= 65536 ? 64 : 8, rounds = bytes <= 65536 ? 50 : bytes <= (1 << 20) ? 20 : 3;
        /* Warm both paths, then alternate them three times and keep each one's best. */
        pingpong_bare(buf, (int)bytes, peer, l.rank, iters / 10 + 1);
        pingpong_brigade(t, buf, bytes, peer, iters / 10 + 1);
        double lb = 1e30, lt = 1e30, bb = 0, bt = 0;
        for (int rep = 0; rep < 3; rep++) {
            double x = pingpong_bare(buf, (int)bytes, peer, l.rank, iters);
            double y = pingpong_brigade(t, buf, bytes, peer, iters);
            double u = stream_bare(buf, (int)bytes, peer, l.rank, rounds, window);
            double v = stream_brigade(t, buf, bytes, peer, rounds, window);
            if (x < lb) lb = x;
            if (y >= 0 && y < lt) lt = y;
            if (u > bb) bb = u;
            if (v > bt) bt = v;
        }
        if (l.rank == 0)
            printf("%10zu | %12.2f %12.2f %7.3f | %12.3f %12.3f %7.3f\n", bytes, lb * 1e6, lt * 1e6, lt / lb, bb / 1e9,
                   bt / 1e9, bt / bb);
    }
    free(buf);
    t->vt->destroy(t);
    brg_launch_finalize(&l, 0);
    return 0;
}
