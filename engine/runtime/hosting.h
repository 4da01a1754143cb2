/* What ranks hosted in several processes need besides the pipeline's own transfers: agreeing that every
 * rank runs the same job, and small exchanges of figures (step statistics, fingerprints, timelines),
 * over the ranks' transport. Internal. */
#ifndef BRIGADE_HOSTING_H
#define BRIGADE_HOSTING_H

#include <stddef.h>
#include <stdint.h>

#include "brigade/train.h"
#include "transport/transport.h"

/* A hash of everything in o that changes what is computed (not the CPU thread count, nor borrowed
 * pointers: the split and the per-stage recomputation are hashed by value). */
uint64_t brg__options_hash(const brg_train_options *o);

/* A hash of g's structure: tensors (names, kinds, types, shapes, initializers), ops and layers. */
uint64_t brg__graph_hash(const brg_graph *g);

/* Gathers `bytes` from every rank into rank 0's `all` ([ranks][bytes]; other ranks may pass NULL).
 * Collective. `tag` labels the exchange. BRG_OK or the transport's status, with msg naming the peer. */
brg_status brg__exchange_gather(brg__transport *t, uint64_t tag, const void *mine, void *all, size_t bytes,
                                char *msg);

/* Rank 0's `bytes` at buf to every rank. Collective. */
brg_status brg__exchange_bcast(brg__transport *t, uint64_t tag, void *buf, size_t bytes, char *msg);

/* Gather then broadcast: every rank ends with all ([ranks][bytes]). */
brg_status brg__exchange_allgather(brg__transport *t, uint64_t tag, const void *mine, void *all, size_t bytes,
                                   char *msg);

/* Checks that every rank computes the same job: hashes of the options, of the model and of `key`,
 * compared on rank 0, whose verdict every rank returns. BRG_OK, BRG_ERR_INVALID_ARGUMENT (msg names the
 * first rank that differs and what), or the transport's status. Collective. */
brg_status brg__exchange_check_job(brg__transport *t, uint64_t options_hash, uint64_t graph_hash, uint64_t key,
                                   char *msg);

#endif
