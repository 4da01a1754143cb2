/* Exchanges among ranks hosted in several processes, built on the transport's point-to-point messages
 * (rank 0 gathers, then broadcasts): small and rare (at creation and once a step), so simplicity beats
 * a tree. */
#include <stdlib.h>
#include <string.h>

#include "graph/graph_internal.h"
#include "hosting.h"

static uint64_t mix(uint64_t h, const void *p, size_t n) { return brg__fnv1a(h, p, n); }
#define MIX(h, v) ((h) = mix((h), &(v), sizeof(v)))

uint64_t brg__options_hash(const brg_train_options *o) {
    uint64_t h = BRG__FNV_OFFSET;
    MIX(h, o->micro_batch);
    MIX(h, o->micro_batches);
    MIX(h, o->lr);
    MIX(h, o->beta1);
    MIX(h, o->beta2);
    MIX(h, o->eps);
    MIX(h, o->weight_decay);
    MIX(h, o->grad_clip);
    MIX(h, o->seed);
    MIX(h, o->stages);
    MIX(h, o->chunks);
    MIX(h, o->schedule);
    MIX(h, o->recompute);
    MIX(h, o->split_count);
    if (o->split && o->split_count > 0) h = mix(h, o->split, (size_t)o->split_count * sizeof *o->split);
    MIX(h, o->stage_recompute_count);
    if (o->stage_recompute && o->stage_recompute_count > 0)
        h = mix(h, o->stage_recompute, (size_t)o->stage_recompute_count * sizeof *o->stage_recompute);
    MIX(h, o->timeout_seconds);
    MIX(h, o->record_trace);
    MIX(h, o->backend);
    MIX(h, o->precision);
    MIX(h, o->hosting);
    MIX(h, o->lr_schedule);
    MIX(h, o->warmup_steps);
    MIX(h, o->min_lr);
    MIX(h, o->total_steps);
    MIX(h, o->data_parallel);
    MIX(h, o->zero);
    MIX(h, o->bucket_bytes);
    MIX(h, o->nan_check_every);
    MIX(h, o->tensor_parallel);
    MIX(h, o->sequence_parallel);
    if (o->rank_layout) h = mix(h, o->rank_layout, (size_t)o->data_parallel * (size_t)o->stages * sizeof *o->rank_layout);
    return h;
}

uint64_t brg__graph_hash(const brg_graph *g) {
    uint64_t h = BRG__FNV_OFFSET;
    MIX(h, g->n_tensors);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const brg_tensor *x = g->tensors[i];
        h = mix(h, x->name, strlen(x->name) + 1);
        MIX(h, x->kind);
        MIX(h, x->dtype);
        MIX(h, x->ndim);
        h = mix(h, x->shape, (size_t)x->ndim * sizeof x->shape[0]);
        MIX(h, x->init.kind);
        MIX(h, x->init.std);
    }
    MIX(h, g->n_ops);
    for (int64_t i = 0; i < g->n_ops; i++) {
        const brg__op *op = &g->ops[i];
        MIX(h, op->kind);
        MIX(h, op->layer);
        MIX(h, op->n_inputs);
        for (int q = 0; q < op->n_inputs; q++) MIX(h, op->inputs[q]->index);
        MIX(h, op->output->index);
        MIX(h, op->heads);
        MIX(h, op->flags);
        MIX(h, op->eps);
    }
    MIX(h, g->n_layers);
    for (int l = 0; l < g->n_layers; l++) {
        MIX(h, g->layers[l].op_begin);
        MIX(h, g->layers[l].op_end);
    }
    return h;
}

/* Waits for n requests; after the first failure the rest are cancelled. */
static brg_status wait_list(brg__transport *t, brg__request **reqs, const int *peers, int n, const char *what,
                            char *msg) {
    brg_status s = BRG_OK;
    for (int i = 0; i < n; i++) {
        if (!reqs[i]) continue;
        if (s != BRG_OK) {
            t->vt->cancel(t, reqs[i]);
            continue;
        }
        char why[BRG_ERROR_MESSAGE_MAX] = "";
        s = t->vt->wait(t, reqs[i], why);
        if (s != BRG_OK)
            brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "rank %d: %s with rank %d: %s", t->rank, what, peers[i],
                             why[0] ? why : brg_status_string(s));
    }
    return s;
}

/* Root 0 receives (gather) from, or sends (bcast) to, every other rank; the others do the reverse. */
static brg_status fan(brg__transport *t, uint64_t tag, int gather, const void *mine, void *all, void *buf,
                      size_t bytes, const char *what, char *msg) {
    int n = t->rank == 0 ? t->ranks - 1 : 1;
    brg__request **reqs = brg__calloc((size_t)(n > 0 ? n : 1), sizeof *reqs);
    int *peers = brg__calloc((size_t)(n > 0 ? n : 1), sizeof *peers);
    if (!reqs || !peers) {
        free(reqs);
        free(peers);
        return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory in %s", what);
    }
    brg_status s = BRG_OK;
    int posted = 0;
    if (t->rank == 0) {
        for (int r = 1; r < t->ranks && s == BRG_OK; r++, posted++) {
            peers[posted] = r;
            s = gather ? t->vt->post_recv(t, r, tag, (char *)all + (size_t)r * bytes, bytes, &reqs[posted])
                       : t->vt->post_send(t, r, tag, buf, bytes, &reqs[posted]);
        }
    } else {
        peers[0] = 0;
        s = gather ? t->vt->post_send(t, 0, tag, mine, bytes, &reqs[0]) : t->vt->post_recv(t, 0, tag, buf, bytes, &reqs[0]);
        posted = s == BRG_OK;
    }
    if (s != BRG_OK) brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, s, "rank %d: posting %s failed: %s", t->rank, what, brg_status_string(s));
    brg_status waited = wait_list(t, reqs, peers, posted, what, s == BRG_OK ? msg : NULL);
    if (s == BRG_OK) s = waited;
    free(reqs);
    free(peers);
    return s;
}

brg_status brg__exchange_gather(brg__transport *t, uint64_t tag, const void *mine, void *all, size_t bytes,
                                char *msg) {
    if (t->rank == 0 && all) memcpy(all, mine, bytes);
    return fan(t, tag, 1, mine, all, NULL, bytes, "gathering figures", msg);
}

brg_status brg__exchange_bcast(brg__transport *t, uint64_t tag, void *buf, size_t bytes, char *msg) {
    return fan(t, tag, 0, NULL, NULL, buf, bytes, "broadcasting figures", msg);
}

brg_status brg__exchange_allgather(brg__transport *t, uint64_t tag, const void *mine, void *all, size_t bytes,
                                   char *msg) {
    BRG__CHECK(brg__exchange_gather(t, tag, mine, all, bytes, msg));
    return brg__exchange_bcast(t, tag, all, (size_t)t->ranks * bytes, msg);
}

brg_status brg__exchange_check_job(brg__transport *t, uint64_t options_hash, uint64_t graph_hash, uint64_t key,
                                   char *msg) {
    uint64_t mine[3] = {options_hash, graph_hash, key};
    uint64_t *all = t->rank == 0 ? brg__calloc((size_t)t->ranks, sizeof mine) : NULL;
    if (t->rank == 0 && !all) return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_OUT_OF_MEMORY, "out of memory");
    uint64_t tag = brg__transfer_tag(0xe0, 0, 0, 1);
    brg_status s = brg__exchange_gather(t, tag, mine, all, sizeof mine, msg);
    int32_t verdict[2] = {-1, -1}; /* the first rank that differs from rank 0, and in what */
    for (int r = 1; s == BRG_OK && t->rank == 0 && r < t->ranks && verdict[0] < 0; r++)
        for (int k = 0; k < 3; k++)
            if (all[(size_t)r * 3 + (size_t)k] != mine[k]) {
                verdict[0] = r;
                verdict[1] = k;
                break;
            }
    free(all);
    if (s == BRG_OK) s = brg__exchange_bcast(t, tag, verdict, sizeof verdict, msg);
    if (s != BRG_OK || verdict[0] < 0) return s;
    static const char *const what[3] = {"training options", "model", "command-line flags or data"};
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_INVALID_ARGUMENT,
                            "rank %d was started with other %s than rank 0 (every rank of a job must run the same "
                            "command: check the launch line and each node's files)",
                            verdict[0], what[verdict[1]]);
}
